"""Paper 1's appearance and structure evaluation (Table 2 and the structural SSIM) on the versions of a cohort.

``versions`` is ``{name: [volume, ...]}`` from ``harmlib.evaluation.versions.cohort_versions`` (the unharmonized
test scans first, then the model's targets and the baselines, in the same subject order). Each function returns
the claim table (paper value beside ours) and what the chapter's figures draw; notebook 07 writes and shows them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from harmlib.config import Config
from harmlib.evaluation.distributions import (
    off_diagonal,
    pair_luminance,
    pair_ssim_terms,
    pairwise_wasserstein,
    sample_pairs,
    samples_by_domain,
    site_mean_intensities,
)
from harmlib.evaluation.paper_values import PAPER1_STRUCTURAL
from harmlib.evaluation.tables import claim_table, paper1_values, summary_row

UNHARMONIZED, RANDOM_PAIRS = "unharmonized", "random pairs of subjects"


def table2_appearance(
    versions: dict[str, list[np.ndarray]], domains: Sequence[str], cfg: Config
) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]], dict[str, pd.DataFrame], int]:
    """Table 2: the Wasserstein distance between sites' distributions of mean brain intensity (off the diagonal
    of the site-by-site matrix) and the luminance SSIM of random pairs of scans from different sites, per
    version. Returns the table, each version's per-site mean intensities, its Wasserstein matrix and the number
    of cross-site pairs."""
    means = {v: samples_by_domain(site_mean_intensities(vs, domains)) for v, vs in versions.items()}
    matrices = {v: pairwise_wasserstein(m) for v, m in means.items()}
    n = len(versions[UNHARMONIZED])
    pairs = sample_pairs(n, n_pairs=cfg.evaluation.n_pairs, seed=cfg.seed, groups_a=list(domains), relation="different")
    rows = []
    for v, vs in versions.items():
        rows.append(summary_row(v, "wasserstein", off_diagonal(matrices[v])))
        rows.append(summary_row(v, "luminance_ssim", pair_luminance(vs, pairs, brain_only=True)))
    table = claim_table(pd.DataFrame(rows), paper1_values("table2"), reference=UNHARMONIZED, profile=cfg.profile)
    return table, means, matrices, len(pairs)


def structural_table(versions: dict[str, list[np.ndarray]], subjects: Sequence[str], cfg: Config) -> pd.DataFrame:
    """The structure term of SSIM between each harmonized scan and its original, per version, beside the same
    term between random pairs of different subjects (how much structure differs by anatomy alone)."""
    vols = versions[UNHARMONIZED]
    ev = cfg.evaluation
    rand = sample_pairs(
        len(vols), n_pairs=ev.n_struct_pairs, seed=cfg.seed, groups_a=list(subjects), relation="different"
    )
    rows = [summary_row(RANDOM_PAIRS, "structural_ssim", pair_ssim_terms(vols, rand, brain_only=True)["structure"])]
    same = np.stack([np.arange(len(vols))] * 2, 1)  # each scan with its own harmonized version
    for v, vs in versions.items():
        if v != UNHARMONIZED:
            rows.append(
                summary_row(v, "structural_ssim", pair_ssim_terms(vols, same, vs, brain_only=True)["structure"])
            )
    return claim_table(pd.DataFrame(rows), PAPER1_STRUCTURAL, reference=RANDOM_PAIRS, profile=cfg.profile)
