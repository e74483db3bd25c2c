"""Scanner space: what a scanner would have written for a head that sits in MNI space.

The synthetic cohort's "raw" mode renders each volume here so that the preprocessing pipeline
does real work: a random rigid head pose, another voxel size, a larger field of view with
background around the head, another stored axis order, and optionally a smooth bias field.
Because the pose is known, the pipeline's registration can be scored in millimetres
(:func:`pose_error_mm`).

Conventions: coordinates are nibabel's RAS+ world millimetres. ``pose`` maps a point of the input
(MNI) world to the same anatomical point in the scanner world, ``q = pose @ p``; the scanner volume
is therefore ``input(pose^-1 @ scanner_affine @ voxel)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

# Voxel sizes (RAS x, y, z in mm at the 1 mm profile) and stored axis orders that scanners write.
VOXEL_SIZES = ((1.0, 1.0, 1.2), (1.2, 1.2, 1.2), (0.9, 0.9, 1.1), (1.1, 1.1, 1.0))
ORIENTATIONS = ("LPS", "PIR", "LAS", "RAS", "ASL", "PSR")
MAX_ROTATION_DEG = 12.0
MAX_TRANSLATION_MM = 18.0
MARGIN_MM = (15.0, 35.0)  # background around the head on each side, drawn per side


@dataclass(frozen=True)
class ScannerVolume:
    """A scanner-space volume: data and affine as stored, the true pose and how it was drawn."""

    data: np.ndarray
    affine: np.ndarray
    pose: np.ndarray
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    voxel_size: tuple[float, float, float]
    axcodes: tuple[str, str, str]

    def to_nifti(self) -> nib.Nifti1Image:
        """The volume as a NIfTI image (qform and sform set to the stored affine)."""
        img = nib.Nifti1Image(self.data.astype(np.float32), self.affine)
        img.set_qform(self.affine, code=1)
        img.set_sform(self.affine, code=1)
        return img


def rigid_matrix(rotation_deg: tuple[float, float, float], translation_mm: tuple[float, float, float]) -> np.ndarray:
    """4x4 rigid transform: rotations about x, then y, then z (degrees, about the world origin), then a shift."""
    ax, ay, az = np.deg2rad(rotation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx
    m[:3, 3] = translation_mm
    return m


def rigid_angles(matrix: np.ndarray) -> tuple[float, float, float]:
    """The x, y, z rotation angles (degrees) of :func:`rigid_matrix` from a 4x4 (or 3x3) matrix.

    For an affine matrix the rotation of its polar decomposition is used, so scale and shear
    do not leak into the angles.
    """
    u, _, vt = np.linalg.svd(np.asarray(matrix, float)[:3, :3])
    r = u @ vt
    ay = np.arcsin(-np.clip(r[2, 0], -1.0, 1.0))
    return tuple(float(np.rad2deg(a)) for a in (np.arctan2(r[2, 1], r[2, 2]), ay, np.arctan2(r[1, 0], r[0, 0])))


def _bbox_world(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World coordinates (8, 3) of the corners of the non-zero part of a volume."""
    nz = np.argwhere(data != 0)
    lo, hi = nz.min(0), nz.max(0)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], float)
    return nib.affines.apply_affine(affine, corners)


def _bias_field(shape: tuple[int, ...], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field 1 + amplitude * f, f a random quadratic in [-0.5, 0.5].

    A low-order polynomial in scanner coordinates is what a receive coil's sensitivity looks like
    at this scale, and it is exactly what N4's B-spline model can represent.
    """
    g = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    terms = [g[0], g[1], g[2], g[0] * g[1], g[1] * g[2], g[0] * g[2], g[0] ** 2, g[1] ** 2, g[2] ** 2]
    f = sum(c * t for c, t in zip(rng.uniform(-1, 1, len(terms)), terms))
    f = (f - f.min()) / max(float(f.max() - f.min()), 1e-12) - 0.5
    return (1.0 + amplitude * f).astype(np.float32)


def to_scanner_space(
    volume: np.ndarray,
    affine: np.ndarray,
    seed: int,
    voxel_mm: float = 1.0,
    order: int = 1,
    bias: float = 0.0,
    orientation: str | None = None,
) -> ScannerVolume:
    """Render an MNI-space volume (e.g. on the FSL grid) as a scanner would have stored it.

    Deterministic from ``seed``: rotations up to 12 degrees and shifts up to 18 mm, a voxel size
    from :data:`VOXEL_SIZES` times ``voxel_mm`` (the profile's resolution), a field of view that
    holds the moved head plus 15-35 mm of background per side, a stored axis order from
    :data:`ORIENTATIONS` (or ``orientation``), and a multiplicative bias field of peak-to-peak
    ``bias`` (0: none). Resampling is ``scipy.ndimage.map_coordinates`` of ``order`` 1 or 3.
    """
    rng = np.random.default_rng(seed)
    rot = tuple(float(a) for a in rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3))
    shift = tuple(float(t) for t in rng.uniform(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM, 3))
    vox = np.array(VOXEL_SIZES[rng.integers(len(VOXEL_SIZES))]) * voxel_mm
    codes = orientation or ORIENTATIONS[rng.integers(len(ORIENTATIONS))]
    pose = rigid_matrix(rot, shift)

    # Field of view: axis-aligned in the scanner world around the moved head, with background.
    corners = nib.affines.apply_affine(pose, _bbox_world(volume, affine))
    lo = corners.min(0) - rng.uniform(*MARGIN_MM, 3)
    hi = corners.max(0) + rng.uniform(*MARGIN_MM, 3)
    shape = tuple(int(n) for n in np.ceil((hi - lo) / vox) + 1)
    ras_affine = np.diag([*vox, 1.0])
    ras_affine[:3, 3] = lo

    # Pull back every scanner voxel to the input's voxel grid and interpolate there.
    vox_to_in = np.linalg.inv(affine) @ np.linalg.inv(pose) @ ras_affine
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    coords = vox_to_in[:3, :3].astype(np.float32) @ grid + vox_to_in[:3, 3:4].astype(np.float32)
    data = ndimage.map_coordinates(np.asarray(volume, np.float32), coords, order=order, mode="constant", cval=0.0)
    data = np.clip(data, 0, None).reshape(shape)  # cubic splines ring below zero at the head's edge
    if bias:
        data *= _bias_field(shape, bias, rng)

    # Store it in the scanner's axis order, keeping the world position of every voxel.
    change = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(tuple(codes))
    )
    stored = nib.orientations.apply_orientation(data, change)
    stored_affine = ras_affine @ nib.orientations.inv_ornt_aff(change, shape)
    return ScannerVolume(
        data=np.ascontiguousarray(stored, dtype=np.float32),
        affine=stored_affine,
        pose=pose,
        rotation_deg=rot,
        translation_mm=shift,
        voxel_size=tuple(float(v) for v in vox),
        axcodes=tuple(codes),
    )


def brain_points(volume: np.ndarray, affine: np.ndarray, step: int = 1, threshold: float = 0.0) -> np.ndarray:
    """World coordinates (N, 3) of the voxels above ``threshold`` (every ``step``-th along each axis)."""
    sub = np.asarray(volume)[::step, ::step, ::step]
    idx = np.argwhere(sub > threshold) * step
    return nib.affines.apply_affine(affine, idx.astype(float))


def pose_error_mm(
    true_transform: np.ndarray, estimated_world_to_world_transform: np.ndarray, mask_points: np.ndarray
) -> tuple[float, float]:
    """Mean and max distance (mm) between where the true and the estimated transforms send each point.

    Both transforms are 4x4 world-to-world maps in the same direction (template world to scanner
    world, as :attr:`ScannerVolume.pose` and the preprocessing QC record's ``transform_ras``);
    ``mask_points`` are template-world coordinates (N, 3), e.g. from :func:`brain_points`.
    """
    p = np.asarray(mask_points, float)
    d = nib.affines.apply_affine(true_transform, p) - nib.affines.apply_affine(estimated_world_to_world_transform, p)
    dist = np.linalg.norm(d, axis=1)
    return float(dist.mean()), float(dist.max())
