"""How well can a slice's intensities tell its scanner? The ceiling behind the GM-VAE's E1 gate.

    .venv/bin/python benchmarks/slice_scanner_ceiling.py --profile cpu

On the GM-VAE's own training slices (``gmvae.slices``) it prints the clustering scores of unsupervised
readers of the slices' brain-intensity histograms (k-means, a diagonal Gaussian mixture) and the accuracy of a
*supervised* logistic regression on the same histograms, cross-validated over whole volumes (no slice of a test
volume seen in training). An unsupervised mixture on whole slices (E1) can hardly beat the supervised reader.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import harmlib
from harmlib.data import read_manifest
from harmlib.evaluation.clustering import clustering_scores, intensity_histograms
from harmlib.gmvae.task import slice_dataset
from harmlib.models.blocks import pad_multiple


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    a = ap.parse_args()
    cfg = harmlib.load_config(a.profile)
    man = read_manifest(cfg.data_dir / "manifest.csv")
    sl = cfg.gmvae.slices
    data = slice_dataset(man, sl, man.domains("train"), pad_multiple(cfg.gmvae.n_down))
    x = np.stack([data[i]["image"][0].numpy() for i in range(len(data))]).reshape(len(data), -1)
    y = np.asarray(data.domain_indices)
    k = len(data.domains)
    h = intensity_histograms(x, 64, -0.8)
    for name, pred in (
        ("k-means", KMeans(k, n_init=10, random_state=cfg.seed).fit_predict(h)),
        (
            "Gaussian mixture (diagonal)",
            GaussianMixture(k, covariance_type="diag", random_state=cfg.seed).fit_predict(h),
        ),
    ):
        s = clustering_scores(y, pred)
        print(f"unsupervised {name} on 64-bin histograms: ACC {s['ACC']:.3f} NMI {s['NMI']:.3f}")
    groups = np.repeat(np.arange(len(x) // sl.n_slices), sl.n_slices)
    for c in (0.1, 1.0, 10.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        acc = cross_val_score(clf, h, y, cv=GroupKFold(5), groups=groups).mean()
        print(f"supervised logistic regression (C={c:g}), held-out volumes: slice accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
