"""Preprocessing: raw T1 NIfTI (scanner space) to the FSL MNI152 grid, one volume or a manifest.

Per volume (:func:`preprocess_volume`): check and load (one-line ``DataError`` naming the file),
reorient to RAS (``as_closest_canonical``); N4 bias-field correction (shrink 4) in an Otsu head
mask; Mattes-MI registration to the skull-stripped ``mni_t1(voxel_mm)``, multi-resolution, rigid
then affine; linear resampling onto the FSL 182x218x182 1 mm grid, then exact block means onto the
2 or 4 mm FSL grid (the operator that made the coarse templates); optional ``deepbet`` skull strip;
intensity normalization (background 0, 99.5th percentile inside the brain = 1).

Heads with skull (e.g. Colin27): the registration starts from the centre of mass of a coarse brain
mask (threshold, 4 mm opening, largest component) and samples its metric only inside the template's
brain dilated by 5 mm, so scalp, skull and neck neither pull the start nor inflate the affine.

``transform_ras`` in QC records is the 4x4 RAS world-to-world map from the template's world to the
input's world: the direction of :attr:`harmlib.data.scanner_space.ScannerVolume.pose`.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmlib.data.io import (
    DataError,
    check_head,
    file_digest,
    is_done,
    load_volume,
    mark_done,
    same_file,
    save_volume,
    write_atomic,
    write_text_atomic,
)
from harmlib.data.manifest import read_manifest, write_manifest
from harmlib.data.mni import FSL_SHAPE_1MM, block_average, fsl_grid_affine, mni_t1
from harmlib.data.scanner_space import rigid_angles

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # ITK's physical space is LPS, nibabel's is RAS


class MissingExtraError(ValueError):
    """An option needs an optional package (an extra); the message says how to install it.

    A ValueError (the option's value cannot be honoured) so that the CLI prints it in one line.
    """


@dataclass(frozen=True)
class Settings:
    """Knobs of N4 and registration. The defaults are the full settings; :data:`FAST` is for tests."""

    n4_shrink: int = 4
    n4_iterations: tuple[int, ...] = (50, 50, 30, 20)  # per B-spline fitting level
    rigid_levels_mm: tuple[float, ...] = (8.0, 4.0)  # image resolution of each pyramid level
    affine_levels_mm: tuple[float, ...] = (4.0, 2.0)
    iterations: int = 200  # per level and stage
    sampling: float = 0.2  # fraction of the masked template voxels the metric samples
    bins: int = 32
    mask_dilation_mm: float = 5.0
    seed: int = 1  # of the metric's random samples (SimpleITK reads 0 as 'from the wall clock', so 0 is used as 1)
    # Below this correlation with the MNI template (inside its brain) the result is not a registered T1: the
    # synthetic cohort's raw scans (with skull) reach 0.66-0.71, Colin27 above 0.95, a 10^3 noise cube 0.05.
    min_template_correlation: float = 0.4


FAST = Settings(n4_iterations=(20, 10), affine_levels_mm=(4.0,), iterations=60, sampling=0.5)


# --- SimpleITK <-> nibabel --------------------------------------------------------------------


def to_sitk(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image with the geometry of a (data, RAS affine) pair; the affine must not shear."""
    lin = (_LPS @ affine)[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    direction = lin / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise DataError("the affine shears the voxel grid; resample the image onto an orthogonal grid first")
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, np.float32).transpose(2, 1, 0)))
    img.SetSpacing(spacing.tolist())
    img.SetDirection(direction.ravel().tolist())
    img.SetOrigin((_LPS @ affine)[:3, 3].tolist())
    return img


def from_sitk(img: sitk.Image) -> np.ndarray:
    """The voxel array of a SimpleITK image in nibabel's (i, j, k) order."""
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0)


def transform_to_ras(tx: sitk.Transform) -> np.ndarray:
    """A SimpleITK Euler/affine transform (fixed to moving, LPS) as a 4x4 RAS world-to-world matrix."""
    m, c = np.eye(4), np.array(tx.GetCenter())
    m[:3, :3] = np.reshape(tx.GetMatrix(), (3, 3))
    m[:3, 3] = np.array(tx.GetTranslation()) + c - m[:3, :3] @ c
    return _LPS @ m @ _LPS


# --- masks, N4, registration ------------------------------------------------------------------


def head_mask(img: sitk.Image) -> sitk.Image:
    """Foreground (head or brain) by Otsu, holes filled, its largest component, 2 voxels wider."""
    m = sitk.OtsuThreshold(img, 0, 1, 128)
    m = sitk.RelabelComponent(sitk.ConnectedComponent(m), sortByObjectSize=True) == 1
    m = sitk.BinaryFillhole(sitk.BinaryDilate(m, [2] * 3))
    return sitk.Cast(m, sitk.sitkUInt8)


def coarse_brain_mask(img: sitk.Image, head: sitk.Image, radius_mm: float = 4.0) -> sitk.Image:
    """Rough brain: head voxels above the lower of two Otsu thresholds, opened by ``radius_mm``.

    The two thresholds split the head into dark (CSF, skull, air), middle (GM, muscle) and bright
    (WM, fat); GM and WM together keep the hemispheres joined. The erosion breaks the thin links
    between brain and scalp (the dark skull lies between them), the largest component is the
    brain, and the dilation gives its size back. Only its centre of mass is used, so rough is enough.
    """
    vals = from_sitk(img)[from_sitk(head) > 0]
    otsu = sitk.OtsuMultipleThresholdsImageFilter()
    otsu.SetNumberOfThresholds(2)
    otsu.Execute(sitk.GetImageFromArray(vals.reshape(1, 1, -1)))
    tissue = sitk.Cast((img > float(otsu.GetThresholds()[0])) * head, sitk.sitkUInt8)
    r = [max(1, int(round(radius_mm / s))) for s in img.GetSpacing()]
    core = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.BinaryErode(tissue, r)), sortByObjectSize=True) == 1
    brain = sitk.BinaryDilate(sitk.Cast(core, sitk.sitkUInt8), r) * tissue
    return sitk.Cast(sitk.BinaryFillhole(brain), sitk.sitkUInt8)


def n4_correct(img: sitk.Image, mask: sitk.Image, settings: Settings = Settings()) -> sitk.Image:
    """N4 bias-field correction fitted on a ``n4_shrink``-times shrunk copy, applied at full resolution."""
    f = [settings.n4_shrink] * 3
    small, small_mask = sitk.Shrink(img, f), sitk.Shrink(mask, f)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(settings.n4_iterations))
    n4.Execute(small, small_mask)
    log_field = n4.GetLogBiasFieldAsImage(img)
    return sitk.Cast(img / sitk.Exp(log_field), sitk.sitkFloat32)


def _run_stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    fixed_mask: sitk.Image,
    tx: sitk.Transform,
    levels_mm: tuple[float, ...],
    settings: Settings,
) -> tuple[sitk.Transform, float]:
    """One Mattes-MI multi-resolution registration; returns the optimized transform and final metric."""
    vox = min(fixed.GetSpacing())
    shrink = [max(1, int(round(lv / vox))) for lv in levels_mm]
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(settings.sampling, settings.seed or 1)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    # Steps in mm of the largest voxel displacement, so rotations, shifts and scales move alike.
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0,
        minStep=0.01,
        numberOfIterations=settings.iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel([0.5 * lv for lv in levels_mm])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(fixed, moving)
    return tx, float(reg.GetMetricValue())


def register_to_template(
    moving: sitk.Image, moving_brain: sitk.Image, voxel_mm: int = 1, settings: Settings = Settings()
) -> tuple[sitk.AffineTransform, dict]:
    """Affine registration of a (bias-corrected) T1 to ``mni_t1(voxel_mm)``: rigid, then affine.

    Returns the transform (template physical point to moving physical point) and a dict with the
    rigid stage's angles (degrees) and shift (mm), and both stages' final metric values.
    """
    tmpl, aff = mni_t1(voxel_mm)
    fixed = to_sitk(tmpl, aff)
    # Bin-average a moving image much finer than the finest level: ITK smooths the whole moving
    # image at every level, which dominates the time for a 1 mm head registered at 4 mm.
    finest = min(settings.rigid_levels_mm + settings.affine_levels_mm)
    bins = [max(1, int(finest / 2 / sp)) for sp in moving.GetSpacing()]
    moving = sitk.BinShrink(moving, bins) if max(bins) > 1 else moving
    brain = sitk.Cast(to_sitk((tmpl > 0).astype(np.float32), aff) > 0.5, sitk.sitkUInt8)
    r = max(1, int(round(settings.mask_dilation_mm / voxel_mm)))
    fixed_mask = sitk.BinaryDilate(brain, [r] * 3)
    init = sitk.CenteredTransformInitializer(
        sitk.Cast(brain, sitk.sitkFloat32),
        sitk.Cast(moving_brain, sitk.sitkFloat32),
        sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS,
    )
    rigid = sitk.Euler3DTransform(init)  # centres of mass matched, no rotation
    rigid, metric_rigid = _run_stage(fixed, moving, fixed_mask, rigid, settings.rigid_levels_mm, settings)
    affine = sitk.AffineTransform(rigid.GetMatrix(), rigid.GetTranslation(), rigid.GetCenter())
    affine, metric = _run_stage(fixed, moving, fixed_mask, affine, settings.affine_levels_mm, settings)
    rigid_ras = transform_to_ras(rigid)
    info = {
        "metric": metric,
        "metric_rigid": metric_rigid,
        "rotation_deg": [round(a, 3) for a in rigid_angles(rigid_ras)],
        "translation_mm": [round(float(t), 3) for t in rigid_ras[:3, 3]],
    }
    return affine, info


# --- one volume -------------------------------------------------------------------------------


def _require_deepbet():
    """deepbet's ``run_bet``, or a one-line error saying how to install the extra."""
    try:
        from deepbet import run_bet
    except ImportError:
        raise MissingExtraError("skull stripping needs the optional package deepbet: pip install deepbet") from None
    return run_bet


def skull_strip_mask(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """deepbet's brain mask (boolean) of a T1 volume; deepbet works on files, so this goes through a temp folder."""
    run_bet = _require_deepbet()
    import torch  # deepbet is built on torch; use a GPU only when there is one

    with tempfile.TemporaryDirectory(prefix="harmlib-bet-") as tmp:
        src, mask = Path(tmp) / "t1.nii.gz", Path(tmp) / "mask.nii.gz"
        save_volume(src, data, affine)
        run_bet([str(src)], mask_paths=[str(mask)], no_gpu=not torch.cuda.is_available())
        return np.asarray(nib.load(str(mask)).dataobj) > 0


def normalize_intensity(data: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, float]:
    """Divide by the 99.5th percentile inside ``brain`` (about the brightest white matter), negatives to 0.

    A percentile rather than the maximum so that a few bright vessels or fat voxels do not set
    the scale; values above 1 are kept (not clipped) so that nothing is lost.
    """
    vals = data[brain & (data > 0)]
    scale = float(np.percentile(vals, 99.5)) if vals.size else 0.0
    if not scale > 0:
        raise DataError("no signal inside the MNI brain mask after registration; is this a T1 head or brain image?")
    return (np.clip(data, 0, None) / scale).astype(np.float32), scale


def _load_ras(path: Path) -> nib.Nifti1Image:
    """A checked 3D volume, reoriented to the closest RAS+ axis order (no resampling)."""
    img = load_volume(path)
    if min(img.shape) < 8:
        raise DataError(f"{path}: image has shape {img.shape}, a slice or a few; a 3D T1 volume is needed")
    return nib.as_closest_canonical(img)


def save_qc_figure(path: str | Path, data: np.ndarray, voxel_mm: int = 1, title: str = "") -> Path:
    """Three planes of an output volume with the MNI template's brain outline (red) and WM edge (yellow).

    Shown in neurological convention (subject's left on the left of the image), planes through
    MNI (0, -18, 18), which cuts the ventricles, the thalamus and the cortex. Written atomically.
    """
    from matplotlib.figure import Figure  # no pyplot: safe in worker processes, no global state

    tmpl, aff = mni_t1(voxel_mm)
    c = np.round(nib.affines.apply_affine(np.linalg.inv(aff), [0.0, -18.0, 18.0])).astype(int)
    vol, tmpl, c[0] = data[::-1], tmpl[::-1], data.shape[0] - 1 - c[0]  # FSL stores x right-to-left
    planes = {
        "sagittal": (vol[c[0]], tmpl[c[0]]),
        "coronal": (vol[:, c[1]], tmpl[:, c[1]]),
        "axial": (vol[:, :, c[2]], tmpl[:, :, c[2]]),
    }
    fig = Figure(figsize=(10, 3.8))
    vmax = float(np.percentile(data[data > 0], 99.5)) if (data > 0).any() else 1.0
    for ax, (name, (img, t)) in zip(fig.subplots(1, 3), planes.items()):
        ax.imshow(img.T, origin="lower", cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        ax.contour(t.T, levels=[0.1, 0.78], colors=["red", "yellow"], linewidths=0.6)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=8)
    return write_atomic(
        path, lambda tmp: fig.savefig(tmp, format="png", dpi=80), ".png"
    )  # a half-written figure never looks done


def preprocess_volume(
    in_path: str | Path,
    out_path: str | Path,
    voxel_mm: int = 1,
    skull_strip: bool = False,
    qc_dir: str | Path | None = None,
    settings: Settings = Settings(),
) -> dict:
    """Preprocess one T1 NIfTI into MNI space on the FSL grid at ``voxel_mm`` (1, 2 or 4) mm.

    Writes ``out_path`` atomically (and, with ``qc_dir``, ``<name>.png`` and ``<name>.json`` there,
    before the volume, so an existing volume has its QC). Returns the QC record: input, output,
    ``metric`` / ``metric_rigid`` (Mattes MI at each stage's last level, lower is better),
    ``template_correlation`` (output vs template inside the brain), rigid ``rotation_deg`` /
    ``translation_mm``, ``transform_ras`` (template world to input world), ``affine_scales``,
    ``intensity_scale`` and ``n4_seconds`` / ``registration_seconds`` / ``seconds``.
    Bad input raises a one-line :class:`DataError` naming the file; the input is only read.
    """
    t0 = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    if voxel_mm not in (1, 2, 4):
        raise ValueError(f"voxel_mm={voxel_mm} is invalid; use 1, 2 or 4")
    if same_file(out_path, in_path):
        raise DataError(f"{in_path}: output path equals the input; inputs are never overwritten, choose another folder")
    if skull_strip:
        _require_deepbet()
    img = _load_ras(in_path)
    check_head(img, in_path)  # a uniform box once passed the template-correlation check (0.436 >= 0.4)
    try:
        moving = to_sitk(np.clip(img.get_fdata(dtype=np.float32), 0, None), img.affine)
        head, t = head_mask(moving), time.perf_counter()
        corrected = n4_correct(moving, head, settings)
        n4_s, t = time.perf_counter() - t, time.perf_counter()
        tx, info = register_to_template(corrected, coarse_brain_mask(corrected, head), voxel_mm, settings)
        reg_s = time.perf_counter() - t
        ref = to_sitk(np.zeros(FSL_SHAPE_1MM, np.float32), fsl_grid_affine(1))
        out = from_sitk(sitk.Resample(corrected, ref, tx, sitk.sitkLinear, 0.0))
        inside = from_sitk(sitk.Resample(sitk.Cast(head, sitk.sitkFloat32), ref, tx, sitk.sitkLinear, 0.0))
        transform = transform_to_ras(tx)
        scales = np.linalg.svd(transform[:3, :3], compute_uv=False)
        if scales.min() < 0.6 or scales.max() > 1.6:  # a head is not 40 % larger or smaller than MNI's
            raise DataError(
                f"registration to MNI failed (affine scales {np.round(scales, 2).tolist()}); check the image and its header orientation"
            )
        out = np.clip(out, 0, None) * inside  # background (air outside the head) to 0
        if skull_strip:
            out = out * skull_strip_mask(out, fsl_grid_affine(1))
        out = block_average(out, voxel_mm)
        tmpl, aff = mni_t1(voxel_mm)
        out, scale = normalize_intensity(out, (out > 0) if skull_strip else (tmpl > 0))
    except DataError as err:
        raise DataError(f"{in_path}: {err}") from None
    except RuntimeError as err:  # SimpleITK raises RuntimeError with a multi-line ITK trace
        raise DataError(
            f"{in_path}: SimpleITK failed ({str(err).strip().splitlines()[-1][:160]}); is this a T1-weighted head or brain image?"
        ) from None
    record = {
        "input": str(in_path),
        "output": str(out_path),
        "voxel_mm": voxel_mm,
        "skull_strip": skull_strip,
        **info,
        # Correlation with the template inside its brain: comparable across volumes, unlike MI values.
        "template_correlation": round(float(np.corrcoef(out[tmpl > 0], tmpl[tmpl > 0])[0, 1]), 4),
        "affine_scales": [round(float(s), 4) for s in scales],
        "transform_ras": np.round(transform, 5).tolist(),
        "intensity_scale": scale,
        "n4_seconds": round(n4_s, 2),
        "registration_seconds": round(reg_s, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if not record["template_correlation"] >= settings.min_template_correlation:  # NaN (a constant output) fails too
        raise DataError(
            f"{in_path}: registration to MNI failed its quality check (template correlation {record['template_correlation']} "
            f"< {settings.min_template_correlation}); is this a T1-weighted head or brain image? Check it and its header orientation"
        )
    if qc_dir is not None:
        stem = out_path.name.removesuffix(".gz").removesuffix(".nii")
        save_qc_figure(Path(qc_dir) / f"{stem}.png", out, voxel_mm, f"{in_path.name}  MI {record['metric']:.3f}")
        write_text_atomic(Path(qc_dir) / f"{stem}.json", json.dumps(record, indent=1))
    save_volume(out_path, out, aff)
    return record


# --- a manifest -------------------------------------------------------------------------------


def _output_keys(df: pd.DataFrame) -> list[str]:
    """File names from (subject, session, domain), unique in a manifest and stable across runs."""
    keys = [
        re.sub(r"[^A-Za-z0-9.-]+", "_", "_".join(p for p in (s, e, d) if p)).strip("_")
        for s, e, d in zip(df["subject"], df["session"], df["domain"])
    ]
    return keys if len(set(keys)) == len(keys) else [f"{k}_{i:05d}" for i, k in enumerate(keys)]


def _init_worker(threads: int) -> None:
    """Share the cores between the worker processes instead of each ITK filter taking them all. Ctrl-C is
    the parent's to handle (one line, workers stopped): a worker ignores it rather than print its own traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _job(
    i: int, src: str, dst: str, qc_dir: str, voxel_mm: int, skull_strip: bool, settings: Settings
) -> tuple[int, dict | None, str | None]:
    """Run one volume and return (row, QC record or None, one-line error or None); never raises."""
    try:
        made_from = _made_from(Path(src), voxel_mm, skull_strip, settings)
        rec = preprocess_volume(src, dst, voxel_mm, skull_strip, qc_dir, settings)
        mark_done(dst, made_from)  # after the volume and its QC: only now does it count as done
        return i, rec, None
    except (DataError, MissingExtraError) as err:
        return i, None, str(err)
    except Exception as err:  # a bug or an odd file: report it as one line rather than losing the run
        return i, None, f"{src}: {type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


def _made_from(src: Path, voxel_mm: int, skull_strip: bool, settings: Settings) -> dict:
    """What an output is a function of: the input's bytes and every setting (another input or setting: made again)."""
    try:
        digest = file_digest(src)
    except OSError:
        digest = ""  # a missing input: that row fails in preprocess_volume with its own message
    return {
        "input_sha256": digest,
        "voxel_mm": voxel_mm,
        "skull_strip": skull_strip,
        "settings": dataclasses.asdict(settings),
    }


def _cached(src: Path, dst: Path, qc_dir: Path, voxel_mm: int, skull_strip: bool, settings: Settings) -> dict | None:
    """The QC record of an output that was verified done from this very input and these settings, else None.

    A truncated or replaced output, an input that changed, other settings: not done, made again."""
    if not is_done(dst, _made_from(src, voxel_mm, skull_strip, settings)):
        return None
    js = qc_dir / (dst.name.removesuffix(".nii.gz") + ".json")
    rec = json.loads(js.read_text()) if js.is_file() else {"output": str(dst)}
    return {**rec, "status": "skipped"}


def _run_jobs(args: list[tuple], workers: int, collect) -> None:
    """Run :func:`_job` over ``args`` in ``workers`` processes (in this one for 1), feeding ``collect``."""
    if workers <= 1 or len(args) <= 1:
        for a in args:
            collect(*_job(*a))
        return
    n = min(workers, len(args))
    ctx = multiprocessing.get_context("spawn")  # fork after torch/ITK threads started can deadlock
    pool = ProcessPoolExecutor(
        n, mp_context=ctx, initializer=_init_worker, initargs=(max(1, (os.cpu_count() or 1) // n),)
    )
    try:
        pending = {pool.submit(_job, *a) for a in args}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                collect(*fut.result())
    except KeyboardInterrupt:  # stop the workers now: their outputs are atomic, so nothing half-written stays
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        raise
    finally:  # after a failure that stops the run: queued volumes never start, running ones end alone
        pool.shutdown(wait=False, cancel_futures=True)


def preprocess_manifest(
    manifest_path: str | Path,
    out_dir: str | Path,
    voxel_mm: int = 1,
    workers: int = 2,
    skull_strip: bool = False,
    keep_going: bool = False,
    settings: Settings = Settings(),
) -> tuple[Path, pd.DataFrame]:
    """Preprocess every row of a manifest in parallel; return (new manifest path, QC table).

    Under ``out_dir``: ``volumes/<subject>_<session>_<domain>.nii.gz``, ``qc/<same>.png`` and
    ``.json``, ``qc.csv`` (a row per input; ``status`` ok / skipped / failed, ``error``) and
    ``manifest.csv`` (same rows and columns, ``path`` to the preprocessed volumes; failed rows
    left out). Complete outputs are skipped. Without ``keep_going`` the first failure raises its
    one-line :class:`DataError`; with it the others go on and failures are printed at the end.
    Workers are spawned processes: from a script, call this under ``if __name__ == "__main__":``.
    """
    from tqdm.auto import tqdm

    if skull_strip:
        _require_deepbet()  # fail before any work
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():  # before any volume is processed
        raise DataError(f"{out_dir}: --out-dir is a file, not a folder; choose a folder")
    man = read_manifest(manifest_path, check_files=False)  # a missing file is that row's failure
    qc_dir = out_dir / "qc"
    dsts = [out_dir / "volumes" / f"{k}.nii.gz" for k in _output_keys(man.df)]
    _refuse_overwriting_inputs(Path(manifest_path), [man.path(i) for i in range(len(man))], out_dir, dsts)
    records = {
        i: r
        for i, d in enumerate(dsts)
        if (r := _cached(man.path(i), d, qc_dir, voxel_mm, skull_strip, settings)) is not None
    }
    errors: dict[int, str] = {}
    args = [
        (i, str(man.path(i)), str(d), str(qc_dir), voxel_mm, skull_strip, settings)
        for i, d in enumerate(dsts)
        if i not in records
    ]
    with tqdm(total=len(dsts), initial=len(records), desc="preprocess", unit="vol") as bar:

        def collect(i: int, rec: dict | None, err: str | None) -> None:
            """Keep a result; a failure stops the run unless ``keep_going``."""
            bar.update(1)
            if err is None:
                records[i] = {**rec, "status": "ok"}
                return
            errors[i] = err
            if not keep_going:
                raise DataError(err)

        _run_jobs(args, workers, collect)

    rows = []
    for i in range(len(dsts)):
        rec = records.get(i) or {"input": str(man.path(i)), "output": "", "status": "failed", "error": errors[i]}
        rec = {k: json.dumps(v) if isinstance(v, list) else v for k, v in rec.items()}
        rows.append({"row": i + 2, **man.df.loc[i, ["subject", "session", "domain"]].to_dict(), "error": "", **rec})
    qc = pd.DataFrame(rows)
    write_text_atomic(out_dir / "qc.csv", qc.to_csv(index=False))
    if errors:
        print(f"preprocess: {len(errors)} of {len(dsts)} volume(s) failed (also in {out_dir / 'qc.csv'}):")
        print("\n".join(f"  row {i + 2}: {e}" for i, e in sorted(errors.items())))
    if not records:
        raise DataError(f"{manifest_path}: no volume could be preprocessed; see {out_dir / 'qc.csv'}")
    ok = sorted(records)
    df = man.df.loc[ok].copy()
    df["path"] = [str(dsts[i].relative_to(out_dir)) for i in ok]
    df["truth_path"] = [_rebase(t, man.root, out_dir) for t in df["truth_path"]]
    write_manifest(df.reset_index(drop=True), out_dir / "manifest.csv")
    return out_dir / "manifest.csv", qc


def _refuse_overwriting_inputs(manifest_path: Path, inputs: list[Path], out_dir: Path, dsts: list[Path]) -> None:
    """Never modify an input: no output (manifest, qc.csv, a volume) may be the input manifest or an input volume."""
    ins = [Path(p) for p in [manifest_path, *inputs]]
    resolved = {p.resolve() for p in ins}  # links followed: `ln -s raw out` makes out/manifest.csv the input
    for out in [out_dir / "manifest.csv", out_dir / "qc.csv", *dsts]:
        if out.resolve() in resolved or any(same_file(out, p) for p in ins if out.exists()):
            raise DataError(
                f"{out}: the output would overwrite an input; choose another --out-dir (outputs: volumes/, qc/, qc.csv, manifest.csv)"
            )


def _rebase(path: str, old_root: Path, new_root: Path) -> str:
    """A manifest path relative to ``old_root`` expressed relative to ``new_root`` (absolute kept)."""
    if not path or Path(path).is_absolute():
        return path
    return os.path.relpath(os.path.abspath(old_root / path), os.path.abspath(new_root))
