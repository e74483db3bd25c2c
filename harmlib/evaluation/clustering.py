"""Clustering quality of the GM-VAE's attribute space (thesis E1): ACC, NMI, ARI and a 2D PCA.

ACC is the accuracy of the best one-to-one matching of clusters to scanners (the Hungarian
algorithm on the contingency table); NMI and ARI come from scikit-learn and need no matching.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def contingency(true: np.ndarray, pred: np.ndarray, k: int | None = None) -> np.ndarray:
    """counts[p, t]: how many items of true class t fell into cluster p (k x k, k = max label + 1)."""
    true, pred = np.asarray(true, dtype=int), np.asarray(pred, dtype=int)
    if true.shape != pred.shape or true.ndim != 1:
        raise ValueError(
            f"clustering: true {true.shape} and predicted {pred.shape} labels must be 1D and of one length"
        )
    k = k or int(max(true.max(), pred.max())) + 1
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (pred, true), 1)
    return counts


def match_clusters(true: np.ndarray, pred: np.ndarray, k: int | None = None) -> dict[int, int]:
    """The one-to-one cluster -> class map that maximizes the number of agreeing items (Hungarian)."""
    counts = contingency(true, pred, k)
    rows, cols = linear_sum_assignment(-counts)
    return {int(r): int(c) for r, c in zip(rows, cols)}


def cluster_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """ACC = max over one-to-one maps m of mean(m(pred) == true)."""
    counts = contingency(true, pred)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(np.asarray(true)))


def clustering_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """{"ACC", "NMI", "ARI"} of predicted clusters against the true scanners."""
    return {
        "ACC": cluster_accuracy(true, pred),
        "NMI": float(normalized_mutual_info_score(true, pred)),
        "ARI": float(adjusted_rand_score(true, pred)),
    }


def pca_2d(z: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The 2D PCA projection of attribute codes and the explained variance ratio of both axes."""
    pca = PCA(n_components=2, random_state=seed).fit(np.asarray(z, dtype=np.float64))
    return pca.transform(z), pca.explained_variance_ratio_


def intensity_histograms(images, bins: int = 64, floor: float = -0.8) -> np.ndarray:
    """(N, bins) histograms of each normalized image's values above ``floor`` (the background, -1, and the
    dark rim left out) over (floor, 1], each summing to 1: the scanner's contrast, not the brain's area."""
    feats = np.stack(
        [np.histogram(np.asarray(v)[np.asarray(v) > floor], bins=bins, range=(floor, 1.0))[0] for v in images]
    ).astype(np.float64)
    return feats / np.maximum(feats.sum(1, keepdims=True), 1.0)


def histogram_kmeans(
    slices: np.ndarray, labels, k: int, bins: int = 64, seed: int = 0, floor: float = -0.8
) -> dict[str, float]:
    """E1's sanity baseline: k-means (``k`` clusters, ``seed``) on the intensity histograms of the slices.

    ``slices``: (N, ...) images in the datasets' range [-1, 1] (e.g. (N, 1, H, W)); ``labels``: the N true
    scanners (names or indices). Each slice's histogram counts its pixels above ``floor`` (the background,
    -1 after normalization, and the dark rim are left out, as in the gate's histogram classifier) in
    ``bins`` bins over (floor, 1], normalized to sum 1, so it carries the scanner's contrast rather than
    the brain's area. Returns :func:`clustering_scores` ({"ACC", "NMI", "ARI"}) of the clusters.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(slices, dtype=np.float64).reshape(len(slices), -1)
    _, true = np.unique(np.asarray(labels), return_inverse=True)
    if len(true) != len(x):
        raise ValueError(f"histogram_kmeans: {len(x)} slices but {len(true)} labels; pass one label per slice")
    feats = intensity_histograms(x, bins, floor)
    pred = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(feats)
    return clustering_scores(true, pred)
