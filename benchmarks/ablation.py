"""Train the ablation rows of `harmlib.evaluation.ablation` at one budget and write their table.

    .venv/bin/python benchmarks/ablation.py harmonizer      # harmonizer 1 (100 steps): paper G, + residual, + curve, + field
    .venv/bin/python benchmarks/ablation.py slices          # DRIT++ / GMM-DRIT (150 steps): paper G vs the cpu levers
    .venv/bin/python benchmarks/ablation.py harmonizer --steps 1000 --only 3   # the budget probe: the profile's row, 10x
    .venv/bin/python benchmarks/ablation.py harmonizer --steps 250 --only 3 --set harmonizer.width=16 --tag width16

Each row trains from scratch (seed ``--seed``) under ``runs/<profile>/ablation/<rows>/<n>/`` and runs the model's
quality gate without the native-resolution rows (they cost minutes per row and do not depend on the levers' kind);
the table goes to ``runs/<profile>/tables/ablation_<rows>.csv`` (and ``--copy`` to a committed file) with each
row's budget. The 2D rows use the run's trained GM-VAE (``runs/<profile>/models/gmvae.pt``, chapter 04); without the levers there is
no site field to read, so GMM-DRIT with the paper's G gets a slice-view GM-VAE (the thesis's) trained here once.
A killed run resumes: each row's training resumes from its checkpoint, a row whose gate is written is skipped; a row
trained with another config, another harmlib or another GM-VAE (its ``key.txt``) is trained and measured again.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

import harmlib
from harmlib.data import read_manifest
from harmlib.data.io import write_text_atomic
from harmlib.data.synthetic import TARGET_A, TARGET_B
from harmlib.evaluation.ablation import (
    HARMONIZER_ROWS,
    SLICE_ROWS,
    STEPS,
    ablation_row,
    overrides,
    run_suffix,
    table_name,
)
from harmlib.evaluation.gate import evaluate_gate
from harmlib.harmonize import harmonize_volume, load_harmonizer
from harmlib.pipeline import library_hash
from harmlib.train.loop import fingerprint, fit

TARGETS = {"A": TARGET_A.domain, "B": TARGET_B.domain}


def train_row(cfg, man, section: str, variant: str | None, run: Path, gmvae: Path) -> tuple[Path, int, float]:
    """Train one row; returns (model file, steps, minutes of this run)."""
    if section == "harmonizer":
        from harmlib.aguit.task import build_task, export_model

        task, meta = build_task(cfg, man)
    else:
        from harmlib.drit.task import build_task, export_model

        task, meta = build_task(cfg, man, variant, gmvae)
    t0 = time.perf_counter()
    log = fit(task, getattr(cfg, section).train, cfg.runtime, run / "train", seed=cfg.seed)
    minutes = float(log.seconds.iloc[-1]) / 60 if len(log) else (time.perf_counter() - t0) / 60
    return export_model(task, meta, run / "model.pt"), int(log.step.iloc[-1]) if len(log) else 0, minutes


def slice_gmvae(cfg, man, run: Path, steps: int) -> Path:
    """A GM-VAE that reads the slices (the thesis's view), for GMM-DRIT without the levers (no field to read)."""
    from harmlib.gmvae.task import build_task, export_model

    path = run / "gmvae.pt"
    if path.is_file():
        return path
    cfg = cfg.replace({"gmvae.train.iterations": steps, "gmvae.kl_warmup": 0})
    task, meta = build_task(cfg, man)
    fit(task, cfg.gmvae.train, cfg.runtime, run / "train", seed=cfg.seed)
    export_model(task, meta, path)
    return path


def row_key(cfg, gmvae: Path | None) -> str:
    """What a measured row depends on: its config, harmlib's source and (GMM-DRIT) its GM-VAE's model file."""
    weights = hashlib.sha256(gmvae.read_bytes()).hexdigest() if gmvae is not None else ""
    return fingerprint([harmlib.config.to_dict(cfg), library_hash(), weights])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", choices=["harmonizer", "slices"])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--steps", type=int, help=f"training steps of each row (default {STEPS})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", type=int, nargs="*", help="row numbers to run (default all)")
    ap.add_argument("--copy", type=Path, help="also write the table here (e.g. benchmarks/results/)")
    ap.add_argument("--set", default="", help="a probe: overrides on top of each row (dotted=value, comma-separated)")
    ap.add_argument("--tag", default="", help="the probe's name in its folders and table (required with --set)")
    ap.add_argument(
        "--gmvae-steps", type=int, default=1000, help="steps of the slice-view GM-VAE (GMM-DRIT, paper's G)"
    )
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    section = "harmonizer" if args.rows == "harmonizer" else "drit"
    rows = HARMONIZER_ROWS if args.rows == "harmonizer" else SLICE_ROWS
    base = harmlib.load_config(args.profile, {"seed": args.seed, "gate.native_mm": 0})
    man = read_manifest(base.data_dir / "manifest.csv")
    out_dir = base.run_dir / "ablation" / args.rows
    if bool(args.set) != bool(args.tag):
        ap.error("--set and --tag go together: a probe's rows are kept apart under its tag")
    args.steps = args.steps or STEPS[args.rows]
    suffix = run_suffix(args.rows, args.seed, args.steps, args.tag)
    probe = harmlib.config.parse_overrides(args.set) if args.set else {}
    results = []
    for n, (name, row) in enumerate(rows.items()):
        if args.only and n not in args.only:
            continue
        variant, row = row if isinstance(row, tuple) else (None, row)
        steps = {f"{section}.train.iterations": args.steps, f"{section}.train.snapshot_every": 0}
        warm = getattr(base, section).train.warmup
        steps[f"{section}.train.warmup"] = min(warm, args.steps - 1)
        extra = {}
        if section == "drit" and not row.get("site_field_mm", 1):  # no levers, no field: the GM-VAE reads slices
            extra = {"gmvae.view": "slice", "gmvae.field_mm": 0.0}
        cfg = base.replace(overrides(section, row) | steps | extra | probe)
        run = out_dir / (f"{n}_{variant or 'harmonizer'}" + suffix)
        done = run / "ablation_row.csv"
        gmvae = base.run_dir / "models" / "gmvae.pt"
        if variant == "gmm_drit" and cfg.gmvae.view == "slice":  # the thesis's GM-VAE, trained here once
            gmvae = slice_gmvae(cfg, man, out_dir / "gmvae_slice", args.gmvae_steps)
        key = row_key(cfg, gmvae if variant == "gmm_drit" else None)
        if run.exists() and not ((run / "key.txt").is_file() and (run / "key.txt").read_text() == key):
            shutil.rmtree(run)  # trained or measured with another config, harmlib or GM-VAE: from scratch
        if done.is_file():
            results.append(pd.read_csv(done).iloc[0].to_dict())
            print(f"{name}: done before ({done})")
            continue
        run.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run / "key.txt", key)
        model, n_steps, minutes = train_row(cfg, man, section, variant, run, gmvae)
        h = load_harmonizer(model)
        fn = lambda v, aff, t, h=h, seed=cfg.seed: harmonize_volume(h, v, aff, t, seed)  # noqa: E731
        gate = cfg.gate if section == "harmonizer" else replace(cfg.gate, structure=cfg.gate.slice_structure)
        extra = ("agnostic",) if section == "harmonizer" else ("scanner-free",)
        recon = None if section == "harmonizer" else TARGETS
        table, trav = evaluate_gate(variant or "ssim_harmonizer", cfg, man, fn, TARGETS, extra, recon, gate)
        rec = ablation_row(name, table, trav, n_steps, minutes) | {"seed": args.seed, "profile": cfg.profile}
        if args.set:
            rec["probe"] = f"{args.tag}: {args.set}"
        write_text_atomic(run / "gate.csv", table.to_csv(index=False))  # the whole gate, beside the row
        write_text_atomic(done, pd.DataFrame([rec]).to_csv(index=False))
        results.append(rec)
        print(pd.DataFrame([rec]).round(4).to_string(index=False), flush=True)
    df = pd.DataFrame(results)
    path = (
        base.run_dir / "tables" / table_name(args.rows, args.seed, args.steps, args.tag, args.only)
    )  # each run its own
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, df.to_csv(index=False))
    if args.copy:
        args.copy.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.copy / path.name, df.to_csv(index=False))
    print(df.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
