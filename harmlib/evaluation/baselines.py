"""Classical intensity-normalization baselines behind the deep harmonizers' interface.

A fitted baseline is a callable ``baseline(volume) -> harmonized volume`` (numpy, any grid, same shape);
:class:`ClassicalHarmonizer` holds one fitted per target and implements `harmlib.harmonize.Harmonizer`
(``harmonize(volume, target) -> volume``), so every evaluation loop treats the versions (unharmonized,
each model's targets, the baselines) alike.

The per-image statistics come from the well-kept ``intensity-normalization`` package (v3, numpy >= 2):
- z-score: mean and SD of the brain;
- WhiteStripe (Shinohara et al. 2014): mean and SD of the "white stripe", the +/- 5 % quantile band
  around the white-matter mode, the last peak of the smoothed T1 histogram below its 96th percentile;
- Nyul & Udupa (2000): piecewise-linear mapping of each image's percentile landmarks (1, 10, ..., 90, 99)
  onto a standard scale learned from a cohort.

Apply them on the data's own grid (2 mm on the cpu profile) and downsample afterwards: in the synthetic
cohort at 4 mm the white-matter peak is no longer a separate mode of the histogram, and WhiteStripe then
finds the single GM/WM mode instead.

`fit` takes the reference cohort: the training cohort, or one target site's scans to harmonize "to A/B".
Fitted z-score and WhiteStripe map the normalized image back to the reference's mean statistics
(``z * sd_ref + mu_ref``), and Nyul's standard scale is put in the reference's own intensity units, so
that all versions stay in comparable units for the mean-intensity distributions, Wasserstein distances
and SSIM of paper 1's Table 2 (an unfitted z-score gives raw z-values: brain mean 0, SD 1).

Brain voxels are `harmlib.evaluation.metrics.brain_mask` (Otsu): the synthetic background is Rician
noise, not zeros, and a fixed ``> 0`` mask would feed it into every statistic. Outside the brain's
intensity range the maps are anchored at 0 (below the brain's 1st percentile, x -> x * f(p1) / p1), so
background noise keeps its relative level instead of being shifted or clipped image by image; voxels
where the input is exactly 0 stay 0, and outputs in reference units are clipped at 0 (magnitude images).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from intensity_normalization import NyulNormalizer, WhiteStripeNormalizer, ZScoreNormalizer, create_image
from intensity_normalization.domain.exceptions import NormalizationError

from harmlib.data.io import DataError
from harmlib.evaluation.metrics import brain_mask
from harmlib.harmonize.targets import Target

BASELINES = ("zscore", "whitestripe", "nyul")
LOW_PERCENTILE = 1.0  # the brain's lowest landmark (Nyul's p_min): below it intensities scale towards 0


def _stats(normalizer, vol: np.ndarray, mask: np.ndarray, name: str) -> tuple[float, float]:
    try:
        normalizer.fit(create_image(vol), create_image(mask))
    except NormalizationError as err:
        raise ValueError(
            f"{name}: cannot normalize a volume of shape {vol.shape} ({err}); check that it holds a T1 brain"
        ) from None
    return float(normalizer.mean), float(normalizer.std)


def _finish(vol: np.ndarray, out: np.ndarray, in_reference_units: bool) -> np.ndarray:
    """Keep exact-zero background at 0; clip at 0 when the output is a magnitude image in reference units."""
    out = np.clip(out, 0, None) if in_reference_units else out
    return np.where(vol == 0, 0.0, out).astype(np.float32)


def _anchor_zero(vol: np.ndarray, out: np.ndarray, low: float, out_low: float) -> np.ndarray:
    """Below the brain's lowest landmark ``low`` map x -> x * out_low / low (so 0 stays 0).

    A map fitted on brain voxels says nothing about the background: extrapolating it shifts the
    background noise up or clips it to exact zeros, image by image, and luminance SSIM (whose local
    means are near 0 there) would then score the background rather than the harmonization.
    """
    return np.where(vol < low, vol * (out_low / low), out) if low > 0 else out


class _LinearBaseline:
    """A per-image linear map (x - mu) / sd from a normalizer's statistics, optionally into reference units."""

    name = ""

    def __init__(self, make_normalizer: Callable[[], Any]) -> None:
        self.make_normalizer = make_normalizer  # a fresh intensity-normalization normalizer per image
        self.reference: tuple[float, float] | None = None

    def image_stats(self, vol: np.ndarray) -> tuple[float, float]:
        """(mu, sd) of this image by the method (brain for z-score, white stripe for WhiteStripe)."""
        vol = np.asarray(vol, dtype=np.float64)
        return _stats(self.make_normalizer(), vol, brain_mask(vol), self.name)

    def fit(self, volumes: Sequence[np.ndarray]) -> _LinearBaseline:
        """Average (mu, sd) over the reference cohort: outputs get these statistics."""
        if not len(volumes):
            raise ValueError(f"{self.name}: fit needs at least one reference volume")
        stats = np.array([self.image_stats(v) for v in volumes])
        self.reference = (float(stats[:, 0].mean()), float(stats[:, 1].mean()))
        return self

    def __call__(self, vol: np.ndarray) -> np.ndarray:
        v = np.asarray(vol, dtype=np.float64)
        mu, sd = self.image_stats(v)
        if self.reference is None:
            return _finish(vol, (v - mu) / sd, False)
        a = self.reference[1] / sd
        out = a * (v - mu) + self.reference[0]
        low = float(np.percentile(v[brain_mask(v)], LOW_PERCENTILE))
        return _finish(vol, _anchor_zero(v, out, low, a * (low - mu) + self.reference[0]), True)


class ZScore(_LinearBaseline):
    """Z-score of the brain: (x - mean_brain) / sd_brain (then into reference units once fitted)."""

    name = "zscore"

    def __init__(self) -> None:
        super().__init__(ZScoreNormalizer)


class WhiteStripe(_LinearBaseline):
    """WhiteStripe (Shinohara et al. 2014) for T1: standardize by the normal-appearing white matter stripe."""

    name = "whitestripe"

    def __init__(self, width: float = 0.05, max_voxels: int = 250_000) -> None:
        super().__init__(lambda: WhiteStripeNormalizer(width=self.width))
        self.width = width  # quantile half-width of the stripe (the paper's tau = 5 %)
        # The package's kernel density estimate runs over every brain voxel: ~0.5 s at 2 mm (~200k voxels,
        # kept whole by the default), ~8x more at 1 mm, where a regular subsample of ``max_voxels`` is used.
        # Measured at 2 mm, a 50k subsample moved the stripe mean by up to 2 %: keep it large.
        self.max_voxels = max_voxels

    def image_stats(self, vol: np.ndarray) -> tuple[float, float]:
        vol = np.asarray(vol, dtype=np.float64)
        mask = brain_mask(vol)
        stride = max(1, int(mask.sum()) // self.max_voxels)
        sub = np.zeros(mask.shape, dtype=bool)  # C order: flat indices below are C order
        sub.ravel()[np.flatnonzero(mask)[::stride]] = True
        return _stats(self.make_normalizer(), vol, sub, self.name)


class Nyul:
    """Nyul & Udupa (2000) histogram standardization; `fit` learns the standard scale from a cohort.

    The standard scale is the mean of the cohort's landmarks after mapping each image's [p_min, p_max]
    onto [s_min, s_max]; we take s_min, s_max as the cohort's mean p_min, p_max, so the scale is in the
    reference's intensity units (the package default, [1, 100], would be an arbitrary unit).
    """

    name = "nyul"

    def __init__(self, min_percentile: float = 1.0, max_percentile: float = 99.0, step: float = 10.0) -> None:
        self.settings = {
            "min_percentile": min_percentile,
            "max_percentile": max_percentile,
            "percentile_after_min": step,
            "percentile_before_max": 100.0 - step,
            "percentile_step": step,
        }
        self.normalizer: NyulNormalizer | None = None

    def fit(self, volumes: Sequence[np.ndarray]) -> Nyul:
        if not len(volumes):
            raise ValueError("nyul: fit needs at least one reference volume")
        vols = [np.asarray(v, dtype=np.float64) for v in volumes]
        masks = [brain_mask(v) for v in vols]
        lo = np.mean([np.percentile(v[m], self.settings["min_percentile"]) for v, m in zip(vols, masks)])
        hi = np.mean([np.percentile(v[m], self.settings["max_percentile"]) for v, m in zip(vols, masks)])
        self.normalizer = NyulNormalizer(output_min_value=float(lo), output_max_value=float(hi), **self.settings)
        try:
            self.normalizer.fit_population([create_image(v) for v in vols], [create_image(m) for m in masks])
        except NormalizationError as err:
            raise ValueError(f"nyul: cannot learn the standard scale ({err}); check the reference volumes") from None
        return self

    @property
    def landmarks(self) -> np.ndarray:
        """The percentiles whose values are mapped to the standard scale."""
        return np.asarray(NyulNormalizer(**self.settings).percentiles)

    @property
    def standard_scale(self) -> np.ndarray:
        if self.normalizer is None:
            raise ValueError("nyul: not fitted; call fit(reference_volumes) first")
        return np.asarray(self.normalizer.standard_scale)

    def __call__(self, vol: np.ndarray) -> np.ndarray:
        if self.normalizer is None:
            raise ValueError(
                "nyul: not fitted; call fit(reference_volumes) with the training cohort or a target site's scans first"
            )
        v = np.asarray(vol, dtype=np.float64)
        mask = brain_mask(v)
        out = self.normalizer.transform(create_image(v), create_image(mask)).get_data()
        low = float(np.percentile(v[mask], self.settings["min_percentile"]))  # the first landmark
        return _finish(vol, _anchor_zero(v, out, low, float(self.standard_scale[0])), True)


def make_baseline(name: str, reference: Sequence[np.ndarray] | None = None):
    """A baseline by name (zscore, whitestripe, nyul), fitted on ``reference`` volumes when given."""
    classes = {"zscore": ZScore, "whitestripe": WhiteStripe, "nyul": Nyul}
    if name not in classes:
        raise ValueError(f"unknown baseline '{name}'; use one of {', '.join(BASELINES)}")
    b = classes[name]()
    return b.fit(reference) if reference is not None else b


@dataclass
class ClassicalHarmonizer:
    """A classical baseline as a `harmlib.harmonize.Harmonizer`: one fit per target, on that target's reference
    scans (``None``: the whole reference cohort, the ``agnostic`` target). Works on any grid (``affine``,
    ``shape`` None): the volume's own."""

    kind: str
    domains: list[str]
    fitted: dict[str | None, Callable[[np.ndarray], np.ndarray]]
    affine: np.ndarray | None = None
    shape: tuple[int, ...] | None = None

    def target(self, text: str | Target) -> Target:
        t = Target.parse(text, self.domains, "agnostic")
        if t.own or t.domain not in self.fitted:
            fits = ", ".join("agnostic" if d is None else d for d in self.fitted)
            raise DataError(
                f"target '{text}': this {self.kind} baseline is fitted for {fits}; fit it on that target's scans"
            )
        return t

    def harmonize(self, vol: np.ndarray, target: str | Target, seed: int = 0) -> np.ndarray:
        return self.fitted[self.target(target).domain](vol)


def fit_harmonizer(
    name: str, references: Mapping[str | None, Sequence[np.ndarray]], domains: Sequence[str] = ()
) -> ClassicalHarmonizer:
    """Baseline ``name`` fitted on each target's ``references`` (``{domain or None: volumes}``)."""
    return ClassicalHarmonizer(name, list(domains), {d: make_baseline(name, list(v)) for d, v in references.items()})
