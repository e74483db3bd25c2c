"""NIfTI in and out: validated loading with one-line errors, atomic writing.

Every loader error names the file and the fix; every write goes to a temporary file in the same
folder and is renamed into place, so a killed run never leaves a half-written volume that looks
complete, and inputs are only ever opened for reading.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np


class DataError(ValueError):
    """An input file or manifest row that cannot be used; the message names it and the fix."""


def load_volume(path: str | Path, allow_empty: bool = False) -> nib.Nifti1Image:
    """Load a 3D NIfTI and check it: readable, 3D, finite, not all zero, invertible affine.

    The returned image's data are cached float32 (``img.get_fdata(dtype=np.float32)``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (or the manifest's 'path' column)")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # nibabel raises many types for truncated or corrupt files
        raise DataError(
            f"{path}: cannot read it as NIfTI ({type(err).__name__}: {str(err).splitlines()[0][:120]}); re-export or re-download the file"
        ) from None
    data = np.squeeze(data) if data.ndim == 4 and data.shape[3] == 1 else data
    if np.iscomplexobj(data) or data.dtype.names:  # complex (real + imaginary) or RGB (a structured dtype)
        kind = "complex-valued" if np.iscomplexobj(data) else "RGB"
        raise DataError(
            f"{path}: a {kind} volume; a T1 magnitude image is needed -- export the magnitude (or one channel) first"
        )
    if data.ndim != 3:
        raise DataError(
            f"{path}: image is {data.ndim}D with shape {data.shape}; a 3D T1 volume is needed (split 4D series, e.g. with fslsplit)"
        )
    if (
        np.issubdtype(data.dtype, np.floating)
        and np.isfinite(data).all()
        and np.abs(data).max() > np.finfo(np.float32).max
    ):
        raise DataError(
            f"{path}: intensities up to {np.abs(data).max():.3g}, beyond what float32 holds; rescale the volume (e.g. to 0-4095) first"
        )
    data = data.astype(np.float32)
    if not np.isfinite(data).all():
        raise DataError(
            f"{path}: contains {int((~np.isfinite(data)).sum())} NaN/Inf voxels; fix the export or replace them (e.g. numpy.nan_to_num) first"
        )
    if not allow_empty and not data.any():
        raise DataError(f"{path}: every voxel is zero; the file is empty or the export failed")
    aff = img.affine
    if aff is None or not np.isfinite(aff).all() or abs(np.linalg.det(aff[:3, :3])) < 1e-6:
        raise DataError(f"{path}: the affine is not invertible; repair the header (qform/sform) before using the file")
    out = nib.Nifti1Image(data, aff, header=img.header if isinstance(img, nib.Nifti1Image) else None)
    out.set_data_dtype(np.float32)
    return out


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: resolved (links followed), or the same inode where both exist."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def file_mode() -> int:
    """The mode a new file gets under this process's umask (0644 under the usual 022): temporary files are made
    0600, and an output must not stay so."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


TMP_PREFIX = ".tmp-"


def remove_stale_temporaries(folder: str | Path) -> int:
    """Remove the temporary files an earlier, killed run left in ``folder`` (ours by their prefix); returns how many."""
    n = 0
    for tmp in Path(folder).glob(f"{TMP_PREFIX}*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            n += 1
    return n


LOCK = ".harmlib.lock"


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``folder`` for one run: a second run writing the same folder at the same time is refused in one line,
    instead of both reporting success while one replaced the other's files (an advisory lock, removed after)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():  # the command's own check names it; no lock to take there
        yield
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    fh = open(path, "a+")  # noqa: SIM115  (held for the whole run)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise DataError(
            f"{folder}: another harmlib run is writing to this folder now; wait for it to finish or choose another folder"
        ) from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
        if created and not any(folder.iterdir()):  # a run that wrote nothing leaves no empty folder behind
            folder.rmdir()


MIN_EXTENT_MM, MAX_VOXEL_MM = 60.0, 10.0  # a brain spans well over 60 mm each way; a T1's voxels are a few mm at most


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """The voxel size (mm) along each array axis."""
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(0))


def check_head(img: nib.Nifti1Image, path: str | Path) -> None:
    """A volume that can hold a head: large and fine enough, with contrast inside (a uniform box is not a scan);
    else a one-line DataError naming the file."""
    vox = voxel_sizes(img.affine)
    extent = vox * np.asarray(img.shape[:3])
    if extent.min() < MIN_EXTENT_MM or vox.max() > MAX_VOXEL_MM:
        raise DataError(
            f"{path}: {'x'.join(map(str, img.shape[:3]))} voxels of {vox.max():.3g} mm ({extent.min():.0f} mm across at "
            "the least): too small or too coarse to be a brain; a whole-head T1 is needed"
        )
    data = np.asarray(img.dataobj, dtype=np.float32)
    inside = data[data > 0]
    if inside.size and inside.std() < 0.01 * inside.mean():
        raise DataError(f"{path}: its non-zero voxels are all one intensity: not a scan of a head; check the file")


def write_atomic(path: str | Path, write: Callable[[str], Any], suffix: str = "") -> Path:
    """Write ``path`` through a temporary file in its folder (``write(tmp_path)``) and a rename: a reader
    never sees half a file. On any failure the temporary file is removed; a full disk is one line naming the file.
    The file gets the mode the umask gives a new file, as if written directly.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"{path}: a file stands where its folder should be; choose another output folder") from None
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise DataError(
                f"{path}: the disk is full; nothing half-written was kept -- free some space and rerun to resume"
            ) from None
        raise
    return path


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recorded_digest(path: str | Path) -> str:
    """A file's SHA-256 as its completion record states it (`mark_done`), else computed from its bytes."""
    try:
        return str(json.loads(_done_path(Path(path)).read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return file_digest(path)


def _done_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.done.json")


def _canonical(made_from: dict[str, Any]) -> Any:
    return json.loads(json.dumps(made_from, sort_keys=True, default=str))


def mark_done(path: str | Path, made_from: dict[str, Any]) -> None:
    """Record that ``path`` is finished: what it was made from (inputs' digests, settings) and its own digest.
    Written after the output itself, so an output without its record is never taken for done."""
    path = Path(path)
    write_text_atomic(
        _done_path(path), json.dumps({"made_from": _canonical(made_from), "sha256": file_digest(path)}, indent=1)
    )


def is_done(path: str | Path, made_from: dict[str, Any]) -> bool:
    """Whether ``path`` exists, was made from exactly ``made_from`` and is unchanged since (its digest):
    a truncated, empty, replaced or stale output is not done, and is made again."""
    path = Path(path)
    try:
        rec = json.loads(_done_path(path).read_text())
        return (
            path.is_file() and rec.get("made_from") == _canonical(made_from) and rec.get("sha256") == file_digest(path)
        )
    except (OSError, ValueError, AttributeError):
        return False


def save_volume(path: str | Path, data: np.ndarray, affine: np.ndarray, header: nib.Nifti1Header | None = None) -> Path:
    """Write a NIfTI atomically (temporary file + rename) and return its path."""
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine, header=header)
    img.set_data_dtype(np.float32)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    name = Path(path).name.lower()  # nibabel picks the format by the (lower-case) ending: SUB.NII.GZ too
    suffix = ".nii.gz" if name.endswith(".nii.gz") else ".nii" if name.endswith(".nii") else Path(path).suffix
    return write_atomic(path, lambda tmp: nib.save(img, tmp), suffix)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file (CSV, JSON) atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
