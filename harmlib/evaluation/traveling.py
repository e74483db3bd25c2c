"""Traveling subjects: a harmonized scan against the same subject's true scan at the target site.

The synthetic cohort renders every test subject at targets A and B as well (``truth_path`` in the
manifest), which no real data set offers. SSIM (over the brain) and PSNR of each version against that
truth say whether "harmonized to A" looks like what A would have measured. Real data (the paper
profile) has no such truth: the table then holds one ``note`` row saying so, instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

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


@dataclass(frozen=True)
class TravelingExample:
    """One traveling test subject's versions on its own grid: the scan, each model's and Nyul's output harmonized
    to ``target``, and the truth at ``target`` (what the landing figure and the 3D viewers show)."""

    subject: str
    domain: str
    versions: dict[str, np.ndarray]
    spacing: tuple[float, float, float]
    head: np.ndarray  # the scan's head, holes filled and one voxel wider: what a viewer shows

    def viewer(self):
        """This subject in the book's 3D viewer (`harmlib.widgets.VolumeViewer`), inside its head."""
        from harmlib.widgets import VolumeViewer

        return VolumeViewer(self.versions, self.spacing, title=self.title, mask=self.head)

    @property
    def title(self) -> str:
        return f"{self.subject}, scanned at the unseen site {self.domain}"


def traveling_example(
    manifest: Manifest, models: Mapping[str, Any], target: str, label: str, seed: int, index: int = 0
) -> TravelingExample | None:
    """The ``index``-th traveling test subject harmonized to ``target`` (a domain, shown as ``label``) by each model
    in ``models`` ({shown name: a model file, or a harmonizer a chapter already loaded}) and by Nyul fitted to the
    target's training scans; None when the cohort has no truth."""
    from harmlib.data.io import voxel_sizes
    from harmlib.evaluation.gate import target_nyul
    from harmlib.harmonize import harmonize_volume, load_harmonizer

    test = manifest.select("test", "test")
    if not has_truth(manifest) or index >= len(test) or not test.df.at[index, "truth_path"]:
        return None
    img = load_volume(test.path(index))
    vol = img.get_fdata(dtype=np.float32)
    versions = {"input": vol}
    for name, model in models.items():
        h = load_harmonizer(model) if isinstance(model, str | Path) else model
        versions[f"{name} -> {label}"] = harmonize_volume(h, vol, img.affine, target, seed)
    versions[f"Nyul -> {label}"] = target_nyul(manifest, {label: target}).harmonize(vol, target)
    versions[f"truth at {label}"] = load_volume(test.truth(index, target)).get_fdata(dtype=np.float32)
    row = test.df.iloc[index]
    spacing = tuple(float(s) for s in voxel_sizes(img.affine))
    head = ndimage.binary_dilation(ndimage.binary_fill_holes(brain_mask(vol)))
    return TravelingExample(str(row.subject), str(row.domain), versions, spacing, head)
