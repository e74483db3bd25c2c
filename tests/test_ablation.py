"""The ablation and budget tables the model chapters show (`harmlib.evaluation.ablation`)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest
from test_gate import _sceptic

import harmlib
from harmlib.evaluation.ablation import (
    PROFILE_ROW,
    SEED_MODELS,
    ablation_row,
    ablation_summary,
    ablation_table,
    budget_table,
    probe_table,
    seed_table,
)
from harmlib.plots import plot_budget

AT_250 = {"harmonizer.train.iterations": 250}  # the tables below are written at 250 steps, whatever the profile's


def _trav() -> pd.DataFrame:
    return pd.DataFrame({"target": ["A", "agnostic"], "structure vs original": [0.99, 0.97]})


def test_an_ablation_row_reads_the_gate_the_sceptic_reads():
    row = ablation_row("m", _sceptic(0.95, 0.04, 0.85), _trav(), 250, 7.84)
    assert row["budget"] == "250 steps, 7.8 min"
    assert row["SSIM to truth A"] == pytest.approx(0.95) and row["gap closed A"] == pytest.approx(0.625)
    assert row["margin over Nyul B"] == pytest.approx(0.02) and row["site-free structure"] == pytest.approx(0.97)
    n = int(_sceptic(0.95, 0.04, 0.85)["passed"].astype(str).isin(["True", "False"]).sum())
    assert n > 10 and row["criteria missed"] == f"0 of {n}"
    missed = ablation_row("m", _sceptic(0.935, 0.04, 0.85), _trav(), 250, 7.84)["criteria missed"]
    assert missed == f"4 of {n}"  # the gap share and the margin over Nyul, at A and at B


def _write(path, rows: list[tuple[str, str, float]], **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = [
        {"model": m, "budget": b, "SSIM to truth A": a, "SSIM to truth B": a, "gap closed A": 0.3, "gap closed B": 0.3}
        | {"margin over Nyul A": a - 0.968, "margin over Nyul B": a - 0.97, "translation": 0.5}
        | extra
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


def test_the_seed_table_is_the_profiles_model_at_its_budget_with_mean_and_spread(tmp_path):
    """Seeds 0, 1, 2 of the profile's model at the profile's 250 steps: one row each, then the mean and the spread;
    another budget, another model and a probe stay out; one seed alone is no spread."""
    cfg = harmlib.load_config("cpu", AT_250)
    run = tmp_path / cfg.run_dir / "tables"
    _write(run / "ablation_harmonizer_steps250_rows3.csv", [(PROFILE_ROW, "250 steps, 8 min", 0.967)], seed=0)
    assert seed_table(cfg, "harmonizer", root=tmp_path) is None
    _write(run / "ablation_harmonizer_seed1_steps250_rows3.csv", [(PROFILE_ROW, "250 steps, 8 min", 0.969)], seed=1)
    _write(run / "ablation_harmonizer_seed2_steps250_rows3.csv", [(PROFILE_ROW, "250 steps, 8 min", 0.965)], seed=2)
    _write(run / "ablation_harmonizer_seed1_rows3.csv", [(PROFILE_ROW, "100 steps, 3 min", 0.5)], seed=1)  # budget
    _write(run / "ablation_harmonizer_seed1_steps250_tex10_rows3.csv", [(PROFILE_ROW, "250 steps", 0.5)], seed=1)
    _write(run / "ablation_harmonizer_seed2_steps250.csv", [("+ residual (y = x + G)", "250 steps", 0.5)], seed=2)
    table = seed_table(cfg, "harmonizer", root=tmp_path)
    assert list(table["seed"]) == ["0", "1", "2", "mean of 3", "spread (max - min)"]
    assert list(table["SSIM to truth A"]) == pytest.approx([0.967, 0.969, 0.965, 0.967, 0.004])


def test_the_slice_seed_table_keeps_each_model_apart(tmp_path):
    cfg = harmlib.load_config("cpu")
    run = tmp_path / cfg.run_dir / "tables"
    drit, gmm = SEED_MODELS["slices"]
    for seed, a in ((0, 0.96), (1, 0.97)):
        name = "ablation_slices" + (f"_seed{seed}" if seed else "") + "_steps300_rows1-2.csv"
        _write(run / name, [(drit, "300 steps, 5 min", a), (gmm, "300 steps, 5 min", a - 0.01)], seed=seed)
    table = seed_table(cfg, "slices", root=tmp_path)
    assert list(table["model"]) == [drit] * 4 + [gmm] * 4
    assert list(table["SSIM to truth A"]) == pytest.approx([0.96, 0.97, 0.965, 0.01, 0.95, 0.96, 0.955, 0.01])


def test_the_probe_table_puts_each_probe_beside_the_profiles_row_at_its_budget(tmp_path):
    cfg = harmlib.load_config("cpu")
    run = tmp_path / cfg.run_dir / "tables"
    assert probe_table(cfg, root=tmp_path) is None
    _write(run / "ablation_harmonizer_steps250_rows3.csv", [(PROFILE_ROW, "250 steps, 8 min", 0.967)], seed=0)
    _write(run / "ablation_harmonizer_steps1000_rows3.csv", [(PROFILE_ROW, "1000 steps, 30 min", 0.968)], seed=0)
    _write(run / "ablation_harmonizer_seed1_steps250_rows3.csv", [(PROFILE_ROW, "250 steps, 8 min", 0.9)], seed=1)
    probe = "tex10: harmonizer.weights.tex=10"
    _write(
        run / "ablation_harmonizer_steps250_tex10_rows3.csv", [(PROFILE_ROW, "250 steps, 9 min", 0.966)], probe=probe
    )
    _write(run / "ablation_harmonizer_steps250_width16_rows3.csv", [(PROFILE_ROW, "250 steps, 11 min", 0.965)])
    _write(run / "ablation_harmonizer_steps250_wide_rows3.csv", [(PROFILE_ROW, "250 steps", 0.5)], profile="tiny")
    table = probe_table(cfg, root=tmp_path)
    assert list(table["probe"]) == [
        "none (the profile's settings)",
        probe,
        "width16",
    ]  # a probe's setting, else its tag
    assert list(table["SSIM to truth A"]) == pytest.approx([0.967, 0.966, 0.965])
    _write(run / "ablation_harmonizer_seed1_steps250_tex10_rows3.csv", [(PROFILE_ROW, "250 steps", 0.91)], seed=1)
    table = probe_table(cfg, root=tmp_path)  # the probe's seed 1 brings the profile's seed 1 beside it
    assert list(table["SSIM to truth A"]) == pytest.approx([0.967, 0.9, 0.966, 0.91, 0.965])
    _write(run / "ablation_harmonizer_steps1000_tex10_rows3.csv", [(PROFILE_ROW, "1000 steps", 0.969)], probe=probe)
    table = probe_table(cfg, root=tmp_path)  # the same probe at another budget is another row, beside its reference
    assert list(table["SSIM to truth A"]) == pytest.approx([0.967, 0.9, 0.968, 0.966, 0.969, 0.91, 0.965])


def test_the_summary_holds_the_ablations_the_seeds_as_mean_and_spread_and_the_probes(tmp_path):
    cfg = harmlib.load_config("cpu", AT_250)
    assert ablation_summary(cfg, root=tmp_path) == {}
    run = tmp_path / cfg.run_dir / "tables"
    _write(run / "ablation_harmonizer.csv", [("+ residual (y = x + G)", "100 steps, 4 min", 0.96)], profile="cpu")
    for seed, a in ((0, 0.967), (1, 0.969)):
        name = "ablation_harmonizer" + (f"_seed{seed}" if seed else "") + "_steps250_rows3.csv"
        _write(run / name, [(PROFILE_ROW, "250 steps, 8 min", a)], seed=seed)
    _write(run / "ablation_harmonizer_steps250_tex10_rows3.csv", [(PROFILE_ROW, "250 steps, 9 min", 0.966)])
    summary = ablation_summary(cfg, root=tmp_path)
    ablation, seeds, probes = summary.values()
    assert list(ablation["SSIM to truth A"]) == pytest.approx([0.96])
    assert list(seeds["budget"]) == ["mean of 2, 250 steps each", "spread (max - min), 250 steps each"]
    assert list(seeds["SSIM to truth A"]) == pytest.approx([0.968, 0.002])
    assert list(probes["model"]) == ["none (the profile's settings)", "tex10"]
    assert all((t["profile"] == "cpu").all() for t in summary.values())  # each table says which profile made it
