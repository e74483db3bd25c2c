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
from harmlib.data.anatomy import make_anatomy
from harmlib.data.synthetic import TARGET_A, TARGET_B, all_sites, healthy_test_scans, oracle, scan_seed
from harmlib.evaluation.gate import _load, _scale_free_ssim, target_nyul
from harmlib.evaluation.metrics import brain_mask

cohort = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/generated/cpu")
n_cases = int(sys.argv[2]) if len(sys.argv) > 2 else 16
cfg = harmlib.load_config("cpu")
man = read_manifest(cohort / "manifest.csv")
test = man.select("test", "test")
targets = {"A": TARGET_A.domain, "B": TARGET_B.domain}
nyul = target_nyul(man, targets)
scans, sites = healthy_test_scans(cfg.synth, cfg.seed), all_sites()
SIGMAS = (0.0, 0.5, 0.75, 1.0)
rows = []
for i in range(min(n_cases, len(test))):
    vol, _ = _load(test.path(i))
    scan = scans[test.df.at[i, "subject"]]
    anat = make_anatomy(scan.subject, cfg.data.voxel_mm)
    for name, domain in targets.items():
        truth, _ = _load(test.truth(i, domain))
        m = brain_mask(truth)
        base = {
            "unharmonized": vol,
            "Nyul (target)": nyul.harmonize(vol, domain),
            "oracle": oracle(vol, anat, scan.site, sites[domain], cfg.data.voxel_mm, scan_seed(scan, scan.site)),
        }
        for method, v in base.items():
            for s in SIGMAS:
                out = ndimage.gaussian_filter(v, s) if s else v
                rows.append({"target": name, "method": method, "sigma": s, "SI": _scale_free_ssim(out, truth, m)})
        rows.append(
            {
                "target": name,
                "method": "rescan",
                "sigma": 0.0,
                "SI": _scale_free_ssim(_load(test.rescan(i, domain))[0], truth, m),
            }
        )
    print(f"case {i + 1}/{min(n_cases, len(test))}", file=sys.stderr)
df = pd.DataFrame(rows).groupby(["target", "method", "sigma"], sort=False)["SI"].mean().reset_index()
for _, g in df.groupby("target"):
    lo = float(g.loc[(g.method == "unharmonized") & (g.sigma == 0), "SI"].iloc[0])
    hi = float(g.loc[g.method == "rescan", "SI"].iloc[0])
    df.loc[g.index, "gap closed"] = (g["SI"] - lo) / (hi - lo)
pd.set_option("display.width", 120)
print(df.round(4).to_string(index=False))
