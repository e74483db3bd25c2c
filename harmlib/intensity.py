"""Intensity operations on brain images that data, models and inference share (no network in here).

Nyul's landmarks of a brain (:func:`brain_landmarks`), a piecewise-linear map between two landmark sets
(:func:`piecewise_linear`), the brain's smooth log intensity field on a coarse grid (:func:`log_lowpass`) and a
field multiplied into an image (:func:`multiply_field`). Images are in the models' range [-1, 1], background -1.
"""

from __future__ import annotations

import torch

# Nyul & Udupa's (2000) landmarks: the brain's 1st and 99th percentiles and its deciles.
LANDMARK_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)


def brain_landmarks(x: torch.Tensor, percentiles: torch.Tensor) -> torch.Tensor:
    """(N, L) percentiles of each image's brain: its voxels above the image's mean (the
    ``data.datasets.Normalizer``'s foreground), which ignores the background noise at any grid."""
    q = percentiles.to(x.device, torch.float32) / 100.0
    rows = [torch.quantile(_foreground(v), q) for v in x.detach().float().flatten(1)]
    return torch.stack(rows)


def _foreground(v: torch.Tensor) -> torch.Tensor:
    """The voxels above the mean; a constant image has none, and all of it is its own foreground."""
    above = v[v > v.mean()]
    return above if above.numel() else v


def piecewise_linear(x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, floor: float = -1.0) -> torch.Tensor:
    """Map each image of x (N, 1, *spatial) through the curve (floor -> floor, src_k -> dst_k), linear
    between knots and, above the last one, along the last segment. ``src`` and ``dst``: (N, L), increasing."""
    n = x.shape[0]
    ones = torch.full((n, 1), floor, device=x.device, dtype=torch.float32)
    kx, ky = torch.cat([ones, src.float()], 1), torch.cat([ones, dst.float()], 1)
    flat = x.float().reshape(n, -1)
    i = torch.searchsorted(kx.contiguous(), flat.contiguous()).clamp(1, kx.shape[1] - 1)
    x0, x1, y0, y1 = (t.gather(1, j) for t, j in ((kx, i - 1), (kx, i), (ky, i - 1), (ky, i)))
    out = y0 + (y1 - y0) / (x1 - x0).clamp_min(1e-4) * (flat - x0)
    return out.reshape(x.shape).to(x.dtype)


def field_grid_step(sigma_vox: float) -> int:
    """Spacing (voxels) of the coarse grid a low-pass field of Gaussian ``sigma_vox`` is kept on: 2/3 sigma,
    where that Gaussian's spectrum is below 1 % (the field between grid points is linear, not aliased)."""
    return max(1, int(round(2 * sigma_vox / 3)))


def grid_points(n: int, step: int) -> torch.Tensor:
    """The coarse grid's positions along an axis of ``n`` voxels: evenly spaced, both ends included, as
    ``F.interpolate(..., align_corners=True)`` places them."""
    return torch.linspace(0, n - 1, -(-(n - 1) // step) + 1).round().long()


def log_lowpass(x: torch.Tensor, sigma_vox: float, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The brain's log low-pass intensity on the coarse grid, and where it is defined.

    ``x`` (N, 1, *spatial) in [-1, 1]; the brain is each image's foreground (voxels above its mean, as
    :func:`brain_landmarks`). Normalized convolution: Gaussian(v * m) / Gaussian(m) with v = (x + 1) / 2, so
    the edge of the brain does not darken the field. Returns (N, *grid) log values (0 where undefined) and
    the (N, *grid) mask of points with at least 5 % brain weight around them.
    """
    from scipy import ndimage  # numpy-side, once per volume: the training loop never calls it

    logs, valid = [], []
    for img in x.detach().float().cpu().numpy()[:, 0]:
        m = (img > img.mean()).astype("float32")
        num = ndimage.gaussian_filter((img + 1) / 2 * m, sigma_vox, mode="constant")
        den = ndimage.gaussian_filter(m, sigma_vox, mode="constant")
        idx = torch.meshgrid(*[grid_points(n, step) for n in img.shape], indexing="ij")
        num_g, den_g = torch.from_numpy(num)[idx], torch.from_numpy(den)[idx]
        ok = den_g > 0.05
        logs.append(torch.where(ok, (num_g.clamp_min(1e-4) / den_g.clamp_min(1e-4)).log(), torch.zeros(())))
        valid.append(ok)
    return torch.stack(logs).to(x.device), torch.stack(valid).to(x.device)


def multiply_field(x: torch.Tensor, log_field: torch.Tensor) -> torch.Tensor:
    """x in [-1, 1] with its intensities v = (x + 1) / 2 multiplied by exp(log_field): the background stays -1."""
    v = (x.float() + 1) / 2 * log_field.exp()
    return (2 * v - 1).to(x.dtype)
