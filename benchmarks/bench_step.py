"""More learning per CPU minute? Harmonizer 1's training step under each setting, side by side in one run.

    python benchmarks/bench_step.py [--profile cpu] [--steps 8] [--crops 48 32]

Builds the profile's harmonizer task on its cohort (``data/generated/<profile>``) and times ``--steps`` D+G steps
(after two warm-up steps, median of the rest) for each setting: the profile as it is; channels-last memory; bf16
autocast off; one thread instead of all; smaller crops (more steps in the same minutes, each seeing less); and
``torch.compile`` of G and the encoders (its compile time printed apart). Printed: seconds per step, the ratio to the
profile's setting, and voxels per second (what a step sees per second). Quote the ratios: machines differ.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import harmlib
from harmlib.aguit.task import build_task
from harmlib.data import read_manifest
from harmlib.train.loop import _adam, _to, _update, autocast


def time_steps(cfg, man, steps: int, channels_last: bool = False, compiled: bool = False) -> tuple[float, float]:
    """(median seconds per D+G step, seconds spent compiling) of the profile's harmonizer under ``cfg``."""
    task, _ = build_task(cfg, man)
    nets = task.nets
    if channels_last:
        for net in nets.values():
            net.to(memory_format=torch.channels_last_3d)
    compile_s = 0.0
    if compiled:
        for k in ("E_b", "E_s", "G"):
            nets[k].forward = torch.compile(nets[k].forward, dynamic=False)
    h = cfg.harmonizer
    g_opt = _adam(nets, task.g_nets, h.train, task.lr_scale)
    d_opt = _adam(nets, task.d_nets, h.train, task.lr_scale)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    device = torch.device("cpu")
    times = []
    for step in range(steps + 2):
        t0 = time.perf_counter()
        batch = _to(task.batch(step), device)
        with autocast(device, cfg.runtime.amp):
            f = task.forward(batch)
            d_loss, _ = task.d_step(f)
        _update(d_opt, d_loss, scaler)
        with autocast(device, cfg.runtime.amp):
            g_loss, _ = task.g_step(f)
        _update(g_opt, g_loss, scaler)
        dt = time.perf_counter() - t0
        if step < 2:
            compile_s += dt if compiled else 0.0
        else:
            times.append(dt)
    return statistics.median(times), compile_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--crops", type=int, nargs="*", default=[32])
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    args = ap.parse_args()
    base = harmlib.load_config(args.profile)
    man = read_manifest(base.data_dir / "manifest.csv")
    threads = torch.get_num_threads()
    crop = base.harmonizer.crop
    settings = [("the profile", base, {}), ("channels-last", base, {"channels_last": True})]
    settings.append(("no bf16 autocast", base.replace({"runtime.amp": "none"}), {}))
    settings += [(f"crop {c}", base.replace({"harmonizer.crop": c}), {}) for c in args.crops]
    if args.compile:
        settings.append(("torch.compile", base, {"compiled": True}))
    rows = []
    for name, cfg, kw in settings:
        sec, comp = time_steps(cfg, man, args.steps, **kw)
        vox = cfg.harmonizer.train.batch_size * (cfg.harmonizer.crop or crop) ** 3
        rows.append((name, sec, comp, vox / sec))
    torch.set_num_threads(1)
    sec, _ = time_steps(base, man, args.steps)
    rows.append(("1 thread", sec, 0.0, base.harmonizer.train.batch_size * crop**3 / sec))
    torch.set_num_threads(threads)
    ref = rows[0][1]
    print(
        f"{'setting':>20} | {'s/step':>7} | {'ratio':>6} | {'voxels/s':>10} | compile s  ({threads} threads, {args.steps} steps)"
    )
    for name, sec, comp, vps in rows:
        print(f"{name:>20} | {sec:7.2f} | {sec / ref:5.2f}x | {vps:10.0f} | {comp:8.1f}")


if __name__ == "__main__":
    main()
