"""What each part of a model adds: the same model trained with its parts switched on one at a time, at one budget.

Rows (config overrides of the cpu profile), from the paper's generator to the cpu profile's:

* harmonizer 1: the paper's G (it draws the image), + residual (y = x + G), + landmark curve, + site field (the cpu
  profile's model);
* the 2D models: DRIT++ and GMM-DRIT with the paper's G, then with the cpu levers: the thesis's comparison at the
  cpu budget (does DRIT++'s scanner-free output lose the anatomy when its generator draws the image?).

Each row is summarized from its quality gate (:func:`ablation_row`): reconstruction, translation, the
scale-invariant SSIM to the truth at A and B, the share of the rescan gap closed, the margin over Nyul, the
tissue-contrast margin, structure, and for the 2D models the scanner-free structural SSIM; with its budget
(steps, minutes). ``benchmarks/ablation.py`` trains the rows and writes the table; the chapters show it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from harmlib.evaluation.gate import gate_criteria, gate_failures  # the gate's own reading of its table

STEPS = {"harmonizer": 100, "slices": 150}  # the ablations' budgets (benchmarks/ablation.py's default --steps)

NO_LEVERS = {
    "residual": False,
    "landmark_curve": False,
    "site_field_mm": 0.0,
    "weights.hist": 0.0,
    "weights.field": 0.0,
}
RESIDUAL = NO_LEVERS | {"residual": True}
CURVE = RESIDUAL | {"landmark_curve": True, "weights.hist": None}  # None: the profile's value
CPU = {}  # the cpu profile's model: every lever

HARMONIZER_ROWS: dict[str, dict] = {
    "the paper's generator (G draws the image)": NO_LEVERS,
    "+ residual (y = x + G)": RESIDUAL,
    "+ landmark curve": CURVE,
    "+ site field (the cpu profile)": CPU,
}
SLICE_ROWS: dict[str, tuple[str, dict]] = {  # (variant, overrides of the drit section)
    "DRIT++, the paper's generator": ("drit", NO_LEVERS),
    "DRIT++ with the cpu levers": ("drit", CPU),
    "GMM-DRIT with the cpu levers": ("gmm_drit", CPU),
    "GMM-DRIT, the paper's generator": ("gmm_drit", NO_LEVERS),  # needs a slice-view GM-VAE (no field to read)
}


def overrides(section: str, row: Mapping[str, float | bool | None]) -> dict[str, float | bool]:
    """A row's dotted config overrides for ``section`` (None: keep the profile's value)."""
    return {f"{section}.{k}": v for k, v in row.items() if v is not None}


def _value(table: pd.DataFrame, pattern: str) -> float:
    """The mean value of the gate rows whose criterion matches ``pattern`` (NaN when none)."""
    rows = table[table["criterion"].astype(str).str.contains(pattern, regex=True)]
    vals = pd.to_numeric(rows["value"], errors="coerce").dropna()
    return float(vals.mean()) if len(vals) else float("nan")


def _si(table: pd.DataFrame, target: str) -> float:
    """The model's scale-invariant SSIM to the truth at ``target`` (the gate's context row before / model / ...)."""
    rows = table[table["criterion"].astype(str).str.startswith(f"-> {target}: scale-invariant SSIM to truth")]
    if not len(rows):
        return float("nan")
    return float(re.split(r"\s*/\s*", str(rows["value"].iloc[0]))[1])


def ablation_row(name: str, table: pd.DataFrame, trav: pd.DataFrame, steps: int, minutes: float) -> dict:
    """One row of an ablation table from a model's gate table and its per-case traveling table."""
    free = trav[trav["target"].isin(["scanner-free", "agnostic"])]["structure vs original"]
    return {
        "model": name,
        "budget": f"{steps} steps, {minutes:.1f} min",
        "criteria missed": f"{len(gate_failures(table))} of {len(gate_criteria(table))}",
        "reconstruction": _value(table, r"^reconstruction SSIM"),
        "translation": _value(table, r"^translation accuracy"),
        "SSIM to truth A": _si(table, "A"),
        "SSIM to truth B": _si(table, "B"),
        "gap closed A": _value(table, r"-> A: share of the rescan gap closed$"),
        "gap closed B": _value(table, r"-> B: share of the rescan gap closed$"),
        "margin over Nyul A": _value(table, r"-> A: scale-invariant SSIM to truth, model minus Nyul"),
        "margin over Nyul B": _value(table, r"-> B: scale-invariant SSIM to truth, model minus Nyul"),
        "tissue margin over Nyul": _value(table, r"tissue-contrast error, Nyul's minus the model's"),
        "structure": _value(table, r"^structural SSIM harmonized vs original"),
        "site-free structure": float(free.mean()) if len(free) else np.nan,
    }


COMMITTED = Path("benchmarks") / "results"  # the measured tables that ship with the repository (dated by git)


def run_suffix(rows: str, seed: int, steps: int, tag: str = "") -> str:
    """What tells one ablation run from another in its folder and table names: the seed (none for 0), the budget
    (none for the ablation's own, ``STEPS``) and a probe's tag."""
    return (
        (f"_seed{seed}" if seed else "")
        + (f"_steps{steps}" if steps != STEPS[rows] else "")
        + (f"_{tag}" if tag else "")
    )


def table_name(rows: str, seed: int, steps: int, tag: str = "", only: list[int] | None = None) -> str:
    """The table ``benchmarks/ablation.py`` writes for one run (``only``: the rows it ran, when not all)."""
    return (
        f"ablation_{rows}{run_suffix(rows, seed, steps, tag)}"
        + ("_rows" + "-".join(map(str, only)) if only else "")
        + ".csv"
    )


def parse_table_name(rows: str, name: str) -> tuple[int, int, str] | None:
    """(seed, steps, tag) of a table :func:`table_name` wrote for ``rows``; None for any other file."""
    m = re.fullmatch(
        rf"ablation_{rows}(?:_seed(\d+))?(?:_steps(\d+))?(?:_(?!rows|seed|steps)([a-z][\w.-]*?))?(?:_rows[\d-]+)?\.csv",
        name,
    )
    return None if m is None else (int(m[1] or 0), int(m[2] or STEPS[rows]), m[3] or "")


def measured_tables(cfg, rows: str, root: str | Path = ".") -> list[tuple[tuple[int, int, str], Path]]:
    """Every ablation table of ``rows`` with its (seed, steps, tag): the repository's, then this run's (which replace
    them where a caller keys by run)."""
    found = []
    for base in (Path(root) / COMMITTED, Path(root) / cfg.run_dir / "tables"):
        for path in sorted(base.glob(f"ablation_{rows}*.csv")):
            if (key := parse_table_name(rows, path.name)) is not None:
                found.append((key, path))
    return found


def ablation_table(cfg, rows: str, root: str | Path = ".") -> tuple[pd.DataFrame | None, str]:
    """The ablation table ``rows`` ("harmonizer" or "slices") for the book, and a sentence on where it came from:
    this run's (``runs/<profile>/tables/ablation_<rows>.csv``, from ``benchmarks/ablation.py``), else the one
    measured for the repository (``benchmarks/results/``), else None."""
    name = f"ablation_{rows}.csv"
    for path, said in (
        (Path(root) / cfg.run_dir / "tables" / name, "this run's ablation (benchmarks/ablation.py)"),
        (
            Path(root) / COMMITTED / name,
            "the ablation measured for the repository (benchmarks/results/, its git log dates it)",
        ),
    ):
        if path.is_file():
            return pd.read_csv(path), f"{said}: {path}"
    return None, f"no ablation table yet: run `python benchmarks/ablation.py {rows}` (about 20 minutes on 2 cores)"


PROFILE_ROW = list(HARMONIZER_ROWS)[-1]  # harmonizer 1 as the cpu profile trains it


def budget_table(cfg, own: dict | None = None, root: str | Path = ".") -> pd.DataFrame | None:
    """How harmonizer 1's gate moves with its training budget: the cpu profile's model (the ablation's last row) at
    every budget measured (``benchmarks/ablation.py harmonizer --steps N --only 3``, this run's tables first, then
    the repository's) and ``own``, this run's model (an :func:`ablation_row`); one row per number of steps, sorted.
    Other seeds and probes (``--tag``) are left out: they are the spread and other settings, not the budget; None when
    nothing is measured."""
    rows = {}
    for (seed, _, tag), path in measured_tables(cfg, "harmonizer", root):  # this run's replace the repository's
        if seed or tag:
            continue  # another seed (the ablation's spread) or a probe (another setting), not a budget
        df = pd.read_csv(path)
        for rec in df[df["model"] == PROFILE_ROW].to_dict("records"):
            rows[_steps(rec["budget"])] = rec | {"measured by": f"benchmarks/ablation.py ({path.name})"}
    if own is not None:
        rows[_steps(own["budget"])] = own | {"measured by": "this chapter's model"}
    if not rows:
        return None
    table = pd.DataFrame([rows[k] | {"steps": k} for k in sorted(rows)])
    keep = ["steps", "budget", "SSIM to truth A", "SSIM to truth B", "gap closed A", "gap closed B"]
    keep += ["margin over Nyul A", "margin over Nyul B", "translation", "measured by"]
    return table[keep]


SEED_MODELS = {"harmonizer": [PROFILE_ROW], "slices": [m for m, (_, row) in SLICE_ROWS.items() if row is CPU]}
SEED_COLUMNS = [
    "model", "seed", "budget", "criteria missed", "SSIM to truth A", "SSIM to truth B", "gap closed A", "gap closed B",
    "margin over Nyul A", "margin over Nyul B", "translation", "tissue margin over Nyul", "structure",
]  # fmt: skip


def seed_table(cfg, rows: str, root: str | Path = ".") -> pd.DataFrame | None:
    """How much the gate moves between seeds: the cpu profile's model(s) of ``rows`` at the profile's own budget,
    trained from scratch with each seed measured (``benchmarks/ablation.py <rows> --steps <the profile's> --seed k``;
    the repository's tables, then this run's), one row per (model, seed), then per model the mean over the seeds and
    their spread (max - min). None when fewer than two seeds are measured. Probes (``--tag``) and other profiles' rows
    are left out."""
    steps = (cfg.harmonizer if rows == "harmonizer" else cfg.drit).train.iterations
    found = {}
    for (_, at, tag), path in measured_tables(cfg, rows, root):
        if at != steps or tag:
            continue
        for rec in pd.read_csv(path).to_dict("records"):
            if rec["model"] in SEED_MODELS[rows] and rec.get("profile", cfg.profile) == cfg.profile:
                found[(rec["model"], int(rec.get("seed", 0)))] = rec
    if len({seed for _, seed in found}) < 2:
        return None
    table = pd.DataFrame([found[k] for k in sorted(found)]).reindex(columns=SEED_COLUMNS)
    numeric = SEED_COLUMNS[4:]
    summary = []
    for model, g in table.groupby("model", sort=False):
        summary.append(g.assign(seed=g["seed"].astype(str)))
        values = g[numeric].apply(pd.to_numeric, errors="coerce")
        mean = {"model": model, "seed": f"mean of {len(g)}", **values.mean().to_dict()}
        spread = {"model": model, "seed": "spread (max - min)", **(values.max() - values.min()).to_dict()}
        summary.append(pd.DataFrame([mean, spread]))
    return pd.concat(summary, ignore_index=True).reindex(columns=SEED_COLUMNS)


def probe_table(cfg, rows: str = "harmonizer", root: str | Path = ".") -> pd.DataFrame | None:
    """Every probe measured on the cpu profile's model(s) (``benchmarks/ablation.py <rows> --set ... --tag T``): one
    row per probe with its setting, budget and the gate's numbers, after the profile's own rows (probe "none") at the
    budgets and seeds the probes ran at; this profile's only. None when no probe is measured."""
    probes, plain = {}, {}
    for (_, _, tag), path in measured_tables(cfg, rows, root):
        for rec in pd.read_csv(path).to_dict("records"):
            if rec.get("profile", cfg.profile) != cfg.profile:  # another profile's probe
                continue
            if tag:
                rec["probe"] = rec.get("probe") if isinstance(rec.get("probe"), str) else tag
                probes[(tag, rec["model"], int(rec.get("seed", 0)), _steps(rec["budget"]))] = rec
            elif rec["model"] in SEED_MODELS[rows]:
                plain[(_steps(rec["budget"]), int(rec.get("seed", 0)), rec["model"])] = rec | {
                    "probe": "none (the profile's settings)"
                }
    if not probes:
        return None
    runs = {(_steps(r["budget"]), int(r.get("seed", 0))) for r in probes.values()}
    refs = [plain[k] for k in sorted(plain) if k[:2] in runs]
    keep = ["probe", "model", "seed", "budget", "criteria missed", *SEED_COLUMNS[4:]]
    return pd.DataFrame(refs + [probes[k] for k in sorted(probes)]).reindex(columns=keep)


SUMMARY_COLUMNS = [
    "model", "budget", "SSIM to truth A", "SSIM to truth B", "margin over Nyul A", "margin over Nyul B",
    "gap closed A", "gap closed B", "translation", "profile",
]  # fmt: skip


def ablation_summary(cfg, root: str | Path = ".") -> dict[str, pd.DataFrame]:
    """The What-reproduced page's digest of the ablations, the seeds and the probes: {caption: table}, each with the
    gate's headline columns (SSIM to the truth, the margin over Nyul, the gap closed, translation), its budget and the
    profile that made it (an ablation falls back to the repository's, measured on the cpu profile); the seeds as each
    model's mean over them and their spread; only the tables that are measured."""
    out = {}
    for rows, what in (("harmonizer", "harmonizer 1"), ("slices", "DRIT++ and GMM-DRIT")):
        table, _ = ablation_table(cfg, rows, root)
        if table is not None:
            out[f"What each part of {what} adds (ablation)"] = table.reindex(columns=SUMMARY_COLUMNS)
    for rows in ("harmonizer", "slices"):
        seeds = seed_table(cfg, rows, root)
        if seeds is not None:
            steps = _steps(seeds["budget"].dropna().iloc[0])
            kept = seeds[~seeds["seed"].astype(str).str.fullmatch(r"\d+")]
            kept = kept.assign(budget=[f"{label}, {steps} steps each" for label in kept["seed"]], profile=cfg.profile)
            what = "harmonizer 1" if rows == "harmonizer" else "2D models"
            out[f"How much the seeds move the cpu profile's {what}"] = kept[SUMMARY_COLUMNS]
    probes = probe_table(cfg, "harmonizer", root)
    if probes is not None:
        probes = probes.assign(model=probes["probe"], profile=cfg.profile)
        out["Probes on harmonizer 1 (one setting changed)"] = probes[SUMMARY_COLUMNS]
    return out


def _steps(budget: str) -> int:
    """The number of steps in a budget cell ("250 steps, 7.8 min")."""
    return int(str(budget).split()[0])
