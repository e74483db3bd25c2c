"""What a harmonizer is asked for: a target, parsed once for every kind of model.

* a training scanner-site, by its full domain name ("scanner@site"), its site or its scanner;
* site-free: ``agnostic`` (paper 1's style-agnostic image) or ``scanner-free`` (the thesis's c_sf), one
  target under two names, for every kind;
* the image's own appearance (the quality gate's reconstruction): ``self`` (the 3D model reads the style with
  E_s) or ``self:<training site>`` (the 2D models take that site's code c and each slice's own z^a).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harmlib.data.io import DataError

AGNOSTIC = ("agnostic", "scanner-free")
SCANNER_FREE = AGNOSTIC  # the thesis's name for the same target
SELF = "self"
SELF_AT = "self:"


def match_domain(target: str, domains: list[str], free: str) -> str:
    """The one training domain ("scanner@site") that ``target`` names, by its full name, site or scanner;
    else a one-line DataError listing the known domains and ``free`` (the model's site-free target)."""
    matches = [d for d in domains if target in (d, d.split("@")[-1], d.split("@")[0])]
    if len(matches) != 1:
        raise DataError(f"unknown target site '{target}'; known: {', '.join(domains)} or {free}")
    return matches[0]


@dataclass(frozen=True)
class Target:
    """A parsed target: ``domain`` is the training domain (None: site-free, or ``self`` without a site);
    ``own`` keeps the image's own appearance; ``text`` what was asked for (provenance, messages).

    Parsed once, where a target enters (the CLI, ``harmonize_file``, a notebook's call), and passed down as is: every
    harmonizer's ``target()`` returns a Target it is given unchanged."""

    domain: str | None
    own: bool = False
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.text or (
            SELF if self.own and self.domain is None else f"{SELF_AT * self.own}{self.domain or AGNOSTIC[0]}"
        )

    @classmethod
    def parse(cls, text: str | Target, domains: list[str], free: str = "agnostic") -> Target:
        """``text`` against a model's training ``domains`` (a Target passes unchanged); unknown sites are a one-line
        DataError."""
        if isinstance(text, Target):
            return text
        if text == SELF:
            return cls(None, own=True, text=text)
        if text.startswith(SELF_AT):
            return cls(match_domain(text[len(SELF_AT) :], domains, free), own=True, text=text)
        if text in AGNOSTIC:
            return cls(None, text=text)
        return cls(match_domain(text, domains, free), text=text)

    def scale(self, scales: dict[str, float] | None, own: float) -> float:
        """The intensity scale an output is mapped back with: the target site's (the median over all sites
        for site-free; the image's ``own`` for a self-reconstruction or a model file without scales)."""
        if not scales or self.own:
            return own
        return scales["*"] if self.domain is None else scales[self.domain]
