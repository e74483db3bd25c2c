"""Image-pair metrics on volumes: SSIM and its terms, PSNR, mean brain intensity."""
from __future__ import annotations

import numpy as np
import torch

from harmlib.ssim import ssim_components


def _t(v: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))[None, None]


def ssim_terms(a: np.ndarray, b: np.ndarray, data_range: float | None = None, win_size: int = 11) -> dict[str, float]:
    """Mean SSIM and its luminance, contrast and structure terms between two volumes.

    The data range defaults to the larger of the two images' ranges, so that two differently
    scaled scans of one subject are compared on one scale.
    """
    dr = data_range or float(max(np.ptp(a), np.ptp(b)))
    comps = ssim_components(_t(a), _t(b), dr, win_size=min(win_size, (min(a.shape) - 1) // 2 * 2 + 1))
    return {"ssim": comps.combine().mean().item(), "luminance": comps.luminance.mean().item(),
            "contrast": comps.contrast.mean().item(), "structure": comps.structure.mean().item()}


def psnr(a: np.ndarray, ref: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio of ``a`` against ``ref`` (dB)."""
    dr = data_range or float(np.ptp(ref))
    mse = float(np.mean((a.astype(np.float64) - ref) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(dr**2 / mse)


def mean_brain_intensity(v: np.ndarray) -> float:
    """Mean intensity of the voxels above the volume's mean (the brain, without background noise)."""
    return float(v[v > v.mean()].mean())
