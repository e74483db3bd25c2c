"""SSIM forward+backward: harmlib vs MONAI SSIMLoss vs pytorch-msssim, side by side in one run.

    .venv/bin/python benchmarks/bench_ssim.py                    # 48x56x48, 91x109x91, 182x218x182
    .venv/bin/python benchmarks/bench_ssim.py --sizes 48x56x48 --repeats 5

All three use an 11-voxel Gaussian window (sigma 1.5) on one fp32 volume (batch 1, 1 channel) on
the CPU (or --device cuda). Prints the median time of each and the ratios to harmlib. The goal at
182x218x182 on CPU: harmlib at least 50x faster than MONAI and 5x faster than pytorch-msssim.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import harmlib


def _ours(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return harmlib.ssim_loss(x, y, data_range=1.0)


def _monai():
    from monai.losses import SSIMLoss

    loss = SSIMLoss(spatial_dims=3, data_range=1.0, kernel_type="gaussian", win_size=11, kernel_sigma=1.5)
    return lambda x, y: loss(x, y)


def _msssim():
    from pytorch_msssim import ssim

    return lambda x, y: 1 - ssim(x, y, data_range=1.0, win_size=11, win_sigma=1.5, size_average=True)


def time_fwd_bwd(fn, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward+backward (after one warm-up call)."""
    times = []
    for i in range(repeats + 1):
        xg = x.clone().requires_grad_()
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(xg, y).backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i:  # the first call builds caches (band matrices, kernels)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="48x56x48,91x109x91,182x218x182")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per method and size (median reported)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    methods = {"harmlib": _ours, "monai SSIMLoss": _monai(), "pytorch-msssim": _msssim()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, fp32, forward+backward, median of {args.repeats}"
    )
    print(f"{'size':>14} | " + " | ".join(f"{m:>16}" for m in methods) + " | monai/harmlib | msssim/harmlib")
    for size in args.sizes.split(","):
        shape = tuple(int(s) for s in size.split("x"))
        x = torch.rand(1, 1, *shape, device=args.device)
        y = (0.7 * x + 0.3 * torch.rand_like(x)).clamp(0, 1)
        t = {name: time_fwd_bwd(fn, x, y, args.repeats) for name, fn in methods.items()}
        print(
            f"{size:>14} | "
            + " | ".join(f"{t[m]:>14.3f} s" for m in methods)
            + f" | {t['monai SSIMLoss'] / t['harmlib']:>12.1f}x | {t['pytorch-msssim'] / t['harmlib']:>13.1f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
