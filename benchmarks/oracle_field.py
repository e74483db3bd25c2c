"""What a site field adds to Nyul's curve on the gate's traveling subjects, with fixed (untrained) operations.

    .venv/bin/python benchmarks/oracle_field.py SIGMA_VOXELS GRID_STEP FRACTION

As ``oracle_gate.py``'s curve row (each volume's brain landmarks mapped onto the target site's mean landmarks), then,
in the row with the field, each volume's log low-pass intensity field (Gaussian SIGMA_VOXELS, normalized convolution
over the brain, read on a grid of GRID_STEP voxels and upsampled trilinearly, after the curve to the cohort's
standard, relative to the cohort's mean) replaced by FRACTION of the way to the target site's mean field over its
training scans: what ``harmonizer.site_field_mm`` lets a model learn. Prints the gate's criteria for both rows.
Nothing here is trained
every statistic comes from the training scans.
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

import harmlib
from harmlib.data import read_manifest
from harmlib.data.datasets import Normalizer
from harmlib.data.synthetic import TARGET_A, TARGET_B
from harmlib.evaluation import gate as G

P = np.linspace(1, 99, 11)
cfg = harmlib.load_config("cpu")
man = read_manifest(cfg.data_dir / "manifest.csv")
targets = {"A": TARGET_A.domain, "B": TARGET_B.domain}
norm = Normalizer()
train = man.select("train")
sig, fac, frac = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])


def prep(vol):
    x = norm.forward(vol)[0]
    m = x > x.mean()
    return x, m, np.percentile(x[m], P)


def curve(x, q, dst):
    src, d = np.concatenate([[-1], q]), np.concatenate([[-1], dst])
    y = np.interp(x, src, d)
    top = x > src[-1]
    y[top] = d[-1] + (x[top] - src[-1]) * (d[-1] - d[-2]) / (src[-1] - src[-2])
    return y


def idx(n):
    return np.round(np.linspace(0, n - 1, int(np.ceil((n - 1) / fac)) + 1)).astype(int)


def coarse_log(y, m):
    v = (y + 1) / 2
    num = ndimage.gaussian_filter(v * m, sig)
    den = ndimage.gaussian_filter(m.astype(np.float32), sig)
    ix = np.ix_(*[idx(n) for n in v.shape])
    num, den = num[ix], den[ix]
    return np.where(den > 0.05, np.log(np.maximum(num, 1e-4) / np.maximum(den, 1e-4)), np.nan)


def up(c, shape):
    t = torch.from_numpy(np.nan_to_num(c).astype(np.float32))[None, None]
    return F.interpolate(t, size=shape, mode="trilinear", align_corners=True)[0, 0].numpy()


vols = {
    d: [G._load(p)[0] for p, dd in zip(train.paths(), train.df["domain"]) if dd == d]
    for d in sorted(set(train.df["domain"]))
}
pre = {d: [prep(v) for v in vs] for d, vs in vols.items()}
std = np.mean([q for d in pre for (_, _, q) in pre[d]], 0)
site_lm = {d: np.mean([q for (_, _, q) in pre[d]], 0) for d in pre}
site_high = {d: float(np.median([norm.forward(v)[1]["high"] for v in vs])) for d, vs in vols.items()}
own = {d: [coarse_log(curve(x, q, std), m) for (x, m, q) in pre[d]] for d in pre}
C = np.nanmean([o for d in own for o in own[d]], 0)
Phi = {d: np.nanmean(own[d], 0) - C for d in own}
print("site field SD (brain cells):", {d[:10]: round(float(np.nanstd(Phi[d])), 4) for d in Phi})
predict = G.scanner_classifier(man, cfg)
test = man.select("test", "test")


def op(use):
    def h(vol, aff, target):
        if target not in targets.values():
            return vol
        x, m, q = prep(vol)
        y = (curve(x, q, site_lm[target]) + 1) / 2
        if use:
            o = coarse_log(curve(x, q, std), m) - C
            d = np.where(np.isnan(o), 0, frac * (Phi[target] - o))
            y = y * np.exp(up(d, x.shape))
        out = norm.inverse(np.clip(2 * y - 1, -1, 1), {"low": 0.0, "high": site_high[target]})
        return np.where(vol > 0, np.clip(out, 0, None), 0).astype(np.float32)

    return h


for use in (False, True):
    trav, outs = G.traveling_cases(test, op(use), targets, extra=())
    acc = np.mean([p == targets[n] for n in targets for p in predict(outs[n])])
    parts = [f"field {use} sigma {sig} factor {fac} frac {frac}: translation {acc:.2f}"]
    for name, g in trav.groupby("target"):
        gain = g["SSIM after"] - g["SSIM before"]
        parts.append(
            f"{name}: {g['SSIM before'].mean():.4f}->{g['SSIM after'].mean():.4f} ({(gain > 0).mean():.0%}, {gain.mean():+.4f})"
        )
    parts.append(f"structure {trav['structure vs original'].mean():.4f}")
    print(" | ".join(parts), flush=True)
