"""Bootstrap confidence intervals of mean differences (paper 2, Tables 1-3: "Delta (95 % CI)").

The thesis reports the 95 % bootstrap CI of the difference of mean SSIM between GMM-DRIT and DRIT++ (and
pre vs post harmonization) and calls an advantage confirmed when the interval is strictly positive. It
does not say which bootstrap; we use the percentile bootstrap of the difference of means, resampling
pairs jointly when both methods were evaluated on the same images (``paired``), else each sample on its
own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapCI:
    """Observed mean difference mean(a) - mean(b) and its percentile-bootstrap interval [low, high]."""

    delta: float
    low: float
    high: float
    level: float

    @property
    def excludes_zero(self) -> bool:
        """True when the interval is strictly positive or strictly negative (the thesis' criterion)."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.delta:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_mean_difference(
    a: np.ndarray, b: np.ndarray, paired: bool = False, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> BootstrapCI:
    """Percentile-bootstrap ``level`` CI of mean(a) - mean(b), seeded.

    ``paired``: a[k] and b[k] come from the same image (e.g. one test image harmonized by two models);
    pairs are resampled together, which removes the between-image variance both share.
    """
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"bootstrap_mean_difference: samples of size {len(a)} and {len(b)}; a CI needs at least 2 values in each"
        )
    if paired and len(a) != len(b):
        raise ValueError(
            f"bootstrap_mean_difference: paired samples must have equal length, got {len(a)} and {len(b)}; pass paired=False"
        )
    if not 0 < level < 1:
        raise ValueError(
            f"bootstrap_mean_difference: level={level} is invalid; use a confidence level in (0, 1), e.g. 0.95"
        )
    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, len(a), size=(n_boot, len(a)))
        boots = (a[idx] - b[idx]).mean(axis=1)
    else:
        boots = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1) - b[
            rng.integers(0, len(b), size=(n_boot, len(b)))
        ].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(boots, [tail, 100 - tail])
    return BootstrapCI(float(a.mean() - b.mean()), float(low), float(high), level)
