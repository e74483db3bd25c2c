"""Downstream tasks of paper 1 (Tables 3-4): brain-age regression and AD-vs-HC classification with a
3D ResNet, k-fold cross-validation, trained separately on the unharmonized cohort and on each harmonized
version of it.

Paper 1 (Sec. 4): "3D convolutional architectures based on the ResNet family ... trained separately on
non-harmonized and harmonized data ... 5-fold cross-validation, reporting the mean and standard deviation"
of MAE, RMSE, R^2 (age, ABIDE I) and accuracy, balanced accuracy, AUC (AD vs HC, ADNI 3-4). Unstated
details, chosen here: MONAI's ``ResNet`` with basic blocks (depth 10/18/34) whose widths, stem stride and
max-pool come from ``EvaluationConfig`` (narrow on CPU), Adam, MSE on the z-scored age / BCE on the AD
logit, no augmentation. Every version sees the *same folds and the same initial weights* (seeded by
fold), so differences between versions come from the images, not from the split or the draw.

Intensities: each version is divided by one scale, the 99.5th percentile of its training fold's brain
voxels, and *not* normalized per image: a per-image rescaling would itself remove the global scanner
scale that harmonization is meant to remove, and the unharmonized baseline would no longer be one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from monai.networks.nets import ResNet
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from torch import nn
from tqdm.auto import tqdm

from harmlib.config import EvaluationConfig
from harmlib.data.io import DataError, load_volume
from harmlib.data.manifest import Manifest
from harmlib.data.mni import block_average
from harmlib.evaluation.combat import PerFold
from harmlib.evaluation.metrics import brain_mask

TASKS = {"age": ("mae", "rmse", "r2"), "ad": ("accuracy", "balanced_accuracy", "auc")}
_LAYERS = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
_SCALE_PERCENTILE = 99.5  # as harmlib.data.datasets.Normalizer: robust to a few bright voxels


# --------------------------------------------------------------------------- data
def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown downstream task '{task}'; use one of {', '.join(TASKS)}")


def grid_factor(data_voxel_mm: int, eval_voxel_mm: int) -> int:
    """Block-averaging factor from the data's grid to the downstream grid (e.g. 2 mm -> 8 mm: 4)."""
    if eval_voxel_mm % data_voxel_mm:
        raise ValueError(
            f"evaluation.voxel_mm={eval_voxel_mm} is not a multiple of data.voxel_mm={data_voxel_mm}; choose a multiple (e.g. {2 * data_voxel_mm})"
        )
    return eval_voxel_mm // data_voxel_mm


def load_cohort(manifest: Manifest, role: str, factor: int = 1) -> tuple[np.ndarray, pd.DataFrame]:
    """Volumes (N, X, Y, Z) float32 of one manifest role (``age`` or ``ad``), block-averaged by ``factor``."""
    sel = manifest.select(role=role)
    if not len(sel):
        raise DataError(
            f"no volumes with role '{role}' in the manifest; the downstream tasks need the 'age' and 'ad' cohorts (harmlib synth writes them)"
        )
    vols = [np.asarray(load_volume(p).dataobj, dtype=np.float32) for p in sel.paths()]
    return downsample(vols, factor), sel.df


def downsample(volumes: Sequence[np.ndarray], factor: int) -> np.ndarray:
    """Stack volumes after exact ``factor``^3 block averaging (e.g. 2 mm -> 4 mm for ``factor`` 2)."""
    if factor < 1:
        raise ValueError(f"downsample: factor={factor} is invalid; use 1 (none) or more")
    return np.stack([block_average(v, factor) if factor > 1 else np.asarray(v, np.float32) for v in volumes])


def targets(df: pd.DataFrame, task: str) -> np.ndarray:
    """Age in years (task ``age``) or 1 for AD, 0 for HC (task ``ad``), one per manifest row."""
    _check_task(task)
    if task == "age":
        y = pd.to_numeric(df["age"], errors="coerce").to_numpy(dtype=float)
        if np.isnan(y).any():
            raise DataError(
                f"{int(np.isnan(y).sum())} row(s) of the age cohort have no age; fill the manifest's 'age' column or drop them"
            )
        return y
    bad = sorted(set(df["diagnosis"]) - {"AD", "HC"})
    if bad:
        raise DataError(f"AD-vs-HC cohort has diagnosis {bad[0]!r}; keep only AD and HC rows for this task")
    return (df["diagnosis"].to_numpy() == "AD").astype(float)


def cv_splits(y: np.ndarray, task: str, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled k-fold (train, test) indices, stratified by diagnosis for ``ad``; one split for all versions."""
    _check_task(task)
    if len(y) < folds:
        raise ValueError(
            f"cv_splits: {len(y)} subjects for {folds} folds; use fewer folds (evaluation.folds) or a larger cohort"
        )
    if task == "ad":
        if np.bincount(y.astype(int), minlength=2).min() < folds:
            raise ValueError(
                f"cv_splits: fewer AD or HC subjects than {folds} folds; use fewer folds or a larger cohort"
            )
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y.astype(int)))
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y))))


def intensity_scale(volumes: np.ndarray) -> float:
    """One scale for a set of volumes: the 99.5th percentile of their pooled brain voxels."""
    return float(np.percentile(np.concatenate([v[brain_mask(v)] for v in volumes]), _SCALE_PERCENTILE))


# --------------------------------------------------------------------------- model
def make_resnet(cfg: EvaluationConfig) -> nn.Module:
    """MONAI 3D ResNet (basic blocks) with one output: the age (z-scored) or the AD logit."""
    w = cfg.width
    return ResNet(
        "basic",
        _LAYERS[cfg.depth],
        [w, 2 * w, 4 * w, 8 * w],
        spatial_dims=3,
        n_input_channels=1,
        conv1_t_stride=cfg.stem_stride,
        no_max_pool=not cfg.max_pool,
        num_classes=1,
    )


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])[:, 0].numpy()


def train_model(x: torch.Tensor, y: np.ndarray, task: str, cfg: EvaluationConfig, seed: int) -> nn.Module:
    """Train one ResNet on (N, 1, X, Y, Z) inputs; ``y`` is z-scored age or 0/1 AD labels.

    Stabilizers for tiny cohorts and batches (without them single folds diverged on the cpu profile):
    a cosine learning-rate decay to 0, only full batches (batch norm on 1-2 samples is noise), and a
    final pass that re-estimates batch-norm statistics over the whole training set ("precise BN"),
    so evaluation does not use running averages taken while the weights still moved.
    """
    torch.manual_seed(seed)  # same initial weights for every version of one fold
    model = make_resnet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = min(cfg.batch_size, len(x))
    steps = cfg.epochs * (len(x) // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    loss_fn = nn.MSELoss() if task == "age" else nn.BCEWithLogitsLoss()
    yt = torch.as_tensor(y, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - bs + 1, bs):  # full batches only; the shuffle uses every sample over epochs
            idx = order[start : start + bs]
            loss = loss_fn(model(x[idx])[:, 0], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    _precise_batchnorm(model, x, bs)
    return model


def _precise_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace batch-norm running statistics by their average over the training set at the final weights."""
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            model(x[start : start + batch_size])


def fold_metrics(task: str, y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R^2 (age, years) or accuracy, balanced accuracy, AUC (AD; ``pred`` are logits)."""
    if task == "age":
        return {
            "mae": mean_absolute_error(y_true, pred),
            "rmse": float(np.sqrt(mean_squared_error(y_true, pred))),
            "r2": r2_score(y_true, pred),
        }
    label = (pred > 0).astype(int)  # logit 0 = probability 0.5
    auc = roc_auc_score(y_true, pred) if len(np.unique(y_true)) == 2 else float("nan")
    return {
        "accuracy": accuracy_score(y_true, label),
        "balanced_accuracy": balanced_accuracy_score(y_true, label),
        "auc": auc,
    }


def run_fold(
    volumes: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, task: str, cfg: EvaluationConfig, seed: int
) -> dict[str, float]:
    """Train on ``train``, evaluate on ``test``; the scale and the age z-scoring come from ``train`` only."""
    scale = intensity_scale(volumes[train])
    x = torch.from_numpy(np.ascontiguousarray(volumes, dtype=np.float32) / scale)[:, None]
    mu, sd = (y[train].mean(), y[train].std() or 1.0) if task == "age" else (0.0, 1.0)
    model = train_model(x[train], (y[train] - mu) / sd, task, cfg, seed)
    pred = _predict(model, x[test], cfg.batch_size) * sd + mu
    return fold_metrics(task, y[test], pred)


def cross_validate(
    versions: Mapping[str, np.ndarray | PerFold],
    y: np.ndarray,
    task: str,
    cfg: EvaluationConfig,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """k-fold CV of the 3D ResNet on every version of one cohort (same folds, same initializations).

    ``versions``: {"unharmonized": (N, X, Y, Z), "A": ..., "ComBat": PerFold(...)}, each in the same subject order
    as ``y`` (`targets`); a `~harmlib.evaluation.combat.PerFold` version is harmonized inside each fold, fitted on
    its training fold only. ``groups`` (N,): each subject's site, for folds that hold whole sites out (the test sites
    unseen by anything fitted on the training fold); None: shuffled k-fold. Returns one row per (version, fold): the
    task's metrics, train/test sizes and the seconds the fold took. `harmlib.evaluation.tables.fold_summary` turns it
    into Table 3 or 4.
    """
    _check_task(task)
    y = np.asarray(y, dtype=float)
    for name, v in versions.items():
        arr = v.volumes if isinstance(v, PerFold) else v
        if len(arr) != len(y) or np.asarray(arr).ndim != 4:
            raise ValueError(
                f"cross_validate: version '{name}' has shape {np.shape(arr)} for {len(y)} targets; pass (N, X, Y, Z) volumes, one per subject"
            )
    splits = site_splits(groups, cfg.folds) if groups is not None else cv_splits(y, task, cfg.folds, seed)
    rows = []
    with tqdm(total=len(versions) * len(splits), desc=f"{task} CV", unit="fold") as bar:
        for name, version in versions.items():
            for k, (train, test) in enumerate(splits):
                t0 = time.perf_counter()
                vols = version.fold(train, test) if isinstance(version, PerFold) else np.asarray(version, np.float32)
                metrics = run_fold(vols, y, train, test, task, cfg, seed * 1000 + k)
                rows.append(
                    {
                        "version": name,
                        "fold": k,
                        "n_train": len(train),
                        "n_test": len(test),
                        **metrics,
                        "seconds": time.perf_counter() - t0,
                    }
                )
                bar.update()
    return pd.DataFrame(rows)


def site_splits(groups: Sequence[str], folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds that hold whole sites out: every test subject's site is absent from its training fold."""
    groups = np.asarray(groups, dtype=str)
    n = min(folds, len(np.unique(groups)))
    if n < 2:
        raise ValueError("site_splits: the cohort has one site; folds that hold sites out need at least two")
    return list(GroupKFold(n).split(np.zeros(len(groups)), groups=groups))
