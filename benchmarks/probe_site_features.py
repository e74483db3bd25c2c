"""What tells the training sites apart: per-volume features of the training scans, clustered by k-means (K = the
number of sites) and scored as E1 is (ACC, NMI, ARI against the true sites).

    .venv/bin/python benchmarks/probe_site_features.py [--profile cpu] [--seeds 3]

Features per volume (the brain: `metrics.brain_mask`, Otsu's cut): the stored scale (the brain's 99th percentile in
the file's units), the three tissue peaks of a 3-class Gaussian mixture over the scale, the fine-band texture (median
|x - its 3^3 box mean| inside the brain eroded by 2 voxels, over the scale) and the background noise (median outside
the brain dilated by 4 voxels, over the scale). It prints each site's mean and SD of every feature, then the k-means
scores of several feature sets: the question the GM-VAE's E1 asks, without a network.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage as ndi
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

import harmlib
from harmlib.data import load_volume, read_manifest
from harmlib.evaluation.clustering import clustering_scores
from harmlib.evaluation.metrics import brain_mask

NAMES = ["scale", "CSF peak", "GM peak", "WM peak", "fine band", "background"]
SETS = {  # feature sets scored, by column of NAMES
    "all six": [0, 1, 2, 3, 4, 5],
    "scale-free (all but the scale)": [1, 2, 3, 4, 5],
    "scale, GM peak, fine band": [0, 2, 4],
    "GM peak, fine band": [2, 4],
}


def features(v: np.ndarray) -> list[float]:
    m = brain_mask(v)
    scale = float(np.percentile(v[m], 99))
    peaks = np.sort(GaussianMixture(3, random_state=0).fit(v[m][::7, None] / scale).means_.ravel())
    fine = np.abs(v - ndi.uniform_filter(v, 3))[ndi.binary_erosion(m, iterations=2)]
    background = v[~ndi.binary_dilation(m, iterations=4)]
    return [scale, *peaks.tolist(), float(np.median(fine)) / scale, float(np.median(background)) / scale]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seeds", type=int, default=3, help="k-means seeds")
    args = ap.parse_args()
    cfg = harmlib.load_config(args.profile)
    train = read_manifest(cfg.data_dir / "manifest.csv").select("train")
    x = np.array([features(load_volume(p).get_fdata(dtype=np.float32)) for p in tqdm(train.paths(), unit="volume")])
    domains = sorted(train.df["domain"].unique())
    y = np.array([domains.index(d) for d in train.df["domain"]])
    print("site", *NAMES, sep=" | ")
    for k, d in enumerate(domains):
        s = x[y == k]
        print(d, *(f"{a:.3f} +- {b:.3f}" for a, b in zip(s.mean(0), s.std(0))), sep=" | ")
    for name, cols in SETS.items():
        z = StandardScaler().fit_transform(x[:, cols])
        for seed in range(args.seeds):
            pred = KMeans(len(domains), n_init=10, random_state=seed).fit_predict(z)
            scores = clustering_scores(y, pred)
            print(f"{name}, k-means seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
