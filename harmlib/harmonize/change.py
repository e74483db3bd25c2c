"""Harmonize at the scan's own resolution: what a model changes, computed on its grid, applied on the scan's.

A model sees the scan on its own grid (2 mm on the cpu profile), but a harmonized 1 mm scan must stay a 1 mm
scan: resampling the model's output back would hand a 2 mm image to the morphometry a 1 mm scan is acquired
for. So every deep harmonizer returns its output on its grid as a :class:`Change` in three parts, each applied
where it belongs (in the normalized range [-1, 1] of `harmlib.data.datasets.Normalizer`):

    y = multiply_field(curve(x), log_field) + delta

* ``curve``: the landmark curve, a pointwise map of intensities (knots ``src -> dst``): applied to every voxel of
  the scan at its own resolution, so fine detail is carried through with the curve's local slope;
* ``log_field``: the site field, a smooth multiplicative field: upsampled from the model's grid (trilinear);
* ``delta``: everything else the networks changed (a residual generator's output, or for a non-residual
  generator its image minus the input): a change at the model's resolution, upsampled as a change, not as an
  image, so it adds what the model learned without removing the scan's own detail.

A model without a curve or a field has ``knots`` / ``log_field`` None (identity / 1). On the model's own grid
:meth:`Change.apply` returns exactly the model's output. A scan coarser than the model's grid is harmonized on its
own grid too: the change is computed on the model's grid from the scan interpolated there and brought back to the
scan's voxels (block means), so the output has the scan's resolution and nothing finer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from harmlib.data.datasets import Normalizer
from harmlib.data.mni import block_average
from harmlib.intensity import multiply_field, piecewise_linear


@dataclass
class Change:
    """One volume's harmonization by a model, in parts that apply at any resolution (module docstring).

    ``params``: the input's normalization {low, high} on the model's grid (applied to the scan as it is, so the
    scan and its grid copy share one scale); ``high``: the target's intensity scale, the output's units;
    ``knots``: (src, dst) of the landmark curve, (L,) each, or None; ``log_field`` and ``delta``: on the model's
    grid (unpadded), or None / zeros.
    """

    normalizer: Normalizer
    params: dict[str, float]
    high: float
    knots: tuple[np.ndarray, np.ndarray] | None
    log_field: np.ndarray | None
    delta: np.ndarray

    def base(self, x: np.ndarray, log_field: np.ndarray | None) -> np.ndarray:
        """The pointwise curve, then the field, on a normalized volume ``x`` (any grid; ``log_field`` on x's)."""
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]
        if self.knots is not None:
            src, dst = (torch.as_tensor(np.asarray(k), dtype=torch.float32)[None] for k in self.knots)
            t = piecewise_linear(t, src, dst)
        if log_field is not None:
            t = multiply_field(t, torch.from_numpy(np.ascontiguousarray(log_field, dtype=np.float32))[None, None])
        return t[0, 0].numpy()

    def apply(self, vol: np.ndarray, vol_to_grid: np.ndarray | None = None) -> np.ndarray:
        """The harmonized ``vol`` on its own grid, in the target's intensity units. ``vol_to_grid``: the 4x4 map from
        ``vol``'s voxel indices to the model grid's (:func:`grid_map`; None: ``vol`` is on the model's grid)."""
        # Not clipped at +1 as the model's input was: on a finer grid more voxels lie above the coarse grid's 99.5th
        # percentile (noise and detail that block means average out), and the curve's last segment carries them.
        x = np.maximum(replace(self.normalizer, clip=False).apply(vol, self.params), -1.0)
        field, delta = self.log_field, self.delta
        if vol_to_grid is not None:
            field = None if field is None else from_grid(field, vol_to_grid, vol.shape)
            delta = from_grid(delta, vol_to_grid, vol.shape)
        y = np.maximum(self.base(x, field) + delta, -1.0)
        out = self.normalizer.inverse(y, {"low": self.params["low"], "high": self.high})
        return np.where(vol > 0, np.clip(out, 0, None), 0).astype(np.float32)


def change_from(
    normalizer: Normalizer,
    params: dict[str, float],
    high: float,
    x: np.ndarray,
    y: np.ndarray,
    knots: tuple[np.ndarray, np.ndarray] | None = None,
    log_field: np.ndarray | None = None,
) -> Change:
    """The :class:`Change` of a model whose output on its grid is ``y`` for the normalized input ``x`` (both
    unpadded, clipped to [-1, 1] as the model saw it), with its curve's ``knots`` and its site field's ``log_field``
    (None: none): ``delta`` is what the curve and the field do not explain, so that ``apply`` on the grid gives back
    ``y`` (where the input lies above the normalization's ceiling, its unclipped intensity through the curve)."""
    c = Change(normalizer, params, high, knots, log_field, np.zeros_like(y, dtype=np.float32))
    c.delta = (y - c.base(x, log_field)).astype(np.float32)
    return c


def grid_map(src_affine: np.ndarray, dst_affine: np.ndarray) -> np.ndarray:
    """The 4x4 map from ``dst``'s voxel indices to ``src``'s (``ndimage.affine_transform``'s convention)."""
    return np.linalg.inv(np.asarray(src_affine, float)) @ np.asarray(dst_affine, float)


def from_grid(arr: np.ndarray, vol_to_grid: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A map on the model's grid (a change: field or delta) on the volume's voxels: trilinear where the volume is
    finer, block means where it is coarser (a coarse voxel takes the mean change of the fine ones it covers)."""
    factor = np.abs(np.diag(vol_to_grid)[:3])  # model voxels per volume voxel: > 1 where the volume is coarser
    sigma = np.sqrt(np.clip(factor**2 - 1, 0, None) / 12)  # a box of `factor` voxels has this SD
    if (sigma > 0).any():
        arr = ndimage.gaussian_filter(arr, sigma, mode="nearest")
    return ndimage.affine_transform(
        arr, vol_to_grid[:3, :3], vol_to_grid[:3, 3], output_shape=tuple(shape[:3]), order=1, mode="nearest"
    ).astype(np.float32)


def to_grid(vol: np.ndarray, affine: np.ndarray, grid_affine: np.ndarray, grid_shape: tuple[int, ...]) -> np.ndarray:
    """A scan on the model's grid as a scan of that resolution would look: block means where the model's voxels
    are an exact multiple of the scan's on the same lattice (the FSL MNI grid and its block averages, how the
    cohort's 2 and 4 mm volumes are made), else a box-equivalent Gaussian low-pass, then trilinear interpolation.
    Without the low-pass a 1 mm scan would alias onto a 2 mm grid (every second voxel's noise and edges)."""
    m = grid_map(affine, grid_affine)  # grid voxel -> scan voxel
    factor = np.diag(m)[:3]
    whole = np.round(factor)
    start = (whole - 1) / 2  # a block of f voxels has its centre (f - 1) / 2 from its first one
    if (
        np.allclose(m[:3, :3], np.diag(factor), atol=1e-6)
        and np.allclose(factor, whole, atol=1e-6)
        and len(set(whole.tolist())) == 1
        and whole[0] > 1
        and np.allclose(m[:3, 3], start, atol=1e-4)
    ):
        f = int(whole[0])
        out = block_average(vol, f)[tuple(slice(0, n) for n in grid_shape)]
        return np.pad(out, [(0, n - s) for n, s in zip(grid_shape, out.shape)]).astype(np.float32)
    sigma = np.sqrt(np.clip(np.abs(factor) ** 2 - 1, 0, None) / 12)
    src = ndimage.gaussian_filter(vol.astype(np.float32), sigma) if (sigma > 0).any() else vol
    return ndimage.affine_transform(
        src, m[:3, :3], m[:3, 3], output_shape=tuple(grid_shape), order=1, mode="constant", cval=0.0
    ).astype(np.float32)
