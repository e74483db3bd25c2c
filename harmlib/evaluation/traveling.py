"""Traveling subjects: a harmonized scan against the same subject's true scan at the target site.

The synthetic cohort renders every test subject at targets A and B as well (``truth_path`` in the
manifest), which no real data set offers. SSIM (over the brain) and PSNR of each version against that
truth say whether "harmonized to A" looks like what A would have measured. Real data (the paper
profile) has no such truth: the table then holds one ``note`` row saying so, instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from harmlib.data.io import load_volume
from harmlib.data.manifest import Manifest
from harmlib.evaluation.metrics import brain_mask, psnr, ssim_terms


def has_truth(manifest: Manifest, split: str = "test", role: str = "test") -> bool:
    return not manifest.select(split, role).df["truth_path"].fillna("").eq("").all()


def traveling_table(
    manifest: Manifest,
    versions: dict[str, Sequence[np.ndarray]],
    by_target: dict[str, tuple[str, list[str]]],
    profile: str,
    reference: str = "unharmonized",
) -> pd.DataFrame:
    """One row per (target, version) in the claim-table layout (``tables.claim_table``: metric, version, paper,
    ours, claim holds, profile, plus the target and PSNR): SSIM to the truth as ``ours`` (mean ± SD over subjects).

    ``versions``: the test cohort's versions in manifest order (``reference`` is the unharmonized scans).
    ``by_target``: {"A": (domain of A, [versions to compare]), ...}. ``claim holds``: the version's mean
    SSIM *and* PSNR to the truth beat the reference's (closer to the truth than before).
    """
    test = manifest.select("test", "test")
    if not has_truth(manifest):
        return pd.DataFrame(
            [
                {
                    "note": "no traveling-subject truth in this manifest (real data): this table needs the synthetic cohort",
                    "profile": profile,
                }
            ]
        )
    recs = []
    for tname, (domain, names) in by_target.items():
        truths = [load_volume(test.truth(i, domain)).get_fdata(dtype=np.float32) for i in range(len(test))]
        for v in names:
            ssim_, psnr_ = [], []
            for vol, truth in zip(versions[v], truths):
                m = brain_mask(truth)
                ssim_.append(ssim_terms(vol, truth, mask=m)["ssim"])
                psnr_.append(psnr(vol[m], truth[m]))
            recs.append(
                {
                    "metric": "ssim_to_truth",
                    "target": tname,
                    "version": v,
                    "paper": "",  # neither paper has traveling subjects
                    "ours": f"{np.mean(ssim_):.3f} ± {np.std(ssim_):.3f}",
                    "PSNR to truth (dB)": f"{np.mean(psnr_):.2f} ± {np.std(psnr_):.2f}",
                    "ssim_mean": float(np.mean(ssim_)),
                    "psnr_mean": float(np.mean(psnr_)),
                    "profile": profile,
                }
            )
    out = pd.DataFrame(recs)
    before = out[out.version == reference].set_index("target")
    holds = [
        ""
        if r.version == reference
        else bool(r.ssim_mean > before.ssim_mean[r.target] and r.psnr_mean > before.psnr_mean[r.target])
        for r in out.itertuples()
    ]
    out.insert(out.columns.get_loc("profile"), "claim holds", holds)
    return out
