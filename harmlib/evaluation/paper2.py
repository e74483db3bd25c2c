"""The thesis's evaluation of GMM-DRIT against DRIT++ on 2D slices (E2-E5), as functions of the models and data.

Every slice is compared in the models' normalized units mapped to [0, 1] (background 0), over the brain, with
the padding the models were trained with cropped. Each ``table*`` function returns the claim table (thesis value
beside ours, ``harmlib.evaluation.tables.claim_table``) with the bootstrap confidence interval of the difference
the thesis reports; notebook 09 writes and shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from harmlib.config import Config
from harmlib.data.datasets import SliceDataset, crop_pads
from harmlib.evaluation.distributions import pair_luminance, sample_pairs
from harmlib.evaluation.features import fid_kid, train_feature_extractor
from harmlib.evaluation.metrics import brain_mask, ssim_terms
from harmlib.evaluation.paper_values import THESIS_E5, THESIS_TABLE1, THESIS_TABLE2, THESIS_TABLE3
from harmlib.evaluation.stats import bootstrap_mean_difference
from harmlib.evaluation.tables import claim_table, summary_row
from harmlib.harmonize import translate_dataset

GMM, BASE = "GMM-DRIT", "DRIT++"  # the thesis's model and its baseline: the names of the ``models`` mapping


def unit(x: Any) -> np.ndarray:
    """Normalized slices [-1, 1] -> [0, 1] (background 0), the range every metric here reads."""
    return np.clip((np.asarray(x, np.float32) + 1) / 2, 0, 1)


def real_slices(data: SliceDataset) -> tuple[np.ndarray, np.ndarray]:
    """(N, X, Z) slices of ``data`` in [0, 1] without their padding, and each slice's domain index."""
    x = torch.stack([data[i]["image"] for i in range(len(data))])
    return unit(crop_pads(x, data.pads).numpy()[:, 0]), np.asarray(data.domain_indices)


def _ci_text(ci: Any) -> str:
    """A difference and its CI, three decimals, without "-0.000"."""
    f = lambda v: f"{v + 0.0:.3f}".replace("-0.000", "0.000")  # noqa: E731  (+ 0.0 turns -0.0 into 0.0)
    return f"{f(ci.delta)} [{f(ci.low)}, {f(ci.high)}]"


def scanner_free(models: Mapping[str, Any], test: SliceDataset, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The test slices and each model's scanner-free translations of them, in [0, 1]."""
    x, out = None, {}
    for name, h in models.items():
        x, y = translate_dataset(h, test, "scanner-free", seed=seed)
        out[name] = unit(y)
    return unit(x), out


def table1_structure(x: np.ndarray, sf: Mapping[str, np.ndarray], cfg: Config) -> tuple[pd.DataFrame, dict]:
    """E2 / Table 1: structural SSIM of each slice and its scanner-free translation (brain), paired CI of the
    difference GMM-DRIT - DRIT++. Returns the table and each model's per-slice values."""
    struct = {
        name: np.array([ssim_terms(b, a, data_range=1.0, mask=brain_mask(a))["structure"] for a, b in zip(x, ys)])
        for name, ys in sf.items()
    }
    table = claim_table(
        pd.DataFrame([summary_row(n, "structural_ssim", s) for n, s in struct.items()]),
        THESIS_TABLE1,
        reference=BASE,
        profile=cfg.profile,
    )
    ev = cfg.evaluation
    ci = bootstrap_mean_difference(
        struct[GMM], struct[BASE], paired=True, n_boot=ev.bootstrap, level=ev.ci, seed=cfg.seed
    )
    table[f"difference {GMM} - {BASE} (95 % CI)"] = [_ci_text(ci) if v == GMM else "" for v in table.version]
    return table, struct


def table2_luminance(
    models: Mapping[str, Any],
    real: tuple[np.ndarray, np.ndarray],
    domains: list[str],
    test: SliceDataset,
    targets: Mapping[str, str],
    cfg: Config,
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """E3 / Table 2: luminance SSIM of (real target slice, test slice translated to the target) over random pairs,
    beside real-vs-real pairs of the target; ``real`` from :func:`real_slices` of the training slices, ``targets``
    {"A": domain, ...}. Returns the table and the translations {(model, target name): slices}."""
    x, dom = real
    ev, tables, fakes = cfg.evaluation, [], {}
    for tname, domain in targets.items():
        ref = list(x[dom == domains.index(domain)])
        rr = sample_pairs(len(ref), n_pairs=ev.n_pairs, seed=cfg.seed)
        lum = {"real vs real": pair_luminance(ref, rr, data_range=1.0, brain_only=True)}
        for name, h in models.items():
            fake = unit(translate_dataset(h, test, domain, seed=cfg.seed)[1])
            fakes[(name, tname)] = fake
            pairs = sample_pairs(len(ref), len(fake), n_pairs=ev.n_pairs, seed=cfg.seed)
            lum[name] = pair_luminance(ref, pairs, list(fake), data_range=1.0, brain_only=True)
        rows = pd.DataFrame([summary_row(k, "luminance_ssim", v) for k, v in lum.items()])
        t = claim_table(rows, THESIS_TABLE2[tname], reference=BASE, profile=cfg.profile)
        t.loc[t.version == "real vs real", "claim holds"] = ""
        ci = bootstrap_mean_difference(lum[GMM], lum[BASE], n_boot=ev.bootstrap, level=ev.ci, seed=cfg.seed)
        t[f"difference {GMM} - {BASE} (95 % CI)"] = [_ci_text(ci) if v == GMM else "" for v in t.version]
        tables.append(t.assign(target=tname))
    return pd.concat(tables, ignore_index=True), fakes


def table3_cross_scanner(
    x: np.ndarray, sf: Mapping[str, np.ndarray], site_of: np.ndarray, cfg: Config
) -> tuple[pd.DataFrame, int]:
    """E4 / Table 3: luminance SSIM of pairs of test slices from different scanners, before and after
    scanner-free translation, with the paired CI of post - pre. Returns the table and the number of pairs."""
    ev = cfg.evaluation
    cross = sample_pairs(len(x), n_pairs=ev.n_pairs, seed=cfg.seed, groups_a=list(site_of), relation="different")
    lum = {"unharmonized": pair_luminance(list(x), cross, data_range=1.0, brain_only=True)}
    lum |= {name: pair_luminance(list(ys), cross, data_range=1.0, brain_only=True) for name, ys in sf.items()}
    rows = pd.DataFrame([summary_row(k, "luminance_ssim", v) for k, v in lum.items()])
    table = claim_table(rows, THESIS_TABLE3, reference="unharmonized", profile=cfg.profile)
    cis = {
        k: bootstrap_mean_difference(
            v, lum["unharmonized"], paired=True, n_boot=ev.bootstrap, level=ev.ci, seed=cfg.seed
        )
        for k, v in lum.items()
        if k != "unharmonized"
    }
    table["post - pre (95 % CI)"] = [_ci_text(cis[v]) if v in cis else "" for v in table.version]
    return table, len(cross)


def e5_fid_kid(
    fakes: Mapping[tuple[str, str], np.ndarray],
    real: tuple[np.ndarray, np.ndarray],
    domains: list[str],
    targets: Mapping[str, str],
    cfg: Config,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """E5: FID and KID between real target slices and translations to the target, in the feature space of a
    scanner classifier trained on the training slices (no Inception network offline); mean and SD over the
    targets. Returns the table and the feature network's training log."""
    x, dom = real
    ev = cfg.evaluation
    extractor, log = train_feature_extractor(torch.from_numpy(x[:, None] * 2 - 1), dom, ev, seed=cfg.seed)
    rows = []
    for (name, tname), fake in fakes.items():
        ref = torch.from_numpy(x[dom == domains.index(targets[tname])][:, None] * 2 - 1)
        s = fid_kid(
            ref, torch.from_numpy(fake[:, None] * 2 - 1), extractor, ev.kid_subset_size, ev.kid_subsets, seed=cfg.seed
        )
        rows += [{"version": name, "metric": m, "target": tname, "value": s[m]} for m in ("fid", "kid")]
    values = pd.DataFrame(rows).groupby(["version", "metric"], sort=False)["value"]
    stats = values.agg(["mean", "std"]).fillna(0).reset_index().rename(columns={"std": "sd"})
    return claim_table(stats, THESIS_E5, reference=BASE, profile=cfg.profile, decimals=4), log
