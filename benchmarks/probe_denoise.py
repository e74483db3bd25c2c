"""What the gate's scale-invariant SSIM to the truth rewards beyond an intensity map: fixed operations, no training.

On the gate's traveling cases (healthy test scans of the cpu cohort harmonized to A and B), each row is a fixed
operation: the unharmonized scan, Nyul fitted to the target's scans, the oracle (the generating model's exact curve
and fields: the ceiling of an intensity-only method), each of them followed by a Gaussian of sigma voxels (a
denoiser that knows nothing of anatomy), and the rescan at the target. Prints the scale-invariant SSIM to the truth
and the share of the rescan gap closed per target: whether the gate's bar (gap closed >= 0.5) needs more than
contrast, and how much a denoiser alone would earn there.

    .venv/bin/python benchmarks/probe_denoise.py [cohort dir, default data/generated/cpu] [n cases, default 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from scipy import ndimage

import harmlib
from harmlib.data import read_manifest
from harmlib.data.synthetic import TARGET_A, TARGET_B
from harmlib.evaluation.gate import bar_cases, scale_free_ssim, target_nyul

cohort = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/generated/cpu")
n_cases = int(sys.argv[2]) if len(sys.argv) > 2 else 16
cfg = harmlib.load_config("cpu")
man = read_manifest(cohort / "manifest.csv")
targets = {"A": TARGET_A.domain, "B": TARGET_B.domain}
nyul = target_nyul(man, targets)
SIGMAS = (0.0, 0.5, 0.75, 1.0)
rows = []
for case in bar_cases(cfg, man, targets, n_cases):
    base = {"unharmonized": case.vol, "Nyul (target)": nyul.harmonize(case.vol, case.domain), "oracle": case.oracle}
    for method, v in base.items():
        for s in SIGMAS:
            out = ndimage.gaussian_filter(v, s) if s else v
            rows.append(
                {"target": case.target, "method": method, "sigma": s, "SI": scale_free_ssim(out, case.truth, case.mask)}
            )
    rows.append(
        {
            "target": case.target,
            "method": "rescan",
            "sigma": 0.0,
            "SI": scale_free_ssim(case.rescan, case.truth, case.mask),
        }
    )
    print(f"case {case.i + 1}, -> {case.target}", file=sys.stderr)
df = pd.DataFrame(rows).groupby(["target", "method", "sigma"], sort=False)["SI"].mean().reset_index()
for _, g in df.groupby("target"):
    lo = float(g.loc[(g.method == "unharmonized") & (g.sigma == 0), "SI"].iloc[0])
    hi = float(g.loc[g.method == "rescan", "SI"].iloc[0])
    df.loc[g.index, "gap closed"] = (g["SI"] - lo) / (hi - lo)
pd.set_option("display.width", 120)
print(df.round(4).to_string(index=False))
