"""The versions of a cohort that every table compares: unharmonized, each model's targets, the baselines.

A *version* is the cohort's volumes after one harmonization, in the same subject order, on the data's
grid (``{name: [volume, ...]}``). Deep models go through `harmlib.harmonize.harmonize_volume`, exactly
what ``harmlib harmonize`` does to one's own files; classical baselines (`harmlib.evaluation.baselines`)
are fitted on the training cohort (or on one target site's training scans, for "to A / to B").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from harmlib.data.io import load_volume
from harmlib.data.manifest import Manifest
from harmlib.evaluation.baselines import fit_harmonizer
from harmlib.harmonize import harmonize_volume, load_harmonizer

Versions = dict[str, list[np.ndarray]]


def load_cohort_volumes(
    manifest: Manifest, split: str | None = None, role: str | None = None
) -> tuple[list[np.ndarray], np.ndarray, pd.DataFrame]:
    """(volumes, the shared affine, the manifest rows) of one selection, on the data's grid."""
    sel = manifest.select(split, role)
    imgs = [load_volume(p) for p in sel.paths()]
    return [i.get_fdata(dtype=np.float32) for i in imgs], imgs[0].affine, sel.df.reset_index(drop=True)


def model_versions(
    model_path: str | Path,
    volumes: Sequence[np.ndarray],
    affine: np.ndarray,
    targets: dict[str, str],
    prefix: str = "",
    seed: int = 0,
) -> Versions:
    """``{prefix + name: harmonized volumes}`` for each target (``{"A": domain, "agnostic": "agnostic"}``)."""
    h = load_harmonizer(model_path)
    out: Versions = {}
    for name, target in targets.items():
        out[prefix + name] = [
            harmonize_volume(h, v, affine, target, seed)
            for v in tqdm(volumes, desc=f"{Path(model_path).stem} -> {name}", leave=False)
        ]
    return out


def baseline_versions(
    volumes: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    names: Sequence[str] = ("zscore", "whitestripe", "nyul"),
) -> Versions:
    """Each classical baseline fitted on ``reference`` (e.g. the training cohort, or one target's scans) and
    applied to ``volumes`` through the Harmonizer interface (target ``agnostic``: the reference as a whole)."""
    out: Versions = {}
    for name in tqdm(names, desc="baselines", leave=False):
        h = fit_harmonizer(name, {None: reference})
        out[name] = [h.harmonize(v, "agnostic") for v in volumes]
    return out


def cohort_versions(
    manifest: Manifest,
    model_path: str | Path,
    targets: dict[str, str],
    reference: tuple[Sequence[np.ndarray], Sequence[str]],
    split: str | None = None,
    role: str | None = None,
    nyul_to: dict[str, str] | None = None,
    seed: int = 0,
) -> tuple[Versions, np.ndarray, pd.DataFrame]:
    """Every version of one cohort that the paper-1 tables compare: unharmonized, the model to each of
    ``targets``, the classical baselines fitted on ``reference`` (the training volumes and their domains) and,
    for each ``nyul_to`` {"A": domain}, Nyul fitted to that site's training scans ("nyul to A").

    Returns (versions, the cohort's affine, its manifest rows)."""
    vols, affine, df = load_cohort_volumes(manifest, split, role)
    ref_vols, ref_domains = reference
    versions: Versions = {"unharmonized": vols}
    versions |= model_versions(model_path, vols, affine, targets, seed=seed)
    versions |= baseline_versions(vols, ref_vols)
    for name, domain in (nyul_to or {}).items():
        site = [v for v, d in zip(ref_vols, ref_domains) if d == domain]
        versions[f"nyul to {name}"] = baseline_versions(vols, site, names=("nyul",))["nyul"]
    return versions, affine, df
