"""Paper-scale harmonizer step: time and peak GPU memory at 182x218x182 (padded), bf16, batch 1 and 2.

    .venv/bin/python benchmarks/bench_harmonizer_gpu.py                 # on a GPU, the paper profile's nets
    .venv/bin/python benchmarks/bench_harmonizer_gpu.py --device cpu --shape 48x56x48 --profile tiny   # smoke test

One step = the D step then the G step of ``harmlib.aguit.task`` (the functions training uses),
with Adam updates, under bf16 autocast (SSIM in fp32). Prints the median step time over
``--repeats`` steps after one warm-up, and the peak memory (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import harmlib
from harmlib.aguit.losses import aguit_discriminator_loss, aguit_generator_loss
from harmlib.aguit.model import build_aguit
from harmlib.aguit.task import forward, spec_from_config
from harmlib.data.datasets import pad_to_multiple
from harmlib.train.loop import autocast


def step_stats(cfg, shape: tuple[int, ...], batch: int, device: torch.device, repeats: int) -> tuple[float, float]:
    spec = spec_from_config(cfg, n_domains=5)
    nets = {k: m.to(device) for k, m in build_aguit(spec).items()}
    g_opt = torch.optim.Adam(
        [p for k in ("E_b", "E_s", "G") for p in nets[k].parameters()], lr=1e-4, betas=(0.5, 0.999)
    )
    d_opt = torch.optim.Adam([p for k in ("D_x", "D_b") for p in nets[k].parameters()], lr=1e-4, betas=(0.5, 0.999))
    padded, _ = pad_to_multiple(torch.zeros(shape), spec.pad_multiple)
    x_l = torch.rand(batch, 1, *padded.shape, device=device) * 2 - 1
    x_u = torch.rand_like(x_l) * 2 - 1
    label = -torch.ones(batch, 5, device=device)
    label[:, 0] = 1
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with autocast(device, "bf16"):  # one forward pass, then the D step and the G step read it (as build_task)
            f = forward(nets, x_l, label, x_u, spec.noise_dim)
            d_loss, _ = aguit_discriminator_loss(f, nets, cfg.harmonizer.weights)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        with autocast(device, "bf16"):
            g_loss, _ = aguit_generator_loss(f, nets, cfg.harmonizer.weights, cfg.ssim)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return statistics.median(times), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--shape", default="182x218x182")
    ap.add_argument("--batches", default="1,2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    cfg = harmlib.load_config(args.profile)
    device = torch.device(args.device)
    shape = tuple(int(s) for s in args.shape.split("x"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{name}, torch {torch.__version__}, profile {args.profile} (width {cfg.harmonizer.width}), input {args.shape} padded, bf16"
    )
    for b in (int(v) for v in args.batches.split(",")):
        try:
            sec, peak = step_stats(cfg, shape, b, device, args.repeats)
            print(f"batch {b}: {sec:.3f} s/step (median of {args.repeats}), peak memory {peak:.1f} GiB", flush=True)
        except torch.OutOfMemoryError:
            print(f"batch {b}: out of memory", flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
