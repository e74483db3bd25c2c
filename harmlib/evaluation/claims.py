"""The "What reproduced" page: every claim of both papers, its verdict on this run, and why.

Each evaluation notebook writes a claim table (``metric, version, paper, ours, claim holds, profile``;
see `harmlib.evaluation.tables.claim_table`) to ``runs/<profile>/tables/``. `collect_claims` reads them all
and groups the rows into the papers' claims; a missing table is reported as "not run", never guessed.
The reasons are written per claim and per outcome: they explain the mechanism, the numbers come from the run.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from harmlib.evaluation.tables import tables_dir

# (claim, table, metric, versions, reason if it holds, reason if it does not)
CLAIMS: tuple[tuple[str, str, str, tuple[str, ...], str, str], ...] = (
    ("Paper 1, Table 2: harmonization lowers the Wasserstein distance between sites' mean-intensity distributions",
     "paper1_table2", "wasserstein", ("A", "B", "agnostic"),
     "every output is mapped back with one target scale, so site-specific intensity scales disappear",
     "the model's outputs keep a site-dependent intensity level"),
    ("Paper 1, Table 2: harmonization raises the luminance SSIM between images of different sites",
     "paper1_table2", "luminance_ssim", ("A", "B", "agnostic"),
     "local mean intensities of different sites become alike",
     "the generator has not learned the sites' local intensity patterns (e.g. bias fields) in this budget"),
    ("Paper 1: harmonized vs original structural SSIM stays far above that of random pairs of subjects",
     "paper1_structural_ssim", "structural_ssim", ("A", "B", "agnostic"),
     "the structure code carries the anatomy through the generator",
     "the CPU-budget model blurs: its structure code is coarser than the data's grid and trained for minutes"),
    ("Paper 1, Table 3: brain-age MAE is lower when trained on harmonized data",
     "paper1_table3", "mae", ("A", "B", "agnostic"),
     "site effects that correlate with age no longer mislead the regressor",
     "a few dozen subjects per cohort: fold-to-fold SD is as large as the differences, and blurred outputs lose age cues"),
    ("Paper 1, Table 3: brain-age R2 is higher when trained on harmonized data",
     "paper1_table3", "r2", ("A", "B", "agnostic"),
     "site effects that correlate with age no longer mislead the regressor",
     "a few dozen subjects per cohort: fold-to-fold SD is as large as the differences, and blurred outputs lose age cues"),
    ("Paper 1, Table 4: AD-vs-HC AUC is higher when trained on harmonized data",
     "paper1_table4", "auc", ("A", "B", "agnostic"),
     "the classifier cannot use the site (whose AD fraction differs) as a shortcut",
     "six or seven test subjects per fold: the AUC moves by a subject's rank; blurred outputs lose atrophy cues"),
    ("Paper 1, Table 4: AD-vs-HC balanced accuracy is higher when trained on harmonized data",
     "paper1_table4", "balanced_accuracy", ("A", "B", "agnostic"),
     "the classifier cannot use the site as a shortcut",
     "six or seven test subjects per fold: one subject changes the balanced accuracy by over 0.1"),
    ("Paper 2, E1: the GM-VAE attribute space clusters slices by scanner (ACC above a one-cluster answer)",
     "paper2_e1_clustering", "acc", ("GM-VAE",),
     "scanners differ in contrast, which the mixture components pick up",
     "the scanners' differences are subtle next to the anatomy in this budget"),
    ("Paper 2, Table 1 (E2): scanner-free outputs keep the input's structure better with GMM-DRIT than DRIT++",
     "paper2_table1", "structural_ssim", ("GMM-DRIT",),
     "the frozen, pretrained attribute space leaves anatomy to the content code",
     "both models were trained for minutes; DRIT++ is not (yet) collapsing as in the thesis"),
    ("Paper 2, Table 2 (E3): domain-to-domain translations match the target's luminance better with GMM-DRIT",
     "paper2_table2", "luminance_ssim", ("GMM-DRIT",),
     "the target's mixture component carries its appearance",
     "in this budget the translations of both models are equally close to the target's luminance"),
    ("Paper 2, Table 3 (E4): cross-scanner luminance SSIM rises after scanner-free translation (GMM-DRIT)",
     "paper2_table3", "luminance_ssim", ("GMM-DRIT",),
     "scanner-free outputs share one appearance",
     "the scanner-free code does not yet map every scanner to one appearance"),
    ("Paper 2, E5: FID (learned features) of GMM-DRIT translations is lower than DRIT++'s",
     "paper2_e5_fid_kid", "fid", ("GMM-DRIT",),
     "translations are closer to real target slices in the scanner classifier's feature space",
     "features come from a small scanner classifier trained here, not Inception; both models are CPU-budget"),
    ("Paper 2, E5: KID (learned features) of GMM-DRIT translations is lower than DRIT++'s",
     "paper2_e5_fid_kid", "kid", ("GMM-DRIT",),
     "translations are closer to real target slices in the scanner classifier's feature space",
     "features come from a small scanner classifier trained here, not Inception; both models are CPU-budget"),
    ("Beyond the papers: harmonizing to A or B brings a test scan closer (SSIM and PSNR) to the same subject's true scan there",
     "traveling_subjects_paper1", "closer than before", ("A", "B"),
     "the output has the target's appearance and keeps the anatomy",
     "the CPU-budget model's outputs are blurred, which costs more SSIM than the better contrast gains"),
    ("Beyond the thesis: GMM-DRIT harmonizing a test volume to A or B (slice by slice) brings it closer to the subject's true scan there",
     "traveling_subjects_paper2", "closer than before", ("GMM-DRIT A", "GMM-DRIT B"),
     "the target's mixture component carries its appearance and the content code the anatomy",
     "the CPU-budget 2D model loses detail and slice-to-slice consistency, which costs more than the better contrast gains"),
)


def _verdict(df: pd.DataFrame, metric: str, versions: tuple[str, ...]) -> tuple[Any, str, str]:
    """(holds: True/False/None, ours, paper) over the rows of ``versions`` for ``metric``."""
    col = "claim holds" if "claim holds" in df.columns else "closer than before"
    rows = df[(df.get("metric", pd.Series(metric, index=df.index)) == metric) & df["version"].isin(versions)] if "metric" in df.columns else df[df["version"].isin(versions)]
    rows = rows[rows[col].astype(str).isin(["True", "False"])]
    if rows.empty:
        return None, "", ""
    holds = rows[col].astype(str).eq("True")
    names = rows["version"] + (" to " + rows["target"].astype(str) if "target" in rows.columns and "closer than before" not in rows.columns else "")
    ours = "; ".join(f"{v}: {o}" for v, o in zip(names, rows.get("ours", rows.get("SSIM to truth", pd.Series("", index=rows.index)))))
    paper = "; ".join(f"{v}: {p}" for v, p in zip(names, rows["paper"])) if "paper" in rows.columns else "(not in the paper)"
    return bool(holds.all()), ours, paper if paper.replace(";", "").replace(":", "").strip() else ""


def collect_claims(cfg: Any) -> pd.DataFrame:
    """One row per claim: the verdict on this run (True, False, or None when its table is missing) and why."""
    out = []
    for claim, table, metric, versions, why_yes, why_no in CLAIMS:
        path = tables_dir(cfg) / f"{table}.csv"
        if not path.is_file():
            out.append({"claim": claim, "holds": None, "ours": "", "paper": "", "why": f"not run: {path} is missing", "table": table})
            continue
        df = pd.read_csv(path)
        if "note" in df.columns:  # e.g. no traveling-subject truth on real data
            out.append({"claim": claim, "holds": None, "ours": "", "paper": "", "why": str(df["note"].iloc[0]), "table": table})
            continue
        holds, ours, paper = _verdict(df, metric, versions)
        why = "no comparable rows in the table" if holds is None else (why_yes if holds else why_no)
        out.append({"claim": claim, "holds": holds, "ours": ours, "paper": paper, "why": why, "table": table})
    return pd.DataFrame(out)


def claims_markdown(claims: pd.DataFrame) -> str:
    """The page's list: one bullet per claim with its verdict, our numbers, the paper's, and the reason."""
    mark = {True: "**holds**", False: "**does not hold**", None: "**not measured**"}
    lines = []
    for r in claims.itertuples(index=False):
        holds = None if pd.isna(r.holds) else bool(r.holds)
        lines.append(f"- {mark[holds]}: {r.claim}. Ours: {r.ours or 'n/a'}. Paper: {r.paper or 'n/a'}. *Why:* {r.why} "
                     f"(table `{r.table}.csv`).")
    return "\n".join(lines)
