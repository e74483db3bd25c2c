"""ComBat (Johnson et al. 2007; Fortin et al. 2017/2018) beside the image harmonizers, fitted inside each fold.

ComBat harmonizes *features*, not images: for each feature, a site's location and scale are estimated with empirical
Bayes across features, with the covariates to protect (age, diagnosis) modelled so that their effect is kept, and
each sample is moved to the pooled location and scale. Here the features are what the downstream networks read: the
voxels of the volumes on the downstream grid (8 mm on cpu), inside the brain of every training volume.

Fitted on the training fold only and applied to the test fold (`PerFold`): harmonizing before splitting would let
the test subjects shape the correction their own predictions are scored on. The application uses only the fitted
estimates and each test subject's site, never its covariates, so a protected covariate that is the label (the
diagnosis in the AD task, the age in the age task) cannot leak into the test fold. ComBat cannot harmonize a site it
was not fitted on (a test site unseen by the fit): `apply` refuses it, where the image harmonizers need nothing.

The fit is neuroCombat 0.2.12 (Fortin's reference implementation; it installs with numpy 2). Its own apply step,
``neuroCombatFromTraining``, fails under numpy >= 2.3 (``int()`` of a one-element array), so `apply` computes the same
thing from the same estimates: (x - mean) / sqrt(var_pooled), minus gamma*, over sqrt(delta*), scaled back.
neuroHarmonize (pins numpy < 2 and pandas < 3) and combatlearn (pulls umap-learn, plotly) were the alternatives.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def fit(
    features: np.ndarray,
    sites: Sequence[str],
    covariates: pd.DataFrame | None = None,
    continuous: Sequence[str] = (),
    categorical: Sequence[str] = (),
) -> dict:
    """ComBat's estimates from ``features`` (N samples, P features) of ``sites`` (N,), protecting the named
    ``continuous`` and ``categorical`` columns of ``covariates`` (N rows)."""
    from neuroCombat import neuroCombat

    sites = np.asarray(sites, dtype=str)
    if len(np.unique(sites)) < 2:
        raise ValueError("ComBat needs at least two sites in its fit")
    cov = pd.DataFrame({"site": sites}) if covariates is None else covariates.reset_index(drop=True).assign(site=sites)
    with contextlib.redirect_stdout(io.StringIO()):  # neuroCombat prints its progress
        out = neuroCombat(
            np.asarray(features, dtype=float).T,
            cov,
            "site",
            categorical_cols=list(categorical) or None,
            continuous_cols=list(continuous) or None,
        )
    return out["estimates"]


def apply(features: np.ndarray, sites: Sequence[str], estimates: dict) -> np.ndarray:
    """``features`` (N, P) of sites that were in the fit, harmonized with its ``estimates`` (covariates unused)."""
    sites = np.asarray(sites, dtype=str)
    known = np.asarray(estimates["batches"], dtype=str)
    unseen = sorted(map(str, set(sites) - set(known)))
    if unseen:
        raise ValueError(f"ComBat was not fitted on site(s) {unseen}: it cannot harmonize a site it has not seen")
    which = np.array([int(np.flatnonzero(known == s)[0]) for s in sites])
    var = np.asarray(estimates["var.pooled"], dtype=float)  # (P, 1)
    mean = np.asarray(estimates["stand.mean"], dtype=float)[:, :1] + np.asarray(estimates["mod.mean"]).mean(
        1, keepdims=True
    )
    z = (np.asarray(features, dtype=float).T - mean) / np.sqrt(var)
    gamma = np.asarray(estimates["gamma.star"], dtype=float)[which].T
    delta = np.asarray(estimates["delta.star"], dtype=float)[which].T
    return ((z - gamma) / np.sqrt(delta) * np.sqrt(var) + mean).T.astype(np.float32)


def voxels(volumes: np.ndarray, sites: Sequence[str]) -> np.ndarray:
    """The voxels ComBat can model: inside the brain of every volume, with some variance at every site."""
    vols = np.asarray(volumes, dtype=np.float32).reshape(len(volumes), -1)
    inside = (vols > 0).all(0)
    sites = np.asarray(sites, dtype=str)
    for s in np.unique(sites):
        inside &= vols[sites == s].std(0) > 1e-6
    return inside


def not_applicable(sites: Sequence[str], folds: int) -> str | None:
    """Why ComBat cannot run inside ``folds``-fold cross-validation of a cohort with these ``sites`` (None: it can):
    each site needs at least two subjects in every training fold to have a variance, so 2 * folds / (folds - 1)
    subjects per site, rounded up, and two sites."""
    counts = pd.Series(np.asarray(sites, dtype=str)).value_counts()
    need = -(-2 * folds // max(folds - 1, 1)) + 1  # margin for uneven (stratified) folds
    if len(counts) < 2:
        return "ComBat needs at least two sites"
    if counts.min() < need:
        return f"ComBat needs {need} subjects per site for {folds}-fold cross-validation; site {counts.idxmin()} has {counts.min()}"
    return None


@dataclass(frozen=True)
class PerFold:
    """A downstream version harmonized by ComBat inside each fold (`harmlib.evaluation.downstream.cross_validate`):
    fitted on the training fold's volumes only, applied to the training and test folds; voxels outside the training
    fold's brain are left as they are.

    ``volumes`` (N, X, Y, Z): the version it starts from (unharmonized, or an image harmonizer's output); ``sites``
    (N,); ``covariates`` (N rows) and the ``continuous`` / ``categorical`` columns ComBat keeps.
    """

    volumes: np.ndarray
    sites: Sequence[str]
    covariates: pd.DataFrame | None = None
    continuous: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    fitter: Callable = field(default=fit, repr=False)  # the fit (a test replaces it to see what it is given)

    def __len__(self) -> int:
        return len(self.volumes)

    def fold(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        """All N volumes with the training and test folds harmonized by a fit on the training fold alone."""
        vols = np.asarray(self.volumes, dtype=np.float32)
        sites = np.asarray(self.sites, dtype=str)
        mask = voxels(vols[train], sites[train])
        flat = vols.reshape(len(vols), -1).copy()
        cov = None if self.covariates is None else self.covariates.iloc[train]
        est = self.fitter(flat[train][:, mask], sites[train], cov, self.continuous, self.categorical)
        for part in (train, test):
            flat[np.ix_(part, np.flatnonzero(mask))] = apply(flat[part][:, mask], sites[part], est)
        return flat.reshape(vols.shape)
