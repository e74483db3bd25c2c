"""Probe the harmonizer's landmark curve alone: how fast its MLP reaches each site's mean landmarks.

    .venv/bin/python benchmarks/probe_curve.py --profile cpu --steps 250

Only `harmlib.models.blocks.LandmarkCurve` learns, by L_hist against the mean landmarks of each training
site's scans (the cpu profile's target), on random (style noise, site label) pairs of batch 2, as in training.
Rows: learning rate x L1 (L_hist, a 1-D Wasserstein) or L2; the columns are the mean and the worst error of
the landmarks it gives each site's label (noise code 0), in the normalized intensity units, against the
distance of those site means from the cohort's standard (where every style starts). The curve behind
``harmonizer.curve_lr`` (0.0003 at train.lr 1e-4).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import harmlib
from harmlib.aguit.model import style_vector
from harmlib.data import read_manifest
from harmlib.data.datasets import Normalizer, VolumeDataset
from harmlib.models.blocks import LandmarkCurve, brain_landmarks


def site_landmarks(cfg) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    man = read_manifest(cfg.data_dir / "manifest.csv")
    doms = man.domains("train")
    ds = VolumeDataset(man, split="train", domains=doms, normalizer=Normalizer(), pad_multiple=4)
    p = LandmarkCurve(1, 1).percentiles
    lm = torch.stack([brain_landmarks(ds[i]["image"][None], p)[0] for i in range(len(ds))])
    site = torch.stack([ds[i]["label"] for i in range(len(ds))]).argmax(1)
    return lm, site, doms


def run(lm, site, k, noise_dim, lr, power, steps, seed=0) -> tuple[float, float]:
    torch.manual_seed(seed)
    means = torch.stack([lm[site == j].mean(0) for j in range(k)])
    curve = LandmarkCurve(noise_dim + k, 64)
    curve.set_standard(lm.mean(0))
    opt = torch.optim.Adam(curve.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    eye = 2 * torch.eye(k) - 1  # labels in {-1, 1}^K
    for _ in range(steps):
        j = torch.randint(0, k, (2,), generator=g)
        style = style_vector(torch.randn(2, noise_dim, generator=g), eye[j])
        loss = ((curve.style_landmarks(style) - means[j]).abs() ** power).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = (curve.style_landmarks(style_vector(torch.zeros(k, noise_dim), eye)) - means).abs().mean(1)
    return float(err.mean()), float(err.max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--steps", type=int, default=250)
    a = ap.parse_args()
    cfg = harmlib.load_config(a.profile)
    lm, site, doms = site_landmarks(cfg)
    k = len(doms)
    far = [float((lm[site == j].mean(0) - lm.mean(0)).abs().mean()) for j in range(k)]
    print(f"site means' distance from the cohort standard (where the curve starts): {np.round(far, 4)}")
    print(f"{'lr':>8} {'loss':>4} {'mean error':>11} {'worst site':>11}  ({a.steps} steps, batch 2)")
    for lr in (3e-4, 1e-3, 3e-3):
        for power in (1, 2):
            m, w = run(lm, site, k, cfg.harmonizer.noise_dim, lr, power, a.steps)
            print(f"{lr:8.0e} {'L1' if power == 1 else 'L2':>4} {m:11.4f} {w:11.4f}", flush=True)


if __name__ == "__main__":
    main()
