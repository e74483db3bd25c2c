"""The "What reproduced" page: every claim of both papers, its verdict on this run, and why.

Each evaluation notebook writes a claim table (``metric, version, paper, ours, claim holds, profile``;
see `harmlib.evaluation.tables.claim_table`) to ``runs/<profile>/tables/``. `collect_claims` reads them all
and groups the rows into the papers' claims; a missing table is reported as "not run", never guessed.
Each verdict comes with both sides of its comparison (our version and the one it is compared with: the
unharmonized data, random pairs, one cluster, or DRIT++) and a reason built from those numbers.

Every claim belongs to the trained model(s) that produced its numbers (`CLAIM_MODELS`). A model's quality gate
(``gate_<model>.csv``, `harmlib.evaluation.gate`) comes first: when it fails, the claim's verdict is
"model below its quality gate" with the failing numbers, not "does not hold", since an untrained model says
nothing about the method. A model without a gate table is judged on its tables alone, and says so.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harmlib.aguit.model import KIND as HARMONIZER
from harmlib.drit.model import DRIT as DRIT_KIND
from harmlib.drit.model import GMM_DRIT, VARIANTS
from harmlib.evaluation.gate import gate_failures, gate_passed
from harmlib.evaluation.tables import BETTER, read_gates, tables_dir
from harmlib.gmvae.model import KIND as GMVAE

# (claim, table, metric, the versions it is about, the version it is compared with). The reason shown with each
# verdict is built from the measured numbers of both sides (see `_compare`), never written before the run.
UNH, DRIT = "unharmonized", "DRIT++"
CLAIMS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    (
        "Paper 1, Table 2: harmonization lowers the Wasserstein distance between sites' mean-intensity distributions",
        "paper1_table2",
        "wasserstein",
        ("A", "B", "agnostic"),
        UNH,
    ),
    (
        "Paper 1, Table 2: harmonization raises the luminance SSIM between images of different sites",
        "paper1_table2",
        "luminance_ssim",
        ("A", "B", "agnostic"),
        UNH,
    ),
    (
        "Paper 1: harmonized vs original structural SSIM stays far above that of random pairs of subjects",
        "paper1_structural_ssim",
        "structural_ssim",
        ("A", "B", "agnostic"),
        "random pairs of subjects",
    ),
    (
        "Paper 1, Table 3: brain-age MAE is lower when trained on harmonized data",
        "paper1_table3",
        "mae",
        ("A", "B", "agnostic"),
        UNH,
    ),
    (
        "Paper 1, Table 3: brain-age R2 is higher when trained on harmonized data",
        "paper1_table3",
        "r2",
        ("A", "B", "agnostic"),
        UNH,
    ),
    (
        "Paper 1, Table 4: AD-vs-HC AUC is higher when trained on harmonized data",
        "paper1_table4",
        "auc",
        ("A", "B", "agnostic"),
        UNH,
    ),
    (
        "Paper 1, Table 4: AD-vs-HC balanced accuracy is higher when trained on harmonized data",
        "paper1_table4",
        "balanced_accuracy",
        ("A", "B", "agnostic"),
        UNH,
    ),
    (
        "Paper 2, E1: the GM-VAE attribute space clusters slices by scanner (ACC above a one-cluster answer)",
        "paper2_e1_clustering",
        "acc",
        ("GM-VAE",),
        "one cluster",
    ),
    (
        "Paper 2, Table 1 (E2): scanner-free outputs keep the input's structure better with GMM-DRIT than DRIT++",
        "paper2_table1",
        "structural_ssim",
        ("GMM-DRIT",),
        DRIT,
    ),
    (
        "Paper 2, Table 2 (E3): domain-to-domain translations match the target's luminance better with GMM-DRIT",
        "paper2_table2",
        "luminance_ssim",
        ("GMM-DRIT",),
        DRIT,
    ),
    (
        "Paper 2, Table 3 (E4): cross-scanner luminance SSIM rises after scanner-free translation (GMM-DRIT)",
        "paper2_table3",
        "luminance_ssim",
        ("GMM-DRIT",),
        UNH,
    ),
    (
        "Paper 2, E5: FID (learned features) of GMM-DRIT translations is lower than DRIT++'s",
        "paper2_e5_fid_kid",
        "fid",
        ("GMM-DRIT",),
        DRIT,
    ),
    (
        "Paper 2, E5: KID (learned features) of GMM-DRIT translations is lower than DRIT++'s",
        "paper2_e5_fid_kid",
        "kid",
        ("GMM-DRIT",),
        DRIT,
    ),
    (
        "Beyond the papers: harmonizing to A or B brings a test scan closer (SSIM) to the same subject's true scan there",
        "traveling_subjects_paper1",
        "ssim_to_truth",
        ("A", "B"),
        UNH,
    ),
    (
        "Beyond the thesis: GMM-DRIT harmonizing a test volume to A or B (slice by slice) brings it closer to the subject's true scan there",
        "traveling_subjects_paper2",
        "ssim_to_truth",
        ("GMM-DRIT A", "GMM-DRIT B"),
        UNH,
    ),
)


def _long(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """A claim table's rows of ``metric``: version, target ("" where the table has none), ours (as printed),
    mean, paper, holds (every table is in ``tables.claim_table``'s layout)."""
    rows = df[df["metric"] == metric]
    target = rows["target"].astype(str) if "target" in rows.columns else pd.Series("", index=rows.index)
    return pd.DataFrame(
        {
            "version": rows["version"].astype(str),
            "target": target,
            "ours": rows["ours"].astype(str),
            "mean": rows["ours"].astype(str).str.split("±").str[0].astype(float),
            "paper": rows["paper"].astype(object).where(rows["paper"].notna(), "").astype(str),
            "holds": rows["claim holds"].astype(str),
        }
    )


def _compare(df: pd.DataFrame, metric: str, versions: tuple[str, ...], reference: str) -> dict[str, Any]:
    """The claim's verdict and both sides of it, from one table.

    Returns holds (True/False/None: every compared row in the claimed direction, as the table's own verdict
    column says), ours and compared (the printed values, "version: value"; per target where the table has
    targets), paper (the paper's values of both sides, where printed) and reason (each comparison with its
    numbers and the direction the paper claims).
    """
    rows = _long(df, metric)
    mine = rows[rows["version"].isin(versions) & rows["holds"].isin(["True", "False"])]
    if mine.empty:
        return {"holds": None, "ours": "", "compared": "", "paper": "", "reason": "no comparable rows in the table"}
    ref = rows[rows["version"] == reference].set_index("target")
    higher = BETTER.get(metric) == "higher"

    def label(r: Any) -> str:  # "GMM-DRIT (A)" where one version is measured at several targets
        return f"{r.version} ({r.target})" if r.target and not r.version.endswith(r.target) else r.version

    ours, compared, paper, ref_paper, reasons = [], [], [], [], []
    for r in mine.itertuples(index=False):
        name = label(r)
        ours.append(f"{name}: {r.ours}")
        if r.target in ref.index:
            other = ref.loc[r.target]
            other = other.iloc[0] if isinstance(other, pd.DataFrame) else other
            where = f" ({r.target})" if r.target else ""  # the reference at the same target
            compared.append(f"{reference}{where}: {other['ours']}")
            sign = ">" if r.mean > other["mean"] else "<" if r.mean < other["mean"] else "="
            reasons.append(
                f"{name} {r.ours.split('±')[0].strip()} {sign} {reference}{where} {str(other['ours']).split('±')[0].strip()}"
            )
            if other["paper"]:
                ref_paper.append(f"{reference}{where} {other['paper']}")
        if r.paper:
            paper.append(f"{name} {r.paper}")
    holds = bool(mine["holds"].eq("True").all())
    side = "higher" if higher else "lower"
    metric_name = "SSIM to the truth (and PSNR)" if metric == "ssim_to_truth" else metric
    failing = [label(r) for r in mine.itertuples(index=False) if r.holds != "True"]
    verdict = (
        f"every version {side} than {reference}" if holds else f"not {side} than {reference}: {', '.join(failing)}"
    )
    reason = f"{metric_name}, {side} is better: " + "; ".join(reasons) + f" ({verdict})"
    ref_paper = list(dict.fromkeys(ref_paper))  # one reference value may serve every version
    printed = "; ".join(paper or ["n/a"]) + (" vs " + "; ".join(ref_paper) if ref_paper else "")
    return {
        "holds": holds,
        "ours": "; ".join(ours),
        "compared": "; ".join(dict.fromkeys(compared)),
        "paper": printed if paper or ref_paper else "",
        "reason": reason,
    }


# The trained models behind the claims, in the book's order, with the names a reader knows them by.
MODELS = {
    HARMONIZER: "SSIM-guided harmonizer (paper 1)",
    GMVAE: "GM-VAE attribute encoder (paper 2, stage 1)",
    GMM_DRIT: "GMM-DRIT (paper 2)",
    DRIT_KIND: "DRIT++ (paper 2's baseline)",
}
# Which models' gates a claim's table depends on (E2-E5 compare GMM-DRIT with DRIT++, so both count).
CLAIM_MODELS: dict[str, tuple[str, ...]] = {
    "paper1_table2": (HARMONIZER,),
    "paper1_structural_ssim": (HARMONIZER,),
    "paper1_table3": (HARMONIZER,),
    "paper1_table4": (HARMONIZER,),
    "traveling_subjects_paper1": (HARMONIZER,),
    "paper2_e1_clustering": (GMVAE,),
    "paper2_table1": VARIANTS,
    "paper2_table2": VARIANTS,
    "paper2_table3": VARIANTS,
    "paper2_e5_fid_kid": VARIANTS,
    "traveling_subjects_paper2": (GMM_DRIT,),
}
BELOW_GATE = "model below its quality gate"
VERDICTS = {True: "holds", False: "does not hold", None: "not measured"}
NOT_RUN = "not run"


def gate_line(table: pd.DataFrame) -> str:
    """'gate passed', or 'model below its quality gate: <criterion value < threshold; ...>' for one model's gate."""
    if gate_passed(table):
        return "gate passed"
    return f"{BELOW_GATE}: " + ("; ".join(gate_failures(table)) or "no criterion with a threshold was measured")


def headline(table: pd.DataFrame) -> str:
    """A model chapter's headline numbers from its gate: the margin over Nyul and the share of the rescan gap closed
    at each target (what a sceptic reads first), or '' when the gate has no rescan rows (real data)."""
    crit = table["criterion"].astype(str)
    parts = []
    for target in ("A", "B"):
        margin = table[crit.str.contains(f"-> {target}: scale-invariant SSIM to truth, model minus Nyul", regex=False)]
        gap = table[crit.str.contains(f"-> {target}: share of the rescan gap closed", regex=False)]
        if len(margin) and len(gap):
            m, g = float(margin["value"].iloc[0]), float(gap["value"].iloc[0])
            share = f"{g:.0%}".replace("-0%", "0%")  # a share that rounds to zero has no sign
            parts.append(f"-> {target}: {m:+.4f} over Nyul, {share} of the rescan gap closed")
    return ("headline: " + "; ".join(parts)) if parts else ""


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
    return False, " (the model passed its quality gate)" if len(
        models
    ) == 1 else " (the models passed their quality gates)"


def collect_claims(cfg: Any) -> pd.DataFrame:
    """One row per claim: the verdict on this run and why.

    ``verdict``: holds, does not hold, not measured (its table is missing or says why), or "model below its
    quality gate" (then ``holds`` is None and ``why`` gives the failing numbers). ``models``: whose gates count.
    """
    gates = read_gates(cfg)
    status = {m: gate_status(gates, m) for m in dict.fromkeys([*MODELS, *gates["model"]])}
    out = []
    for claim, table, metric, versions, reference in CLAIMS:
        models = CLAIM_MODELS.get(table, ())
        row = {
            "claim": claim,
            "verdict": VERDICTS[None],
            "holds": None,
            "ours": "",
            "compared": "",
            "paper": "",
            "profile": "",
            "why": "",
            "table": table,
            "models": ", ".join(models),
        }
        path = tables_dir(cfg) / f"{table}.csv"
        if not path.is_file():
            out.append(row | {"verdict": NOT_RUN, "why": f"not run: {path} is missing"})
            continue
        df = pd.read_csv(path)
        row["profile"] = ", ".join(map(str, df["profile"].dropna().unique())) if "profile" in df.columns else ""
        if "note" in df.columns:  # e.g. no traveling-subject truth on real data
            out.append(row | {"why": str(df["note"].iloc[0])})
            continue
        c = _compare(df, metric, versions, reference)
        row |= {"ours": c["ours"], "compared": c["compared"], "paper": c["paper"]}
        if c["holds"] is None:
            out.append(row | {"why": c["reason"]})
            continue
        failed, gate_text = _gate_reason(models, status)
        if failed:
            row |= {"verdict": BELOW_GATE, "why": f"{gate_text}; its tables, not counted, read: {c['reason']}"}
        else:
            row |= {"verdict": VERDICTS[c["holds"]], "holds": c["holds"], "why": c["reason"] + gate_text}
        out.append(row)
    return pd.DataFrame(out)


def _verdict_of(r: Any) -> str:
    verdict = getattr(r, "verdict", None)
    if isinstance(verdict, str) and verdict:
        return verdict
    return VERDICTS[None if pd.isna(r.holds) else bool(r.holds)]


def claims_markdown(claims: pd.DataFrame) -> str:
    """The page's table: one row per claim with its verdict, our value and the compared value side by side,
    the paper's values of both sides, the profile that made ours, and the reason (from the numbers)."""
    rows = ["| verdict | claim | ours | compared with | paper | profile | why |", "|---|---|---|---|---|---|---|"]
    for r in claims.itertuples(index=False):
        cells = [
            f"**{_verdict_of(r)}**",
            r.claim,
            r.ours or "n/a",
            getattr(r, "compared", "") or "n/a",
            r.paper or "n/a",
            getattr(r, "profile", "") or "",
            f"{r.why} (table `{r.table}.csv`)",
        ]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


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
            blocks.append(
                f"{name}: no quality gate computed by its chapter yet; its claims below are judged on their tables alone."
            )
            continue
        profile = f", profile {g['profile'].iloc[0]}" if "profile" in g.columns else ""
        rows = ["| criterion | value | threshold | passed |", "|---|---|---|---|"]
        rows += [
            f"| {_cell(r.criterion)} | {_cell(r.value)} | {_cell(r.threshold)} | {_cell(r.passed)} |"
            for r in g.itertuples(index=False)
        ]
        blocks.append(f"{name}{profile}: {gate_line(g)}\n\n" + "\n".join(rows))
    return "\n\n".join(blocks)


def scorecard_markdown(claims: pd.DataFrame, link: str = "notebooks/10_what_reproduced.ipynb") -> str:
    """The landing page's scorecard: the counts, then one short row per claim (verdict, claim, ours against the
    paper), each claim linked to the What-reproduced page that shows why."""
    head = f"{scorecard_head(claims)} ([why, claim by claim]({link}))."
    rows = ["| verdict | claim | ours | paper |", "|---|---|---|---|"]
    for r in claims.itertuples(index=False):
        ours = str(getattr(r, "ours", "") or "n/a")
        rows.append(
            f"| **{r.verdict}** | {_cell(r.claim)} | {_cell(ours)} | {_cell(getattr(r, 'paper', '') or 'n/a')} |"
        )
    return head + "\n\n" + "\n".join(rows)


def scorecard_head(claims: pd.DataFrame) -> str:
    """'**k of n claims hold**, j do not, m rest on a model below its quality gate'."""
    counts = claims["verdict"].value_counts()
    return (
        f"**{counts.get('holds', 0)} of {len(claims)} claims hold**, {counts.get('does not hold', 0)} do not, "
        f"{counts.get(BELOW_GATE, 0)} rest on a model below its quality gate"
    )


def key_result(cfg: Any, tables: Any = (), models: Any = (), lines: Any = ()) -> str:
    """A chapter's key-result box (a markdown list, glued into the box that opens the chapter): each of ``models``
    with its gate's verdict and headline numbers, each claim read from ``tables`` with its verdict and both sides,
    then ``lines``, the chapter's own facts. Read after the chapter wrote its tables, so it is this run's."""
    gates = read_gates(cfg)
    out = []
    for m in models:
        g = gates[gates["model"] == m]
        if g.empty:
            out.append(f"- **{MODELS.get(m, m)}**: no quality gate measured")
            continue
        judged = int((g["threshold"].astype(str) != "").sum())  # read as text: "" marks an informational row
        missed = len(gate_failures(g))
        verdict = (
            "passes its quality gate"
            if gate_passed(g)
            else f"below its quality gate ({missed} of {judged} criteria missed)"
        )
        head = headline(g).removeprefix("headline: ")
        out.append(f"- **{MODELS.get(m, m)}**: {verdict}" + (f"; {head}" if head else ""))
    claims = collect_claims(cfg)
    for r in claims[claims["table"].isin(list(tables))].itertuples(index=False):
        sides = f" (ours {r.ours}, compared with {r.compared})" if r.ours else ""
        out.append(f"- **{r.verdict}**: {r.claim}{sides}")
    out += [f"- {line}" for line in lines]
    return "\n".join(out) or "- nothing measured yet"


# The downstream numbers a practitioner compares first: per version, each task's headline metrics (Tables 3-4).
DOWNSTREAM = {
    "paper1_table3": {"mae": "brain age MAE (years)", "r2": "brain age R2"},
    "paper1_table4": {"auc": "AD vs HC AUC", "balanced_accuracy": "AD vs HC balanced accuracy"},
}


def downstream_beside_combat(cfg: Any) -> pd.DataFrame | None:
    """Paper 1's Tables 3-4 side by side, one row per version (unharmonized, the harmonizer's targets, the classical
    baselines, ComBat and harmonizer 1 + ComBat), mean ± SD over the folds, and which version the paper compared
    with (the unharmonized data; ComBat is this book's addition). None before chapter 08 ran."""
    cols = {}
    for table, metrics in DOWNSTREAM.items():
        path = tables_dir(cfg) / f"{table}.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "note" in df.columns:
            continue
        for metric, name in metrics.items():
            rows = df[df["metric"] == metric]
            cols[name] = dict(zip(rows["version"], rows["ours"]))
    if not cols:
        return None
    out = pd.DataFrame(cols).fillna("").rename_axis("version").reset_index()
    paper = {UNH: "the reference", **{t: "compared with unharmonized" for t in ("A", "B", "agnostic")}}
    out["in the paper"] = [paper.get(v, "added here") for v in out["version"]]
    out["version"] = [f"harmonizer 1 -> {v}" if v in ("A", "B", "agnostic") else v for v in out["version"]]
    return out
