"""Harmonize one 1 mm 182x218x182 volume with each model kind and with Nyul, side by side: seconds and peak memory.

    python benchmarks/bench_native.py [--runs runs/cpu] [--device cpu|cuda] [--repeats 3]

Each kind runs in its own process (so its peak resident memory is its own): load the model file, read nothing else,
harmonize a 1 mm traveling-subject scan (the synthetic cohort's renderer, an unseen test site) to target A
``--repeats`` times through `harmlib.harmonize.harmonize_volume`, exactly what ``harmlib harmonize`` does to a file.
Printed: the median seconds per volume, the peak resident memory of the process (MB, after importing torch: the
baseline line shows what an empty process takes) and the fine detail kept (output / input, scale-invariant).
Goals on 2 CPU cores (issue 24): under 10 s for the 3D model, under 30 s slice by slice, at most 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("ssim_harmonizer", "gmm_drit", "drit")


def _volume(cache: Path) -> Path:
    """A 1 mm scan of a test subject at an unseen site (rendered once, cached)."""
    from harmlib import load_config
    from harmlib.data.synthetic import TARGET_A, write_native_copies

    rows = write_native_copies(load_config("cpu"), cache, 1, 1, [TARGET_A.domain])
    return Path(rows.loc[0, "path"])


def _child(kind: str, runs: Path, vol_path: Path, device: str, repeats: int) -> dict:
    import numpy as np
    import torch

    from harmlib.data.io import load_volume
    from harmlib.data.synthetic import TARGET_A
    from harmlib.evaluation.baselines import fit_harmonizer
    from harmlib.evaluation.metrics import brain_mask, fine_detail
    from harmlib.harmonize import harmonize_volume, load_harmonizer

    img = load_volume(vol_path)
    vol = img.get_fdata(dtype=np.float32)
    if kind == "baseline":  # what the process holds before any model: torch, harmlib, one 1 mm volume
        return {"kind": kind, "seconds": 0.0, "peak_mb": _peak_mb(), "detail": float("nan")}
    if kind == "nyul":
        from harmlib.data import read_manifest

        man = read_manifest(runs.parents[1] / "data" / "generated" / runs.name / "manifest.csv")
        train = man.select("train")
        refs = [
            load_volume(p).get_fdata(dtype=np.float32)
            for p, d in zip(train.paths(), train.df["domain"])
            if d == TARGET_A.domain
        ]
        h = fit_harmonizer("nyul", {TARGET_A.domain: refs}, [TARGET_A.domain])
    else:
        h = load_harmonizer(runs / "models" / f"{kind}.pt", device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = harmonize_volume(h, vol, img.affine, TARGET_A.domain)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    m = brain_mask(vol)
    return {
        "kind": kind,
        "seconds": float(np.median(times)),
        "peak_mb": _peak_mb(),
        "detail": fine_detail(out, m) / fine_detail(vol, m),
        "shape": list(out.shape),
    }


def _peak_mb() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would carry the parent's peak across exec on Linux)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/cpu", help="the run folder whose models/ to time (default runs/cpu)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    runs = Path(args.runs).resolve()
    if args.child:
        print(json.dumps(_child(args.child[0], runs, Path(args.child[1]), args.device, args.repeats)))
        return
    vol = _volume(runs.parents[1] / "data" / "generated" / "bench_native_1mm")
    rows = []
    for kind in ("baseline", "nyul", *KINDS):
        if kind in KINDS and not (runs / "models" / f"{kind}.pt").is_file():
            print(f"{kind}: no {runs / 'models' / kind}.pt; train it first (make reproduce)")
            continue
        cmd = [sys.executable, __file__, "--runs", str(runs), "--device", args.device, "--repeats", str(args.repeats)]
        res = subprocess.run([*cmd, "--child", kind, str(vol)], capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    base = next(r["peak_mb"] for r in rows if r["kind"] == "baseline")
    nyul = next((r["seconds"] for r in rows if r["kind"] == "nyul"), float("nan"))
    print(f"one 1 mm 182x218x182 volume -> target A on {args.device}, median of {args.repeats}; memory: peak resident")
    print(f"{'kind':<16} {'seconds':>8} {'x Nyul':>7} {'peak MB':>8} {'over base':>9} {'detail kept':>11}")
    for r in rows:
        print(
            f"{r['kind']:<16} {r['seconds']:8.2f} {r['seconds'] / nyul if r['seconds'] else float('nan'):7.2f} "
            f"{r['peak_mb']:8.0f} {r['peak_mb'] - base:9.0f} {r['detail']:11.3f}"
        )


if __name__ == "__main__":
    main()
