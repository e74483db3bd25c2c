"""ComBat beside the image harmonizers: fitted inside each fold on the training fold only, applied to the test fold
without its covariates, refusing a site it was not fitted on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harmlib.evaluation import combat
from harmlib.evaluation.combat import PerFold


def _cohort(seed: int = 0, size: int = 6):
    """40 volumes (size^3) from 4 sites, each site adding its own offset and scale to a shared anatomy, with an age
    effect on every voxel."""
    rng = np.random.default_rng(seed)
    sites = np.repeat(["s1", "s2", "s3", "s4"], 10)
    age = rng.uniform(20, 80, len(sites))
    base = 10 + rng.normal(size=(size,) * 3)
    offset = {"s1": 0.0, "s2": 3.0, "s3": -2.0, "s4": 1.0}
    scale = {"s1": 1.0, "s2": 1.5, "s3": 0.7, "s4": 1.2}
    vols = np.stack(
        [(base + 0.02 * a + rng.normal(0, 0.3, base.shape)) * scale[s] + offset[s] for s, a in zip(sites, age)]
    ).astype(np.float32)
    return vols, sites, pd.DataFrame({"age": age})


def _site_spread(vols: np.ndarray, sites: np.ndarray) -> float:
    means = [vols[sites == s].mean() for s in np.unique(sites)]
    return float(np.std(means))


def test_combat_fitted_on_the_training_fold_removes_the_site_effect_in_the_test_fold():
    vols, sites, cov = _cohort()
    train, test = np.arange(40) % 5 != 0, np.arange(40) % 5 == 0
    out = PerFold(vols, sites, cov, continuous=("age",)).fold(np.flatnonzero(train), np.flatnonzero(test))
    assert _site_spread(out[test], sites[test]) < 0.2 * _site_spread(vols[test], sites[test])
    age_r = [np.corrcoef(cov.age[test], v[test].mean((1, 2, 3)))[0, 1] for v in (vols, out)]
    assert age_r[1] > 0.8  # the protected age effect is kept in the test fold (it was hidden by the sites before)


def test_the_fit_never_sees_the_test_fold_and_the_test_labels_change_nothing():
    vols, sites, cov = _cohort()
    train, test = np.flatnonzero(np.arange(40) % 4 != 1), np.flatnonzero(np.arange(40) % 4 == 1)
    seen = {}

    def spy(features, s, covariates, continuous, categorical):
        seen["features"], seen["covariates"] = features, covariates
        return combat.fit(features, s, covariates, continuous, categorical)

    version = PerFold(vols, sites, cov, continuous=("age",), fitter=spy)
    out = version.fold(train, test)
    assert len(seen["features"]) == len(train) and list(seen["covariates"].index) == list(train)
    flat = vols.reshape(40, -1)
    for i in test:  # no test volume is among the rows the fit was given
        assert not any(
            np.array_equal(row, flat[i][combat.voxels(vols[train], sites[train])]) for row in seen["features"]
        )
    shuffled = cov.copy()
    shuffled.loc[test, "age"] = 99.0  # the test subjects' label (their age) does not enter their harmonization
    again = PerFold(vols, sites, shuffled, continuous=("age",)).fold(train, test)
    assert np.array_equal(out[test], again[test])


def test_combat_refuses_a_site_it_was_not_fitted_on():
    vols, sites, cov = _cohort()
    train, test = np.flatnonzero(sites != "s4"), np.flatnonzero(sites == "s4")
    with pytest.raises(ValueError, match=r"not fitted on site\(s\) \['s4'\]"):
        PerFold(vols, sites, cov, continuous=("age",)).fold(train, test)


def test_cross_validation_harmonizes_a_per_fold_version_inside_each_fold():
    from harmlib import load_config
    from harmlib.evaluation.downstream import cross_validate

    vols, sites, cov = _cohort(size=16)  # the ResNet needs more than a few voxels a side
    cfg = load_config("tiny", {"evaluation.folds": 2, "evaluation.epochs": 1}).evaluation
    calls = []

    def counting(features, *args):
        calls.append(len(features))
        return combat.fit(features, *args)

    versions = {"raw": vols, "ComBat": PerFold(vols, sites, cov, continuous=("age",), fitter=counting)}
    cv = cross_validate(versions, cov.age.to_numpy(), "age", cfg, seed=0)
    assert calls == [20, 20] and set(cv.version) == {"raw", "ComBat"} and np.isfinite(cv.mae).all()


def test_combat_says_when_a_cohort_is_too_small_for_it():
    assert combat.not_applicable(np.repeat(["a", "b", "c"], 8), 5) is None
    assert "site c has 2" in combat.not_applicable(np.array(["a"] * 8 + ["b"] * 8 + ["c"] * 2), 5)
    assert "two sites" in combat.not_applicable(np.array(["a"] * 10), 5)


def test_what_reproduced_shows_combat_beside_every_version_of_both_tables(tmp_path):
    """Tables 3-4 side by side for the What-reproduced page: one row per version, ComBat and harmonizer + ComBat
    among them, and which version the paper compared with."""
    import pandas as pd

    from harmlib.evaluation.claims import downstream_beside_combat

    assert downstream_beside_combat(tmp_path) is None
    versions = ["unharmonized", "A", "nyul", "ComBat", "harmonizer 1 (agnostic) + ComBat"]
    for table, metrics in (("paper1_table3", ("mae", "rmse", "r2")), ("paper1_table4", ("auc", "balanced_accuracy"))):
        rows = [{"metric": m, "version": v, "ours": f"{k}.0 ± 0.1"} for m in metrics for k, v in enumerate(versions)]
        pd.DataFrame(rows).to_csv(tmp_path / f"{table}.csv", index=False)
    out = downstream_beside_combat(tmp_path)
    assert list(out["version"]) == [
        "unharmonized",
        "harmonizer 1 -> A",
        "nyul",
        "ComBat",
        "harmonizer 1 (agnostic) + ComBat",
    ]
    assert list(out.columns[1:]) == [
        "brain age MAE (years)",
        "brain age R2",
        "AD vs HC AUC",
        "AD vs HC balanced accuracy",
        "in the paper",
    ]
    assert out.loc[3, "AD vs HC AUC"] == "3.0 ± 0.1"
    assert list(out["in the paper"]) == [
        "the reference",
        "compared with unharmonized",
        "added here",
        "added here",
        "added here",
    ]
