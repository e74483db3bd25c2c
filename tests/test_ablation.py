"""The ablation and budget tables the model chapters show (`harmlib.evaluation.ablation`)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest
from test_gate import _sceptic

import harmlib
from harmlib.evaluation.ablation import PROFILE_ROW, ablation_row, ablation_table, budget_table
from harmlib.plots import plot_budget


def _trav() -> pd.DataFrame:
    return pd.DataFrame({"target": ["A", "agnostic"], "structure vs original": [0.99, 0.97]})


def test_an_ablation_row_reads_the_gate_the_sceptic_reads():
    row = ablation_row("m", _sceptic(0.95, 0.04, 0.85), _trav(), 250, 7.84)
    assert row["budget"] == "250 steps, 7.8 min"
    assert row["SSIM to truth A"] == pytest.approx(0.95) and row["gap closed A"] == pytest.approx(0.625)
    assert row["margin over Nyul B"] == pytest.approx(0.02) and row["site-free structure"] == pytest.approx(0.97)


def _write(path, rows: list[tuple[str, str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = [
        {"model": m, "budget": b, "SSIM to truth A": a, "SSIM to truth B": a, "gap closed A": 0.3, "gap closed B": 0.3}
        | {"margin over Nyul A": a - 0.968, "margin over Nyul B": a - 0.97, "translation": 0.5}
        for m, b, a in rows
    ]
    pd.DataFrame(recs).to_csv(path, index=False)


def test_the_budget_table_has_the_profiles_model_at_every_budget_this_runs_first(tmp_path):
    cfg = harmlib.load_config("cpu")
    committed, run = tmp_path / "benchmarks" / "results", tmp_path / cfg.run_dir / "tables"
    _write(
        committed / "ablation_harmonizer.csv",
        [("+ residual (y = x + G)", "100 steps, 4 min", 0.96), (PROFILE_ROW, "100 steps, 3 min", 0.967)],
    )
    _write(committed / "ablation_harmonizer_steps1000_rows3.csv", [(PROFILE_ROW, "1000 steps, 30 min", 0.969)])
    _write(run / "ablation_harmonizer_steps1000_rows3.csv", [(PROFILE_ROW, "1000 steps, 29 min", 0.970)])
    _write(run / "ablation_harmonizer_seed1_rows3.csv", [(PROFILE_ROW, "100 steps, 3 min", 0.5)])  # a seed
    _write(run / "ablation_harmonizer_steps250_width16_rows3.csv", [(PROFILE_ROW, "250 steps, 9 min", 0.5)])  # a probe
    own = ablation_row("this chapter", _sceptic(0.968, 0.04, 0.85), _trav(), 250, 8.0)
    table = budget_table(cfg, own, root=tmp_path)
    assert list(table["steps"]) == [100, 250, 1000]
    assert list(table["SSIM to truth A"]) == pytest.approx([0.967, 0.968, 0.970])  # this run's 1000 steps won
    assert table["measured by"].iloc[1] == "this chapter's model"
    assert budget_table(cfg, root=tmp_path / "empty") is None
    fig = plot_budget(table, 0.01)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 6  # per target: the model, Nyul, the gate's bar
    assert lines[1].get_ydata()[0] == pytest.approx(0.968) and lines[2].get_ydata()[0] == pytest.approx(0.978)


def test_the_ablation_table_prefers_this_runs_and_says_where_it_came_from(tmp_path):
    cfg = harmlib.load_config("cpu")
    table, said = ablation_table(cfg, "harmonizer", root=tmp_path)
    assert table is None and "benchmarks/ablation.py harmonizer" in said
    _write(tmp_path / "benchmarks" / "results" / "ablation_harmonizer.csv", [(PROFILE_ROW, "100 steps, 3 min", 0.967)])
    assert "measured for the repository" in ablation_table(cfg, "harmonizer", root=tmp_path)[1]
    _write(tmp_path / cfg.run_dir / "tables" / "ablation_harmonizer.csv", [(PROFILE_ROW, "100 steps, 3 min", 0.9)])
    table, said = ablation_table(cfg, "harmonizer", root=tmp_path)
    assert "this run's" in said and table["SSIM to truth A"].iloc[0] == pytest.approx(0.9)
