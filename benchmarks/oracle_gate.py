"""What the harmonizer's quality gate asks for, measured with fixed (untrained) operations.

    .venv/bin/python benchmarks/oracle_gate.py --profile cpu

Each row maps every traveling-subject test volume to A and to B with one operation in the training
normalization's units (``Normalizer``), then back with the target site's intensity scale (as
``harmlib.harmonize`` does), and prints the gate's criteria for it: translation accuracy by the gate's own
scanner classifier, SSIM to the true rendering before -> after with the share of cases closer and the mean
gain, and the structure vs the original. The operations:

* ``scale``: nothing but the target's intensity scale (what a harmonizer that stays the identity gets);
* ``curve``: each volume's brain landmarks (1st..99th percentile, Otsu's mask) mapped piecewise-linearly onto
  the target site's mean landmarks over its training scans (a Nyul-like global intensity curve);
* ``+ smoothing s``: a Gaussian of ``s`` voxels inside the brain after that (a mild denoising).

A learned harmonizer has to do at least what the passing rows do; none of them is a model.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

import harmlib
from harmlib.data import read_manifest
from harmlib.data.datasets import Normalizer
from harmlib.data.synthetic import TARGET_A, TARGET_B
from harmlib.evaluation import gate as G
from harmlib.evaluation.metrics import brain_mask

PERCENTILES = np.linspace(1, 99, 11)


def landmarks(vol: np.ndarray, norm: Normalizer) -> tuple[np.ndarray, np.ndarray]:
    """The normalized volume and its brain's landmarks."""
    x = norm.forward(vol)[0]
    return x, np.percentile(x[brain_mask(vol)], PERCENTILES)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--sigmas", default="0,0.5,0.7,1.0", help="smoothing widths in voxels (0: none)")
    a = ap.parse_args()
    cfg = harmlib.load_config(a.profile)
    man = read_manifest(cfg.data_dir / "manifest.csv")
    targets = {"A": TARGET_A.domain, "B": TARGET_B.domain}
    norm = Normalizer()
    train = man.select("train")
    site_lm, site_high = {}, {}
    for d in targets.values():
        vols = [G._load(p)[0] for p, dom in zip(train.paths(), train.df["domain"]) if dom == d]
        site_lm[d] = np.mean([landmarks(v, norm)[1] for v in vols], 0)
        site_high[d] = float(np.median([norm.forward(v)[1]["high"] for v in vols]))
    predict = G.scanner_classifier(man, cfg)
    test = man.select("test", "test")

    def operation(curve: bool, sigma: float) -> G.Harmonize:
        def harmonize(vol: np.ndarray, affine: np.ndarray, target: str) -> np.ndarray:
            if target not in site_lm:
                return vol
            x, q = landmarks(vol, norm)
            y = x
            if curve:
                src, dst = np.concatenate([[-1], q]), np.concatenate([[-1], site_lm[target]])
                y = np.interp(x, src, dst)
                top = x > src[-1]  # above the 99th percentile: the last segment's slope
                y[top] = dst[-1] + (x[top] - src[-1]) * (dst[-1] - dst[-2]) / (src[-1] - src[-2])
            if sigma:
                y = np.where(x > -0.8, ndimage.gaussian_filter(y, sigma), y)
            out = norm.inverse(np.clip(y, -1, 1), {"low": 0.0, "high": site_high[target]})
            return np.where(vol > 0, np.clip(out, 0, None), 0).astype(np.float32)

        return harmonize

    for curve in (False, True):
        for sigma in (float(s) for s in a.sigmas.split(",")):
            trav, outs = G.traveling_cases(test, operation(curve, sigma), targets, extra=())
            acc = np.mean([p == targets[n] for n in targets for p in predict(outs[n])])
            parts = [
                f"{'curve' if curve else 'scale'}{f' + smoothing {sigma:g}' if sigma else ''}: translation {acc:.2f}"
            ]
            for name, g in trav.groupby("target"):
                gain = g["SSIM after"] - g["SSIM before"]
                parts.append(
                    f"{name}: {g['SSIM before'].mean():.3f}->{g['SSIM after'].mean():.3f} "
                    f"({(gain > 0).mean():.0%} closer, {gain.mean():+.3f})"
                )
            parts.append(f"structure {trav['structure vs original'].mean():.3f}")
            print(" | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
