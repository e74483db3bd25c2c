"""Probe one 2D setting: train GMM-DRIT or DRIT++ with overrides, then print its quality gate.

    .venv/bin/python benchmarks/probe_drit.py --variant drit --set "drit.train.lr=1e-3" --steps 300

The GM-VAE of the profile's run (runs/<profile>/models/gmvae.pt) serves GMM-DRIT. A probe changes one thing
against the profile; its rows go in the note of the issue it serves (setting, steps, minutes, the gate).
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

import harmlib
from harmlib.data import read_manifest
from harmlib.data.synthetic import TARGET_A, TARGET_B
from harmlib.drit.task import build_task, export_model
from harmlib.evaluation.claims import gate_line
from harmlib.evaluation.gate import evaluate_gate
from harmlib.harmonize import harmonize_volume, load_harmonizer
from harmlib.train.loop import fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--variant", default="drit", choices=("drit", "gmm_drit"))
    ap.add_argument("--set", default="")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="/tmp/probe_drit")
    ap.add_argument("--gmvae", default="", help="GMM-DRIT's GM-VAE model file (default: the profile run's)")
    ap.add_argument("--resume", action="store_true", help="keep --out: a finished run's checkpoint is evaluated again")
    a = ap.parse_args()
    over = harmlib.config.parse_overrides(a.set) | {
        "drit.train.iterations": a.steps,
        "drit.train.checkpoint_every": a.steps,
        "drit.train.snapshot_every": 0,
    }
    cfg = harmlib.load_config(a.profile, over)
    man = read_manifest(cfg.data_dir / "manifest.csv")
    out = Path(a.out)
    if not a.resume:
        shutil.rmtree(out, ignore_errors=True)
    task, meta = build_task(cfg, man, a.variant, a.gmvae or cfg.run_dir / "models" / "gmvae.pt")
    t0 = time.perf_counter()
    log = fit(task, cfg.drit.train, cfg.runtime, out / "train", seed=cfg.seed)
    minutes = (time.perf_counter() - t0) / 60
    print(f"{a.variant} | {a.set or '(profile)'} | {a.steps} steps in {minutes:.1f} min", flush=True)
    print(log.tail(2).round(3).to_string(), flush=True)
    h = load_harmonizer(export_model(task, meta, out / f"{a.variant}.pt"))
    targets = {"A": TARGET_A.domain, "B": TARGET_B.domain}
    fn = lambda v, aff, t: harmonize_volume(h, v, aff, t, cfg.seed)  # noqa: E731
    gate, _ = evaluate_gate(
        a.variant,
        cfg,
        man,
        fn,
        targets,
        extra=("scanner-free",),
        reconstruction_sites=targets,
        gate=replace(cfg.gate, structure=cfg.gate.slice_structure),
    )
    print(gate_line(gate), flush=True)
    print(gate.drop(columns=["model"]).to_string(), flush=True)


if __name__ == "__main__":
    main()
