"""The "What reproduced" page: every claim of both papers, its verdict on this run, and why.

Each evaluation notebook writes a claim table (``metric, version, paper, ours, claim holds, profile``;
see `harmlib.evaluation.tables.claim_table`) to ``runs/<profile>/tables/``. `collect_claims` reads them all
and groups the rows into the papers' claims; a missing table is reported as "not run", never guessed.
The reasons are written per claim and per outcome: they explain the mechanism, the numbers come from the run.

Every claim belongs to the trained model(s) that produced its numbers (`CLAIM_MODELS`). A model's quality gate
(``gate_<model>.csv``, `harmlib.evaluation.gate`) comes first: when it fails, the claim's verdict is
"model below its quality gate" with the failing numbers, not "does not hold", since an untrained model says
nothing about the method. A model without a gate table is judged on its tables alone, and says so.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from harmlib.evaluation.gate import gate_failures, gate_passed
from harmlib.evaluation.tables import read_gates, tables_dir

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


# The trained models behind the claims, in the book's order, with the names a reader knows them by.
MODELS = {"ssim_harmonizer": "SSIM-guided harmonizer (paper 1)", "gmvae": "GM-VAE attribute encoder (paper 2, stage 1)",
          "gmm_drit": "GMM-DRIT (paper 2)", "drit": "DRIT++ (paper 2's baseline)"}
# Which models' gates a claim's table depends on (E2-E5 compare GMM-DRIT with DRIT++, so both count).
CLAIM_MODELS: dict[str, tuple[str, ...]] = {
    "paper1_table2": ("ssim_harmonizer",), "paper1_structural_ssim": ("ssim_harmonizer",), "paper1_table3": ("ssim_harmonizer",),
    "paper1_table4": ("ssim_harmonizer",), "traveling_subjects_paper1": ("ssim_harmonizer",),
    "paper2_e1_clustering": ("gmvae",),
    "paper2_table1": ("gmm_drit", "drit"), "paper2_table2": ("gmm_drit", "drit"), "paper2_table3": ("gmm_drit", "drit"),
    "paper2_e5_fid_kid": ("gmm_drit", "drit"), "traveling_subjects_paper2": ("gmm_drit",),
}
BELOW_GATE = "model below its quality gate"
VERDICTS = {True: "holds", False: "does not hold", None: "not measured"}


def gate_line(table: pd.DataFrame) -> str:
    """'gate passed', or 'model below its quality gate: <criterion value < threshold; ...>' for one model's gate."""
    if gate_passed(table):
        return "gate passed"
    return f"{BELOW_GATE}: " + ("; ".join(gate_failures(table)) or "no criterion with a threshold was measured")


def gate_status(gates: pd.DataFrame, model: str) -> list[str] | None:
    """None when ``model`` has no gate table; [] when it passed; else its failing criteria (value < threshold)."""
    g = gates[gates["model"] == model]
    if g.empty:
        return None
    return [] if gate_passed(g) else (gate_failures(g) or ["no criterion with a threshold was measured"])


def _gate_reason(models: tuple[str, ...], status: dict[str, list[str] | None]) -> tuple[bool, str]:
    """(any of the claim's models failed its gate, the text appended to or replacing the reason)."""
    failed = {m: status.get(m) for m in models if status.get(m)}
    if failed:
        who = (lambda m: "the model") if len(models) == 1 else (lambda m: m)
        return True, " — ".join(f"{who(m)} failed its gate: {'; '.join(f)}" for m, f in failed.items())
    if not models:
        return False, ""
    missing = [m for m in models if status.get(m) is None]
    if len(missing) == len(models):
        return False, " (no quality gate measured)"
    if missing:
        return False, f" (no quality gate measured for {', '.join(missing)}; the others passed theirs)"
    return False, " (the model passed its quality gate)" if len(models) == 1 else " (the models passed their quality gates)"


def collect_claims(cfg: Any) -> pd.DataFrame:
    """One row per claim: the verdict on this run and why.

    ``verdict``: holds, does not hold, not measured (its table is missing or says why), or "model below its
    quality gate" (then ``holds`` is None and ``why`` gives the failing numbers). ``models``: whose gates count.
    """
    gates = read_gates(cfg)
    status = {m: gate_status(gates, m) for m in dict.fromkeys([*MODELS, *gates["model"]])}
    out = []
    for claim, table, metric, versions, why_yes, why_no in CLAIMS:
        models = CLAIM_MODELS.get(table, ())
        row = {"claim": claim, "verdict": VERDICTS[None], "holds": None, "ours": "", "paper": "", "why": "", "table": table, "models": ", ".join(models)}
        path = tables_dir(cfg) / f"{table}.csv"
        if not path.is_file():
            out.append(row | {"why": f"not run: {path} is missing"})
            continue
        df = pd.read_csv(path)
        if "note" in df.columns:  # e.g. no traveling-subject truth on real data
            out.append(row | {"why": str(df["note"].iloc[0])})
            continue
        holds, ours, paper = _verdict(df, metric, versions)
        row |= {"ours": ours, "paper": paper}
        if holds is None:
            out.append(row | {"why": "no comparable rows in the table"})
            continue
        failed, gate_text = _gate_reason(models, status)
        if failed:
            row |= {"verdict": BELOW_GATE, "why": f"{gate_text} (its tables, not counted, say the claim {VERDICTS[holds]})"}
        else:
            row |= {"verdict": VERDICTS[holds], "holds": holds, "why": (why_yes if holds else why_no) + gate_text}
        out.append(row)
    return pd.DataFrame(out)


def _verdict_of(r: Any) -> str:
    verdict = getattr(r, "verdict", None)
    if isinstance(verdict, str) and verdict:
        return verdict
    return VERDICTS[None if pd.isna(r.holds) else bool(r.holds)]


def claims_markdown(claims: pd.DataFrame) -> str:
    """The page's list: one bullet per claim with its verdict, our numbers, the paper's, and the reason."""
    lines = []
    for r in claims.itertuples(index=False):
        lines.append(f"- **{_verdict_of(r)}**: {r.claim}. Ours: {r.ours or 'n/a'}. Paper: {r.paper or 'n/a'}. *Why:* {r.why} "
                     f"(table `{r.table}.csv`).")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, bool) or str(v) in ("True", "False"):
        return "yes" if str(v) == "True" else "**no**"
    if isinstance(v, float):
        return "" if pd.isna(v) else f"{v:.4g}"
    return str(v).replace("|", "\\|")


def gates_markdown(gates: pd.DataFrame, models: Any = tuple(MODELS)) -> str:
    """Each model's quality gate, first on the What-reproduced page: its verdict line and a table
    (criterion, value, threshold, passed); a model without a gate table gets one line saying so."""
    blocks = []
    for m in dict.fromkeys([*models, *gates["model"]]):
        g = gates[gates["model"] == m]
        name = f"**{MODELS.get(m, m)}** (`{m}`)"
        if g.empty:
            blocks.append(f"{name}: no quality gate computed by its chapter yet; its claims below are judged on their tables alone.")
            continue
        profile = f", profile {g['profile'].iloc[0]}" if "profile" in g.columns else ""
        rows = ["| criterion | value | threshold | passed |", "|---|---|---|---|"]
        rows += [f"| {_cell(r.criterion)} | {_cell(r.value)} | {_cell(r.threshold)} | {_cell(r.passed)} |" for r in g.itertuples(index=False)]
        blocks.append(f"{name}{profile}: {gate_line(g)}\n\n" + "\n".join(rows))
    return "\n\n".join(blocks)
