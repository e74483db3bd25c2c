"""Harmonize one's own preprocessed T1 volumes with a trained model file of any kind.

Volume in, volume out on the input's grid and at its resolution, with its header and affine. The input must be
MNI-aligned (``harmlib preprocess`` output: the FSL 182x218x182 1 mm grid, or any axis-aligned grid covering the
MNI brain). The model works on its own grid (the profile's voxel size): the scan is brought there as a scan of that
resolution would look (block means, or a low-pass then trilinear), normalized as in training (background -> -1,
99.5th percentile of the brain -> +1; see ``harmlib.data.datasets.Normalizer``) and harmonized; what the model
changed is then applied to the scan on its own grid (`harmlib.harmonize.change`: the landmark curve to every voxel,
the site field and the networks' delta upsampled as changes), and mapped back to intensities by the inverse of that
normalization with the *target* site's typical scale (the median 99.5th percentile of its training volumes, stored
in the model file; the median over all sites for a site-free target). So an image harmonized to A is in A's
intensity units, as a scan at A would be, and a 1 mm scan comes back a 1 mm scan with its own fine detail.

A scan coarser than the model's grid (3 mm voxels for a 2 mm model) is harmonized on its own grid as well: the
change is computed from the scan interpolated to the model's grid and averaged back over each of the scan's voxels,
so the output has the scan's resolution, never a finer look than it was acquired with (:func:`resolution_note`).
Classical baselines (Nyul, WhiteStripe, z-score) are pointwise and run on the scan's grid directly.
"""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from harmlib.checkpoint import load_checkpoint
from harmlib.data.io import DataError, check_head, load_volume, same_file, save_volume, voxel_sizes
from harmlib.harmonize.base import Harmonizer
from harmlib.harmonize.change import grid_map, to_grid
from harmlib.harmonize.targets import Target
from harmlib.provenance import model_info, provenance, sidecar_path, write_sidecar

MNI_CENTRE_MM = np.array([0.0, -18.0, 18.0])


def check_mni_aligned(img: nib.Nifti1Image, path: Path) -> None:
    """An axis-aligned grid whose field of view holds the MNI brain; else a one-line error."""
    rot = img.affine[:3, :3]
    off = np.abs(rot - np.diag(np.diag(rot))).max()
    centre = nib.affines.apply_affine(img.affine, (np.array(img.shape[:3]) - 1) / 2)
    extent = np.abs(np.diag(rot)) * np.array(img.shape[:3])
    if off > 1e-3 * np.abs(rot).max() or np.linalg.norm(centre - MNI_CENTRE_MM) > 40 or (extent < 120).any():
        raise DataError(
            f"{path}: not aligned to MNI space (oblique, off-centre or too small a field of view); run 'harmlib preprocess' on it first"
        )


def resample(
    vol: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray, dst_shape: tuple[int, ...], order: int = 1
) -> np.ndarray:
    """Resample ``vol`` from its grid onto another grid of the same world (trilinear; no low-pass: use
    `harmlib.harmonize.change.to_grid` to bring a scan to a coarser grid)."""
    mapping = grid_map(src_affine, dst_affine)
    return ndimage.affine_transform(
        vol, mapping[:3, :3], mapping[:3, 3], output_shape=dst_shape, order=order, mode="constant", cval=0.0
    ).astype(np.float32)


def on_model_grid(h: Harmonizer, shape: tuple[int, ...], affine: np.ndarray) -> bool:
    """Whether a volume of ``shape`` and ``affine`` is on the model's grid (or the model has none: a baseline)."""
    return h.affine is None or (tuple(shape[:3]) == tuple(h.shape) and np.allclose(affine, h.affine, atol=1e-4))


def resolution_note(h: Harmonizer, affine: np.ndarray, path: str | Path = "the scan") -> str | None:
    """One line for a scan coarser than the model's grid (what the user gets), else None."""
    if h.affine is None:
        return None
    scan, model = voxel_sizes(affine), voxel_sizes(h.affine)
    if (scan <= model * 1.01).all():
        return None
    mm = "x".join(f"{v:.3g}" for v in scan)
    return (
        f"harmlib: {path}: voxels of {mm} mm are coarser than the model's {model.max():.3g} mm grid; harmonized on the "
        "scan's own grid, so the output has the scan's resolution (nothing finer is made up)"
    )


def harmonize_array(h: Harmonizer, vol: np.ndarray, target: str | Target, seed: int = 0) -> np.ndarray:
    """Harmonize a volume already on the model's grid; returns it in the target's intensity units."""
    return h.harmonize(vol, target, seed)


def check_input(in_path: str | Path, h: Harmonizer | None = None) -> nib.Nifti1Image:
    """A readable, MNI-aligned T1 with a positive brain, large and fine enough to be one (and, with ``h``, with a brain
    on the model's grid); else a one-line DataError naming the file."""
    img = load_volume(in_path)
    check_mni_aligned(img, Path(in_path))
    check_head(img, in_path)
    if not np.any(np.asarray(img.dataobj) > 0):
        raise DataError(
            f"{in_path}: no voxel above 0 (all negative or zero); a T1 magnitude image is needed -- check the file or its scaling"
        )
    if h is not None and h.affine is not None:
        on_grid = to_grid(img.get_fdata(dtype=np.float32), img.affine, h.affine, h.shape)
        if not np.any(on_grid > 0):
            raise DataError(
                f"{in_path}: nothing of it lies on the model's grid (MNI space); preprocess it (harmlib preprocess) first"
            )
    return img


def check_output(in_path: str | Path, out_path: str | Path, overwrite: bool = False) -> None:
    """An output may not be an input, a folder, or (without ``overwrite``) an existing file."""
    in_path, out_path = Path(in_path), Path(out_path)
    for out in (out_path, sidecar_path(out_path)):  # every file the run writes: the volume and its sidecar
        if same_file(out, in_path) or (out != out_path and same_file(out, sidecar_path(in_path)) and out.exists()):
            what = "the input" if out == out_path else f"the input's sidecar {out.name}"
            raise DataError(f"{in_path}: the output would overwrite {what}; choose another --out-dir")
        if out.is_dir():
            raise DataError(f"{out}: the output name is a folder; choose another --out-dir or remove that folder")
        if out.exists() and not overwrite:
            raise DataError(f"{out}: exists; pass --overwrite to replace it")


def harmonize_file(
    h: Harmonizer,
    in_path: str | Path,
    out_path: str | Path,
    target: str | Target,
    seed: int = 0,
    overwrite: bool = False,
    model_file: str | Path | None = None,
) -> Path:
    """Harmonize one NIfTI to ``out_path`` (atomic), keeping the input's grid, header and affine.

    With ``model_file`` (the file ``h`` was loaded from) a JSON sidecar records the provenance: input and
    model paths and SHA-256, kind, training profile and steps, target, seed, versions, date
    (`harmlib.provenance`). It is written after the image, so an image without one was interrupted.
    """
    target = h.target(target)  # parsed once, here or by the caller: unknown targets fail before any work
    check_output(in_path, out_path, overwrite)
    img = check_input(in_path)
    try:
        out = harmonize_volume(h, img.get_fdata(dtype=np.float32), img.affine, target, seed)
    except DataError as err:  # a problem seen only on the model's grid: name the file
        raise DataError(f"{in_path}: {err}") from None
    if not np.isfinite(out).all():  # a diverged model is refused, not written as a volume of NaN
        raise DataError(
            f"{in_path}: the model ({h.kind}) gave {int((~np.isfinite(out)).sum())} NaN/Inf voxels for it; "
            "nothing was written -- retrain the model or check the input's intensities"
        )
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    written = save_volume(out_path, out, img.affine, header=img.header)
    if model_file is not None:
        write_sidecar(
            written,
            provenance(
                in_path,
                model_file,
                _model_info(str(Path(model_file).resolve()), Path(model_file).stat().st_mtime_ns),
                str(target),
                seed,
            ),
        )
    return written


@functools.lru_cache(maxsize=8)
def _model_info(path: str, mtime_ns: int) -> dict:  # the mtime: a re-exported model is read again
    return model_info(load_checkpoint(path))


def harmonize_volume(
    h: Harmonizer, vol: np.ndarray, affine: np.ndarray, target: str | Target, seed: int = 0
) -> np.ndarray:
    """Harmonize an MNI-aligned volume on its own grid and at its own resolution (module docstring): the model's
    change is computed on the model's grid and applied to the volume where it is."""
    if on_model_grid(h, vol.shape, affine):
        return h.harmonize(vol, target, seed)
    on_grid = to_grid(vol, affine, h.affine, h.shape)
    return h.change(on_grid, target, seed).apply(vol, grid_map(h.affine, affine))
