"""Scanner appearance effects on an image: tissue contrast, gamma, bias field, blur, Rician noise.

These are the knobs by which one scanner-site differs from another in the synthetic cohort.
Every effect is seeded, works on 2D or 3D arrays, and leaves the anatomy (the input's
geometry) unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from harmlib.data.anatomy import smooth_noise


@dataclass(frozen=True)
class Appearance:
    """One scanner's look. ``gamma`` bends the intensity curve (contrast), ``bias`` is the
    peak-to-peak amplitude of a smooth multiplicative field, ``blur_mm`` the Gaussian FWHM,
    ``noise`` the Rician noise level relative to the brain's maximum."""

    gamma: float = 1.0
    scale: float = 1.0
    offset: float = 0.0
    bias: float = 0.0
    bias_scale_mm: float = 60.0
    blur_mm: float = 0.0
    noise: float = 0.0


def smooth_field(shape: tuple[int, ...], voxel_mm: float, fwhm_mm: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field in [-0.5, 0.5], correlated over ``fwhm_mm`` (a bias-field pattern)."""
    f = smooth_noise(rng, shape, voxel_mm, fwhm_mm)[0]
    return ((f - f.min()) / (np.ptp(f) + 1e-12) - 0.5).astype(np.float32)


def apply_appearance(
    img: np.ndarray,
    look: Appearance,
    voxel_mm: float = 1.0,
    seed: int = 0,
    field: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Render ``img`` (intensities in [0, 1], background 0) as the scanner ``look`` sees it.

    ``field`` is the bias pattern in [-0.5, 0.5] (default: one drawn from ``seed``); ``mask`` is
    where the offset applies (default: ``img > 0``).
    """
    rng = np.random.default_rng(seed)
    out = np.clip(img, 0, None).astype(np.float32) ** look.gamma
    if look.bias:
        out *= 1.0 + look.bias * (
            smooth_field(img.shape, voxel_mm, look.bias_scale_mm, rng) if field is None else field
        )
    if look.blur_mm:
        out = ndimage.gaussian_filter(out, sigma=look.blur_mm / voxel_mm / 2.355)
    out = look.scale * out + look.offset * (img > 0 if mask is None else mask)
    if look.noise:
        sd = look.noise * float(out.max())
        out = np.sqrt((out + sd * rng.standard_normal(out.shape)) ** 2 + (sd * rng.standard_normal(out.shape)) ** 2)
    return out.astype(np.float32)
