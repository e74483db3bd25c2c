"""Appearance consistency across scanner-sites: intensity distributions, Wasserstein distances and
SSIM terms over random image pairs.

Paper 1 (Sec. 4, Table 2, Fig. 4-5): the *mean voxel intensity* of each test image (`mean_brain_intensity`)
gives one distribution per scanner-site; the 1-D Wasserstein distance between every pair of site
distributions, before and after harmonization, is reported as mean +/- SD over the site pairs and as a
heatmap. Luminance SSIM between pairs of images is the second consistency measure; structural SSIM between
100 random pairs of *different* subjects is the reference for anatomical preservation (0.68 +/- 0.05).
Paper 2 (E3, E4, E7): luminance SSIM on M = 5000 random (real target, translated) pairs and its
within-scanner real-vs-real baseline, cross-scanner luminance SSIM before and after, and pooled voxel
intensity distributions per scanner.

Luminance only needs each volume's local (Gaussian-window) mean, so `pair_luminance` filters every volume
once and evaluates thousands of pairs from those maps; the other terms need the pair's covariance and go
through `harmlib.evaluation.metrics.ssim_terms` (fine for the ~100 pairs they are used on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance

from harmlib.evaluation.metrics import brain_mask, map_mask, mean_brain_intensity, ssim_terms
from harmlib.ssim import gaussian_window


# --------------------------------------------------------------------------- distributions per site
def site_mean_intensities(volumes: Sequence[np.ndarray], domains: Sequence[str]) -> pd.DataFrame:
    """One row per image: its domain and mean brain intensity (paper 1's "mean voxel intensity")."""
    if len(volumes) != len(domains):
        raise ValueError(
            f"site_mean_intensities: {len(volumes)} volumes but {len(domains)} domains; pass one domain per volume"
        )
    return pd.DataFrame({"domain": list(domains), "mean_intensity": [mean_brain_intensity(v) for v in volumes]})


def samples_by_domain(df: pd.DataFrame, value: str = "mean_intensity") -> dict[str, np.ndarray]:
    """``{domain: values}`` from a frame of `site_mean_intensities` (sorted by domain)."""
    return {d: g[value].to_numpy(dtype=float) for d, g in df.groupby("domain", sort=True)}


def voxel_intensity_histograms(
    volumes: Sequence[np.ndarray],
    domains: Sequence[str],
    bins: int = 100,
    value_range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pooled brain-voxel intensity densities per domain (paper 2, E7; paper 1, Fig. 4): (bin edges, {domain: density}).

    Voxels are those of `brain_mask`; the range defaults to 0 .. the largest 99.9th percentile, so that one
    bright outlier does not squeeze every curve into a few bins.
    """
    if len(volumes) != len(domains):
        raise ValueError(
            f"voxel_intensity_histograms: {len(volumes)} volumes but {len(domains)} domains; pass one domain per volume"
        )
    brains = [np.asarray(v)[brain_mask(v)] for v in volumes]
    lo, hi = value_range or (0.0, float(max(np.percentile(b, 99.9) for b in brains)))
    edges = np.linspace(lo, hi, bins + 1)
    out: dict[str, np.ndarray] = {}
    for d in sorted(set(domains)):
        pooled = np.concatenate([b for b, dd in zip(brains, domains) if dd == d])
        out[d] = np.histogram(pooled, bins=edges, density=True)[0]
    return edges, out


# --------------------------------------------------------------------------- Wasserstein
def pairwise_wasserstein(
    samples: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray] | None = None,
    support: np.ndarray | None = None,
) -> pd.DataFrame:
    """Symmetric matrix of 1-D Wasserstein distances W1 between every two domains (paper 1, Fig. 5).

    ``samples``: values per domain (e.g. `samples_by_domain`). For histograms pass the bin centres as
    ``support`` and the densities as ``weights`` (then ``samples`` only names the domains).
    """
    names = list(samples)
    if len(names) < 2:
        raise ValueError(f"pairwise_wasserstein: {len(names)} domain(s) given; distances need at least two")
    mat = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            b = names[j]
            if weights is None:
                d = wasserstein_distance(samples[a], samples[b])
            else:
                d = wasserstein_distance(support, support, weights[a], weights[b])
            mat[i, j] = mat[j, i] = d
    return pd.DataFrame(mat, index=names, columns=names)


def off_diagonal(matrix: pd.DataFrame | np.ndarray) -> np.ndarray:
    """The distances of the distinct pairs (upper triangle without the diagonal) of a square matrix."""
    m = np.asarray(matrix, dtype=float)
    return m[np.triu_indices(m.shape[0], k=1)]


def mean_sd(values: np.ndarray) -> tuple[float, float]:
    """Mean and SD (ddof=0, as numpy) of values: the "a +/- b" of the papers' tables."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std())


# --------------------------------------------------------------------------- random pairs
def sample_pairs(
    n_a: int,
    n_b: int | None = None,
    n_pairs: int = 5000,
    seed: int = 0,
    groups_a: Sequence | None = None,
    groups_b: Sequence | None = None,
    relation: str = "any",
) -> np.ndarray:
    """Up to ``n_pairs`` distinct index pairs (i, j), seeded; shape (n, 2).

    One set (``n_b`` None): unordered pairs i < j of different images. Two sets: i in a, j in b (e.g.
    real target image, translated image; paper 2, E3). ``relation`` restricts pairs by their groups
    (domains, or subjects): ``"same"``, ``"different"`` or ``"any"``. When fewer distinct pairs exist than
    ``n_pairs`` (small cohorts), all of them are returned: the exact mean, not a noisy resample.
    """
    if relation not in ("any", "same", "different"):
        raise ValueError(f"sample_pairs: relation={relation!r} is invalid; use 'any', 'same' or 'different'")
    one_set = n_b is None
    i, j = np.meshgrid(np.arange(n_a), np.arange(n_a if one_set else n_b), indexing="ij")
    keep = (i < j) if one_set else np.ones_like(i, dtype=bool)
    if relation != "any":
        ga = np.asarray(groups_a if groups_a is not None else [])
        gb = ga if one_set else np.asarray(groups_b if groups_b is not None else [])
        if len(ga) != n_a or len(gb) != (n_a if one_set else n_b):
            raise ValueError(
                "sample_pairs: relation 'same'/'different' needs groups_a (and groups_b for two sets) with one entry per image"
            )
        same = ga[i] == gb[j]
        keep &= same if relation == "same" else ~same
    cand = np.stack([i[keep], j[keep]], 1)
    if len(cand) == 0:
        raise ValueError(
            f"sample_pairs: no pair satisfies relation={relation!r}; check the groups (e.g. one domain only)"
        )
    if len(cand) <= n_pairs:
        return cand
    rng = np.random.default_rng(seed)
    return cand[np.sort(rng.choice(len(cand), size=n_pairs, replace=False))]


def local_means(volumes: Sequence[np.ndarray], win_size: int = 11, sigma: float = 1.5) -> list[torch.Tensor]:
    """Each volume's Gaussian-window mean mu (the "valid" map of `harmlib.ssim`, float32)."""
    g = gaussian_window(win_size, sigma).float()
    out = []
    for v in volumes:
        x = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))[None, None]
        if min(x.shape[2:]) < win_size:
            raise ValueError(
                f"local_means: a volume of shape {tuple(v.shape)} is smaller than the SSIM window {win_size}; use a smaller win_size"
            )
        for axis in range(x.ndim - 2):  # separable: one 1-D convolution per spatial axis
            shape = [1, 1] + [1] * (x.ndim - 2)
            shape[2 + axis] = win_size
            x = F.conv3d(x, g.reshape(shape)) if x.ndim == 5 else F.conv2d(x, g.reshape(shape))
        out.append(x[0, 0])
    return out


def pair_luminance(
    vols_a: Sequence[np.ndarray],
    pairs: np.ndarray,
    vols_b: Sequence[np.ndarray] | None = None,
    data_range: float | None = None,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    brain_only: bool = False,
) -> np.ndarray:
    """Mean luminance SSIM l = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) of each pair (i in a, j in b).

    ``vols_b`` None: both indices into ``vols_a``. ``data_range`` (C1 = (k1 * range)^2) defaults per pair to
    the larger intensity range of the two volumes, as `ssim_terms` does, so values equal its "luminance".
    ``brain_only``: average over the union of the two `brain_mask`s. The papers' skull-stripped data have an
    exact-zero background, where l = 1 for every pair; the synthetic cohort's background is Rician noise
    (and harmonizers may zero it), so whole-volume means there would score the background, not the brain.
    """
    vols_b = vols_a if vols_b is None else vols_b
    mu_a = local_means(vols_a, win_size, sigma)
    mu_b = mu_a if vols_b is vols_a else local_means(vols_b, win_size, sigma)
    ptp_a = [float(np.ptp(v)) for v in vols_a]
    ptp_b = ptp_a if vols_b is vols_a else [float(np.ptp(v)) for v in vols_b]
    masks_a = [map_mask(brain_mask(v), win_size) for v in vols_a] if brain_only else None
    masks_b = (
        (masks_a if vols_b is vols_a else [map_mask(brain_mask(v), win_size) for v in vols_b]) if brain_only else None
    )
    out = np.empty(len(pairs))
    for k, (i, j) in enumerate(np.asarray(pairs, dtype=int)):
        if mu_a[i].shape != mu_b[j].shape:
            raise ValueError(
                f"pair_luminance: volumes {i} and {j} differ in shape; resample every volume to one grid first"
            )
        c1 = (k1 * (data_range or max(ptp_a[i], ptp_b[j]))) ** 2
        x, y = mu_a[i], mu_b[j]
        lum = (2 * x * y + c1) / (x * x + y * y + c1)
        out[k] = (lum[masks_a[i] | masks_b[j]] if brain_only else lum).mean().item()
    return out


def pair_ssim_terms(
    vols_a: Sequence[np.ndarray],
    pairs: np.ndarray,
    vols_b: Sequence[np.ndarray] | None = None,
    data_range: float | None = None,
    win_size: int = 11,
    brain_only: bool = False,
) -> pd.DataFrame:
    """SSIM and its luminance, contrast, structure terms for each pair (one row per pair, with i and j).

    Paper 1's structural SSIM between 100 random pairs of different subjects, and, with ``pairs`` the
    diagonal (i, i) of original and harmonized sets, between each image and its harmonized version.
    ``brain_only``: average over the union of the two brain masks (see `pair_luminance`).
    """
    vols_b = vols_a if vols_b is None else vols_b
    rows = []
    for i, j in np.asarray(pairs, dtype=int):
        mask = brain_mask(vols_a[i]) | brain_mask(vols_b[j]) if brain_only else None
        rows.append({"i": int(i), "j": int(j), **ssim_terms(vols_a[i], vols_b[j], data_range, win_size, mask)})
    return pd.DataFrame(rows)
