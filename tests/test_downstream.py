"""Downstream CV of paper 1's Tables 3-4 on a tiny synthetic cohort, and its metrics on known values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import harmlib
from harmlib.data import Appearance, DataError, apply_appearance, domain_name, mni_t1, save_volume, write_manifest
from harmlib.evaluation.baselines import make_baseline
from harmlib.evaluation.downstream import (
    cross_validate,
    cv_splits,
    downsample,
    fold_metrics,
    grid_factor,
    load_cohort,
    targets,
)
from harmlib.evaluation.tables import claim_table, fold_stats, paper1_values


def _write_cohort(out, n_per_role: int = 8):
    """An age and an AD/HC cohort on two "scanners": the MNI template, aged by a global intensity loss."""
    x, affine = mni_t1(4)
    rows = []
    for role in ("age", "ad"):
        for k in range(n_per_role):
            scanner, site = ("Alpha", "S1") if k % 2 else ("Beta", "S2")
            look = Appearance(gamma=1.0 + 0.3 * (k % 2), scale=0.8 + 0.4 * (k % 2), noise=0.02)
            age, dx = 20.0 + 8 * k, "AD" if k % 4 < 2 else "HC"
            vol = apply_appearance(x * (1 - 0.004 * age - 0.1 * (dx == "AD")), look, voxel_mm=4, seed=k)
            path = f"{role}/sub-{k}.nii.gz"
            save_volume(out / path, vol, affine)
            rows.append(
                {
                    "path": path,
                    "subject": f"sub-{role}{k}",
                    "session": "1",
                    "dataset": "synthetic",
                    "scanner": scanner,
                    "site": site,
                    "domain": domain_name(scanner, site),
                    "age": age,
                    "sex": "",
                    "diagnosis": dx,
                    "split": "test",
                    "role": role,
                    "truth_path": "",
                }
            )
    return write_manifest(pd.DataFrame(rows), out / "manifest.csv")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return harmlib.load_config("tiny"), _write_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.mark.parametrize("task", ["age", "ad"])
def test_cross_validation_returns_finite_per_fold_metrics(cohort, task):
    cfg, manifest = cohort
    factor = grid_factor(cfg.data.voxel_mm, cfg.evaluation.voxel_mm)
    raw, df = load_cohort(manifest, task, 1)
    zscore = make_baseline("zscore", list(raw))  # fitted on the cohort itself: enough for the interface
    versions = {"unharmonized": downsample(raw, factor), "zscore": downsample([zscore(v) for v in raw], factor)}
    y = targets(df, task)
    cv = cross_validate(versions, y, task, cfg.evaluation, seed=0)
    metrics = ["mae", "rmse", "r2"] if task == "age" else ["accuracy", "balanced_accuracy", "auc"]
    assert len(cv) == 2 * cfg.evaluation.folds and set(cv["version"]) == set(versions)
    assert np.isfinite(cv[metrics].to_numpy()).all() and (cv["seconds"] > 0).all()
    assert cv.groupby("fold")["n_test"].nunique().eq(1).all()  # the same folds for every version
    stats = fold_stats(cv)
    table = claim_table(stats, paper1_values("table3" if task == "age" else "table4"), "unharmonized", "tiny")
    assert len(table) == 2 * len(metrics) and table["paper"].iloc[0] != ""


def test_fold_metrics_known_values():
    y = np.array([10.0, 20.0, 30.0, 40.0])
    assert fold_metrics("age", y, y) == pytest.approx({"mae": 0.0, "rmse": 0.0, "r2": 1.0})
    assert fold_metrics("age", y, y + 2)["mae"] == pytest.approx(2.0)
    assert fold_metrics("age", y, np.array([10.0, 20.0, 30.0, 44.0]))["rmse"] == pytest.approx(2.0)
    lab = np.array([0.0, 0.0, 1.0, 1.0])
    assert fold_metrics("ad", lab, np.array([-2.0, -1.0, 1.0, 3.0])) == pytest.approx(
        {"accuracy": 1.0, "balanced_accuracy": 1.0, "auc": 1.0}
    )
    out = fold_metrics("ad", np.array([0.0, 0.0, 0.0, 1.0]), np.array([1.0, -1.0, -1.0, -0.5]))
    assert (
        out["accuracy"] == pytest.approx(0.5)
        and out["balanced_accuracy"] == pytest.approx(1 / 3)
        and out["auc"] == pytest.approx(2 / 3)
    )


def test_cv_splits_stratify_and_check_sizes():
    y = np.array([0, 1] * 5, dtype=float)
    for train, test in cv_splits(y, "ad", 5, seed=0):
        assert set(y[test]) == {0.0, 1.0} and len(np.intersect1d(train, test)) == 0
    assert cv_splits(y, "ad", 5, seed=0)[0][1].tolist() == cv_splits(y, "ad", 5, seed=0)[0][1].tolist()
    with pytest.raises(ValueError, match="use fewer folds"):
        cv_splits(np.arange(3.0), "age", 5)
    with pytest.raises(ValueError, match="unknown downstream task"):
        cv_splits(y, "sex", 2)


def test_targets_and_grid_errors():
    df = pd.DataFrame({"age": [30.0, np.nan], "diagnosis": ["AD", "MCI"]})
    with pytest.raises(DataError, match="have no age"):
        targets(df, "age")
    with pytest.raises(DataError, match="keep only AD and HC"):
        targets(df, "ad")
    assert grid_factor(2, 8) == 4
    with pytest.raises(ValueError, match="not a multiple"):
        grid_factor(4, 2)
