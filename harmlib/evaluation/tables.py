"""Tables: fold summaries, the papers' values beside ours with a verdict, and atomic CSV writing.

Every table is a pandas DataFrame written to ``runs/<profile>/tables/<name>.csv`` by `write_table`.
`claim_table` puts the paper's value (``paper``) beside ours (``ours``, "mean +/- SD") and says whether the
*direction* of the paper's claim holds on our data (``claim holds``): e.g. a lower Wasserstein distance, a
higher luminance SSIM, a lower MAE after harmonization than before. Absolute values are not expected to
match (synthetic cohort, CPU-sized models); the direction is what a reproduction can check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmlib.data.io import write_text_atomic
from harmlib.evaluation.paper_values import P1_VERSIONS, PAPER1

# Which way each metric improves: the direction of the papers' claims.
BETTER = {
    "wasserstein": "lower",
    "luminance_ssim": "higher",
    "structural_ssim": "higher",
    "mae": "lower",
    "rmse": "lower",
    "r2": "higher",
    "accuracy": "higher",
    "balanced_accuracy": "higher",
    "auc": "higher",
    "fid": "lower",
    "kid": "lower",
    "ssim_to_truth": "higher",  # traveling subjects (``evaluation.traveling``), with PSNR
    "acc": "higher",
    "nmi": "higher",
    "ari": "higher",
}


def paper1_values(table: str) -> dict[tuple[str, str], str]:
    """Paper 1's printed values of ``table`` (table2, table3, table4) keyed by (metric, version)."""
    if table not in PAPER1:
        raise ValueError(f"unknown paper-1 table '{table}'; use one of {', '.join(PAPER1)}")
    return {(m, v): s for m, vals in PAPER1[table].items() for v, s in zip(P1_VERSIONS, vals)}


def tables_dir(cfg_or_dir: Any) -> Path:
    """``runs/<profile>/tables`` of a `harmlib.config.Config`, or the folder given."""
    return Path(cfg_or_dir.run_dir) / "tables" if hasattr(cfg_or_dir, "run_dir") else Path(cfg_or_dir)


def write_table(df: pd.DataFrame, cfg_or_dir: Any, name: str) -> Path:
    """Write ``df`` to ``<tables dir>/<name>.csv`` atomically (a killed run leaves no half table)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(
            f"write_table: name {name!r} is not a plain file name; use letters, digits, '_', '-', '.' (e.g. 'table2_appearance')"
        )
    keep_index = not isinstance(df.index, pd.RangeIndex)
    return write_text_atomic(tables_dir(cfg_or_dir) / f"{name}.csv", df.to_csv(index=keep_index))


def format_mean_sd(mean: float, sd: float, decimals: int = 3) -> str:
    """``"0.952 ± 0.037"``, the papers' notation."""
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def fold_stats(cv: pd.DataFrame, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Long table (version, metric, mean, sd over folds) of `harmlib.evaluation.downstream.cross_validate`.

    SD with ddof=1 over the folds; the paper does not say which, and with 5 folds the sample SD is usual.
    """
    metrics = metrics or tuple(m for m in BETTER if m in cv.columns)  # the task's metric columns
    rows = [
        {"version": v, "metric": m, "mean": float(g[m].mean()), "sd": float(g[m].std(ddof=1)) if len(g) > 1 else 0.0}
        for v, g in cv.groupby("version", sort=False)
        for m in metrics
    ]
    return pd.DataFrame(rows)


def wide(stats: pd.DataFrame, decimals: int = 3) -> pd.DataFrame:
    """Metric rows x version columns of "mean ± sd" strings (the papers' layout) from a long table."""
    cell = stats.assign(ours=[format_mean_sd(m, s, decimals) for m, s in zip(stats["mean"], stats["sd"])])
    out = cell.pivot(index="metric", columns="version", values="ours")
    return out.loc[list(dict.fromkeys(stats["metric"])), list(dict.fromkeys(stats["version"]))]


def claim_table(
    stats: pd.DataFrame,
    paper: Mapping[tuple[str, str], str],
    reference: str,
    profile: str,
    decimals: int = 3,
    better: Mapping[str, str] = BETTER,
) -> pd.DataFrame:
    """Paper value beside ours and the verdict, one row per (metric, version).

    ``stats``: long table with columns version, metric, mean, sd (`fold_stats`, or built by a notebook).
    ``paper``: printed values keyed by (metric, version) (e.g. `paper1_values`); versions the paper lacks
    (our classical baselines) get "". ``claim holds``: True when the version beats ``reference`` (the
    unharmonized data, or DRIT++) in the direction the paper claims (``better[metric]``); "" for the
    reference row itself. ``profile`` names the run that produced ours.
    """
    if reference not in set(stats["version"]):
        raise ValueError(
            f"claim_table: reference version '{reference}' not in the table; versions: {', '.join(map(str, stats['version'].unique()))}"
        )
    ref = stats[stats["version"] == reference].set_index("metric")["mean"]
    rows = []
    for r in stats.itertuples(index=False):
        if r.metric not in better:
            raise ValueError(
                f"claim_table: no claim direction for metric '{r.metric}'; pass better={{'{r.metric}': 'lower' or 'higher'}}"
            )
        if r.version == reference:
            holds: Any = ""
        else:
            diff = r.mean - ref[r.metric]
            holds = bool(diff < 0) if better[r.metric] == "lower" else bool(diff > 0)
        rows.append(
            {
                "metric": r.metric,
                "version": r.version,
                "paper": paper.get((r.metric, r.version), ""),
                "ours": format_mean_sd(r.mean, r.sd, decimals),
                "claim holds": holds,
                "profile": profile,
            }
        )
    return pd.DataFrame(rows)


def summary_row(version: str, metric: str, values: np.ndarray) -> dict[str, Any]:
    """One row of a long stats table from raw values (e.g. pair SSIMs): mean and SD with ddof=0."""
    v = np.asarray(values, dtype=float)
    return {"version": version, "metric": metric, "mean": float(v.mean()), "sd": float(v.std())}


GATE_COLUMNS = ("model", "criterion", "value", "threshold", "passed", "profile")


def write_gate(table: pd.DataFrame, cfg_or_dir: Any, model: str) -> Path:
    """Write a model's quality gate (`harmlib.evaluation.gate.evaluate_gate`) to ``<tables dir>/gate_<model>.csv``."""
    missing = [c for c in ("criterion", "value", "threshold", "passed") if c not in table.columns]
    if missing:
        raise ValueError(
            f"write_gate: the gate table of '{model}' lacks the column(s) {', '.join(missing)}; pass the table of evaluate_gate"
        )
    return write_table(table, cfg_or_dir, f"gate_{model}")


def read_gates(cfg_or_dir: Any) -> pd.DataFrame:
    """Every ``gate_<model>.csv`` of a run in one table (columns `GATE_COLUMNS`); empty when there is none.

    Cells are read as text, so that an informational row's empty threshold stays "" (not NaN) and
    `harmlib.evaluation.gate.gate_passed` / `gate_failures` read the table as they read the one in memory.
    The ``model`` column is the file's model name (what the claims look up).
    """
    frames = []
    for path in sorted(tables_dir(cfg_or_dir).glob("gate_*.csv")):
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
            continue  # an empty or broken gate table is no gate: the model reads "no quality gate computed"
        if not {"criterion", "value", "threshold", "passed"} <= set(df.columns):
            continue
        df["model"] = path.stem[len("gate_") :]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(GATE_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    first = [c for c in GATE_COLUMNS if c in out.columns]
    return out[first + [c for c in out.columns if c not in first]]


DOWNLOADS = "downloads"  # the built site's folder of tables and model files (`harmlib.pipeline.copy_downloads`)


def downloads_html(cfg: Any, tables: Sequence[str] = (), models: Sequence[str] = ()) -> str:
    """A chapter's closing line (HTML: a Markdown link to a file that is not a page becomes a broken cross-reference in
    the book): links to the CSV tables it wrote and the model files it trained, as the built book serves them (copied
    there by ``harmlib book``); what this run did not write is left out."""
    links = [
        f'<a href="../{DOWNLOADS}/tables/{name}.csv" download>{name}.csv</a>'
        for name in tables
        if (tables_dir(cfg) / f"{name}.csv").is_file()
    ]
    for name in models:
        path = Path(cfg.run_dir) / "models" / f"{name}.pt"
        if path.is_file():
            links.append(
                f'<a href="../{DOWNLOADS}/models/{name}.pt" download>{name}.pt</a> ({path.stat().st_size / 1e6:.1f} MB)'
            )
    return (
        f"<p><strong>Downloads</strong> (profile {cfg.profile}): "
        + (", ".join(links) or "nothing written by this run")
        + "</p>"
    )
