"""The MNI152 template on the FSL 182x218x182 1 mm grid, and exact coarser grids.

nilearn ships the ICBM 2009 symmetric template (197x233x189, 1 mm, RAS+). The FSL grid that
preprocessed T1s live on is an exact crop of it, flipped along x (FSL's LAS storage):
``d[7:189, 8:226, 0:182][::-1]`` with affine ``[[-1,0,0,90],[0,1,0,-126],[0,0,1,-72]]``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

FSL_SHAPE_1MM = (182, 218, 182)


def fsl_grid_affine(voxel_mm: int = 1) -> np.ndarray:
    """Affine of the FSL MNI grid at 1 mm, or of its ``voxel_mm`` block average."""
    a = np.array([[-1.0, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])
    f = float(voxel_mm)
    # A block of f voxels has its centre (f - 1) / 2 voxels from its first one.
    scale = np.diag([f, f, f, 1.0])
    scale[:3, 3] = (f - 1) / 2
    return a @ scale


def block_average(vol: np.ndarray, factor: int) -> np.ndarray:
    """Exact ``factor``^3 block means; axes are zero-padded (background) up to a multiple."""
    if factor == 1:
        return vol.astype(np.float32, copy=True)
    pad = [(0, (-s) % factor) for s in vol.shape]
    v = np.pad(vol.astype(np.float64), pad)
    n = [s // factor for s in v.shape]
    v = v.reshape(n[0], factor, n[1], factor, n[2], factor).mean(axis=(1, 3, 5))
    return v.astype(np.float32)


@lru_cache(maxsize=4)
def _mni_1mm() -> np.ndarray:
    from nilearn.datasets import load_mni152_template  # ships with nilearn: no download

    d = np.asarray(load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)
    return np.ascontiguousarray(d[7:189, 8:226, 0:182][::-1])


def mni_t1(voxel_mm: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The skull-stripped MNI152 T1 (intensities in [0, 1]) and its affine on the FSL grid."""
    if voxel_mm not in (1, 2, 4):
        raise ValueError(f"mni_t1: voxel_mm={voxel_mm} is invalid; use 1, 2 or 4")
    return block_average(_mni_1mm(), voxel_mm), fsl_grid_affine(voxel_mm)
