"""Probe one harmonizer setting: train it, then print the quality gate's numbers at every snapshot.

    .venv/bin/python benchmarks/probe_harmonizer.py --set "harmonizer.residual=true" --steps 200 --every 50

A probe changes one thing against the profile and is short (crops, few steps); its rows go in the
note of the issue it serves. Numbers on a subset of the test cohort (``--n-test`` volumes), the
classifier only at the end (``--classifier``).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

import harmlib
from harmlib.aguit.task import build_task
from harmlib.checkpoint import load_checkpoint
from harmlib.data import read_manifest
from harmlib.data.synthetic import TARGET_A, TARGET_B
from harmlib.evaluation import gate as G
from harmlib.harmonize import harmonize_volume, harmonizer_from
from harmlib.train.loop import fit, snapshot_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--set", default="")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--n-test", type=int, default=8)
    ap.add_argument("--classifier", action="store_true")
    ap.add_argument("--out", default="/tmp/probe")
    a = ap.parse_args()
    over = harmlib.config.parse_overrides(a.set)
    over |= {
        "harmonizer.train.iterations": a.steps,
        "harmonizer.train.snapshot_every": a.every,
        "harmonizer.train.checkpoint_every": a.steps,
    }
    cfg = harmlib.load_config(a.profile, over)
    man = read_manifest(cfg.data_dir / "manifest.csv")
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    task, meta = build_task(cfg, man)
    t0 = time.perf_counter()
    log = fit(task, cfg.harmonizer.train, cfg.runtime, out, seed=cfg.seed)
    minutes = (time.perf_counter() - t0) / 60
    print(
        f"setting: {a.set or '(profile)'} | {a.steps} steps in {minutes:.1f} min ({60 * minutes / a.steps:.2f} s/step)",
        flush=True,
    )
    print(log.iloc[:, :].tail(3).round(3).to_string(), flush=True)
    test = man.select("test", "test")
    idx = np.linspace(0, len(test) - 1, min(a.n_test, len(test))).round().astype(int)
    sub = type(test)(test.df.iloc[idx].reset_index(drop=True), test.root)
    targets = {"A": TARGET_A.domain, "B": TARGET_B.domain}
    predict = G.scanner_classifier(man, cfg) if a.classifier else None
    for step in range(a.every, a.steps + 1, a.every):
        h = harmonizer_from(meta, load_checkpoint(snapshot_path(out, step))["nets"])
        fn = lambda v, aff, t, h=h: harmonize_volume(h, v, aff, t, cfg.seed)
        rec = G.reconstruction_cases(sub, fn)
        trav, outs = G.traveling_cases(sub, fn, targets, extra=())
        parts = [
            f"step {step:4d}",
            f"rec {rec['reconstruction SSIM'].mean():.3f}",
            f"struct {trav['structure vs original'].mean():.3f}",
        ]
        for n, g in trav.groupby("target"):
            gain = g["SSIM after"] - g["SSIM before"]
            parts.append(
                f"{n}: {g['SSIM before'].mean():.3f}->{g['SSIM after'].mean():.3f} ({(gain > 0).mean():.0%} up)"
            )
        if predict is not None:
            parts.append(f"translation {np.mean([p == targets[n] for n in targets for p in predict(outs[n])]):.2f}")
        print(" | ".join(parts), flush=True)
    if a.classifier:
        hits = [p == targets[n] for n in targets for p in predict(outs[n])]
        truth_hits = [
            p == targets[n]
            for n in targets
            for p in predict([G._load(sub.truth(i, targets[n]))[0] for i in range(len(sub))])
        ]
        print(
            f"{cfg.gate.classifier} classifier reads truth at A/B as A/B: {np.mean(truth_hits):.2f}; harmonized to A/B read as A/B: {np.mean(hits):.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
