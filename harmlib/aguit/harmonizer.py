"""Paper 1's 3D model as a harmonizer: x -> G(E_b(x), s) with the target's style s = (n, l).

Targets (paper 1, Fig. 2): a training scanner-site (its label +1, the others -1, the image's own noise
code), ``agnostic`` (every label -1, noise drawn from N(0, 1) with a fixed seed) or ``self`` (the label
read by E_s: the quality gate's reconstruction x -> G(E_b(x), E_s(x))).

Resolution: E_b, E_s and G run on the model's grid (the profile's voxel size: 2 mm on cpu, 1 mm on paper), where
they were trained. A scan on a finer grid gets the model's *change* at its own resolution
(`harmlib.harmonize.change`): the landmark curve is applied to its every voxel, the site field and G's delta are
upsampled as changes, so a 1 mm scan comes back a 1 mm scan with its detail; what is finer than the model's grid is
changed only by the curve and the field, not by the networks. A paper-profile model (1 mm, no curve or field) on a
1 mm scan is the networks on the native grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harmlib.aguit.model import KIND, AGUITSpec, build_aguit, generate, style_vector
from harmlib.data.datasets import Normalizer, crop_pads, pad_to_multiple
from harmlib.harmonize.base import register
from harmlib.harmonize.change import Change, change_from
from harmlib.harmonize.targets import Target
from harmlib.models.levers import migrate_levers


@dataclass
class VolumeHarmonizer:
    """A loaded 3D model file: E_b, E_s, G, site names, grid and normalization."""

    kind: str
    nets: dict[str, torch.nn.Module]
    domains: list[str]
    affine: np.ndarray
    shape: tuple[int, ...]
    normalizer: Normalizer
    noise_dim: int
    pad_multiple: int
    device: torch.device
    scales: dict[str, float] | None = None  # each training site's intensity scale (None: older model files)

    def target(self, text: str | Target) -> Target:
        return Target.parse(text, self.domains, "agnostic")

    def label(self, target: str | Target) -> torch.Tensor:
        """The label vector of a target: +1 at the site, -1 elsewhere; all -1 for agnostic."""
        t = target if isinstance(target, Target) else self.target(target)
        lab = -torch.ones(1, len(self.domains))
        if t.domain is not None:
            lab[0, self.domains.index(t.domain)] = 1.0
        return lab

    @torch.no_grad()
    def change(self, vol: np.ndarray, target: str | Target, seed: int = 0) -> Change:
        """What the model does to a volume on its grid, in parts that apply at any resolution: the landmark curve
        (pointwise), the site field (smooth) and G's delta (`harmlib.harmonize.change`)."""
        t = self.target(target)
        x, params = self.normalizer.forward(vol)
        xp, pads = pad_to_multiple(np.asarray(x, np.float32), self.pad_multiple, value=-1.0)
        xt = torch.from_numpy(np.ascontiguousarray(xp))[None, None].to(self.device)
        c = self.nets["E_b"](xt)
        noise, logits = self.nets["E_s"](xt)
        if not t.own and t.domain is None:  # agnostic: a seeded noise code
            noise = torch.randn(1, self.noise_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        style = style_vector(noise, torch.tanh(logits) if t.own else self.label(t).to(self.device))
        levers = self.nets.get("levers")
        where = None if levers is None else levers.read(xt)  # the whole volume's landmarks and field, once
        y = generate(self.nets, c, style, xt, where)[0, 0].float().cpu().numpy()
        knots = field = None
        if levers is not None and levers.curve is not None:
            knots = (where.landmarks[0].cpu().numpy(), levers.curve.style_landmarks(style)[0].cpu().numpy())
        if levers is not None and levers.field is not None:
            field = crop_pads(levers.field.log_field(style, where.field)[0, 0].cpu().numpy(), pads)
        high = t.scale(self.scales, params["high"])
        return change_from(self.normalizer, params, high, np.asarray(x), crop_pads(y, pads), knots, field)

    def harmonize(self, vol: np.ndarray, target: str | Target, seed: int = 0) -> np.ndarray:
        """A volume on the model's grid, harmonized to ``target``, in the target's intensity units."""
        return self.change(vol, target, seed).apply(vol)


def harmonizer_from(meta: dict[str, Any], state: dict[str, Any], device: str = "cpu") -> VolumeHarmonizer:
    """A 3D harmonizer from a model file's metadata and the E_b, E_s, G (and levers) weights (of the file, or of a
    training snapshot: the convergence figure evaluates those)."""
    spec = AGUITSpec(**meta["spec"])
    nets = build_aguit(spec)
    nets = {k: nets[k] for k in ("E_b", "E_s", "G", "levers") if k in nets}
    state = migrate_levers(state)
    dev = torch.device(device)
    for k, net in nets.items():
        net.load_state_dict(state[k])
        net.to(dev).eval()
    return VolumeHarmonizer(
        meta.get("kind", KIND),
        nets,
        list(meta["domains"]),
        np.asarray(meta["affine"]),
        tuple(int(v) for v in meta["shape"]),
        Normalizer.from_dict(meta["normalizer"]),
        spec.noise_dim,
        spec.pad_multiple,
        dev,
        meta.get("scales"),
    )


@register(KIND)
def _load(ck: dict[str, Any], path: Any, device: str) -> VolumeHarmonizer:
    return harmonizer_from(ck, ck["state"], device)
