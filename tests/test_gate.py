"""The quality gate: its table and verdict, its config checks, and how a failing gate reaches the claims page."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harmlib import load_config
from harmlib.config import ConfigError, GateConfig
from harmlib.evaluation.gate import gate_failures, gate_passed, gate_table
from harmlib.evaluation.tables import read_gates, write_gate


def _cases(rec_ssim: float, after: float, structure: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hand-made per-case tables: 4 held-out volumes, each harmonized to A, B (with truth) and agnostic."""
    rec = pd.DataFrame({"subject": list("pqrs"), "site": ["X", "X", "Y", "Y"], "reconstruction SSIM": [rec_ssim] * 4})
    rows = []
    for subject in "pqrs":
        for target in ("A", "B"):
            rows.append(
                {
                    "subject": subject,
                    "site": "X",
                    "target": target,
                    "structure vs original": structure,
                    "SSIM before": 0.90,
                    "SSIM after": after,
                    "structure before": 0.94,
                    "structure after": 0.95,
                    "PSNR before": 20.0,
                    "PSNR after": 22.0,
                }
            )
        rows.append({"subject": subject, "site": "X", "target": "agnostic", "structure vs original": structure})
    return rec, pd.DataFrame(rows)


def _gate(rec_ssim=0.97, after=0.95, structure=0.97, accuracy=0.9, model="ssim_harmonizer") -> pd.DataFrame:
    rec, trav = _cases(rec_ssim, after, structure)
    nyul = pd.DataFrame({"target": ["A", "B"], "site": ["X", "X"], "SSIM after": [0.93, 0.92]})
    return gate_table(model, "tiny", GateConfig(), rec, trav, accuracy, nyul)


def test_a_model_that_meets_every_threshold_passes():
    table = _gate()
    assert list(table.columns) == ["model", "criterion", "value", "threshold", "passed", "profile"]
    assert gate_passed(table) and gate_failures(table) == []
    crit = table[table["threshold"].astype(str) != ""]
    assert len(crit) == 7  # reconstruction, translation, 2 x (share improved, mean gain), structure
    info = table[table["threshold"].astype(str) == ""]
    assert info["criterion"].str.contains("Nyul").any() and info["criterion"].str.contains("before / after").any()


def test_a_failing_gate_names_the_criterion_and_both_numbers():
    table = _gate(rec_ssim=0.85, after=0.89)  # reconstruction below 0.95; harmonization moved away from the truth
    assert not gate_passed(table)
    fails = gate_failures(table)
    rec = [f for f in fails if f.startswith("reconstruction SSIM")]
    assert rec == ["reconstruction SSIM (held-out, over the brain) 0.850 < 0.95"]
    assert any("traveling subjects -> A: share closer" in f and "0.000 < 0.90" in f for f in fails)
    assert any("traveling subjects -> B: mean SSIM gain" in f and "-0.010 < 0.02" in f for f in fails)
    assert not any("translation" in f or "structural" in f for f in fails)  # those passed


def test_a_gate_reads_back_from_its_csv_with_the_same_verdict(tmp_path):
    good, bad = _gate(), _gate(accuracy=0.5, model="drit")
    assert write_gate(good, tmp_path, "ssim_harmonizer") == tmp_path / "gate_ssim_harmonizer.csv"
    write_gate(bad, tmp_path, "drit")
    gates = read_gates(tmp_path)
    assert set(gates["model"]) == {"ssim_harmonizer", "drit"} and list(gates.columns)[:6] == list(good.columns)
    back = gates[gates["model"] == "ssim_harmonizer"]
    assert gate_passed(back) and gate_failures(back) == []  # empty thresholds of the info rows stay empty
    assert (
        gate_failures(gates[gates["model"] == "drit"])
        == gate_failures(bad)
        == ["translation accuracy (independent scanner classifier) 0.500 < 0.80"]
    )
    assert read_gates(tmp_path / "nowhere").empty
    with pytest.raises(ValueError, match="lacks the column"):
        write_gate(good.drop(columns=["threshold"]), tmp_path, "x")


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"gate.reconstruction": 1.5}, r"gate\.reconstruction"),
        ({"gate.min_gain": -0.1}, r"gate\.min_gain"),
        ({"gate.structure": float("nan")}, r"gate\.structure"),
        ({"harmonizer.crop": 8}, r"harmonizer\.crop"),
        ({"harmonizer.train.iterations": 10, "harmonizer.train.warmup": 10}, r"train\.warmup.*iterations"),
    ],
)
def test_bad_gate_crop_and_warmup_settings_fail_with_the_field_name(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_config("tiny", overrides)


def test_valid_gate_settings_load():
    cfg = load_config(
        "tiny",
        {
            "gate.reconstruction": 1.0,
            "gate.min_gain": 0.0,
            "harmonizer.train.iterations": 10,
            "harmonizer.train.warmup": 9,
        },
    )
    assert cfg.gate.reconstruction == 1.0 and cfg.harmonizer.train.warmup == 9


def _claims_run(tmp_path, gate: pd.DataFrame | None):
    """A run whose paper-1 Table 2 and paper-2 Table 1 hold, with ``gate`` as the ssim_harmonizer's gate."""
    cfg = SimpleNamespace(run_dir=tmp_path, profile="tiny")  # tables_dir(cfg) = tmp_path / "tables"
    tables = tmp_path / "tables"
    tables.mkdir(exist_ok=True)
    pd.DataFrame(
        [
            {
                "metric": "wasserstein",
                "version": v,
                "paper": "",
                "ours": "0.1 ± 0.0",
                "claim holds": h,
                "profile": "tiny",
            }
            for v, h in (("unharmonized", ""), ("A", True), ("B", True), ("agnostic", True))
        ]
    ).to_csv(tables / "paper1_table2.csv", index=False)
    pd.DataFrame(
        [
            {
                "metric": "structural_ssim",
                "version": "GMM-DRIT",
                "paper": "0.96",
                "ours": "0.9 ± 0.1",
                "claim holds": True,
                "profile": "tiny",
            }
        ]
    ).to_csv(tables / "paper2_table1.csv", index=False)
    if gate is not None:
        write_gate(gate, cfg, "ssim_harmonizer")
    return cfg


def test_a_failing_gate_turns_the_models_claims_into_below_its_gate(tmp_path):
    from harmlib.evaluation.claims import BELOW_GATE, claims_markdown, collect_claims, gates_markdown

    cfg = _claims_run(tmp_path, _gate(rec_ssim=0.85))
    claims = collect_claims(cfg)
    wasser = claims[claims["claim"].str.contains("Wasserstein")].iloc[0]
    assert wasser["verdict"] == BELOW_GATE == "model below its quality gate" and wasser["holds"] is None
    assert wasser["why"].startswith(
        "the model failed its gate: reconstruction SSIM (held-out, over the brain) 0.850 < 0.95"
    )
    assert "its tables, not counted, read: wasserstein, lower is better: A 0.1 = unharmonized 0.1" in wasser["why"]
    drit = claims[claims["table"] == "paper2_table1"].iloc[0]  # GMM-DRIT and DRIT++ have no gate: judged as before
    assert drit["verdict"] == "holds" and drit["holds"] is True and drit["why"].endswith("(no quality gate measured)")
    page = claims_markdown(claims)
    assert f"| **{BELOW_GATE}** | Paper 1, Table 2: harmonization lowers the Wasserstein" in page
    gates = gates_markdown(read_gates(cfg))
    assert gates.index("ssim_harmonizer") < gates.index("gmvae")  # the page states each model's gate
    assert (
        "| criterion | value | threshold | passed |" in gates
        and "| reconstruction SSIM (held-out, over the brain) | 0.85 | 0.95 | **no** |" in gates
    )
    assert f"{BELOW_GATE}: reconstruction SSIM (held-out, over the brain) 0.850 < 0.95" in gates
    assert "not measured" not in gates


def test_a_passing_gate_lets_the_tables_decide(tmp_path):
    from harmlib.evaluation.claims import collect_claims, gates_markdown

    cfg = _claims_run(tmp_path, _gate())
    claims = collect_claims(cfg)
    wasser = claims[claims["claim"].str.contains("Wasserstein")].iloc[0]
    assert wasser["verdict"] == "holds" and wasser["why"].endswith("(the model passed its quality gate)")
    assert "gate passed" in gates_markdown(read_gates(cfg))


def test_convergence_plot_draws_metrics_unharmonized_and_threshold():
    import matplotlib

    matplotlib.use("Agg")
    from harmlib.plots import plot_convergence

    df = pd.DataFrame(
        {
            "step": [50, 100, 150],
            "reconstruction SSIM": [0.8, 0.9, 0.96],
            "structure vs original": [0.9, 0.95, 0.97],
            "SSIM to truth -> A": [0.7, 0.85, 0.93],
            "SSIM to truth -> A (unharmonized)": [0.9] * 3,
            "SSIM to truth -> B": [0.7, 0.8, 0.92],
            "SSIM to truth -> B (unharmonized)": [0.88] * 3,
        }
    )
    fig = plot_convergence(df, {"reconstruction SSIM": 0.95})
    lines = fig.axes[0].get_lines()
    assert sum(ln.get_linestyle() == "-" for ln in lines) == 4
    assert sum(ln.get_linestyle() == "--" for ln in lines) == 2
    dotted = [ln for ln in lines if ln.get_linestyle() == ":"]
    assert len(dotted) == 1 and np.allclose(dotted[0].get_ydata(), 0.95)
    assert len(fig.axes) == 1  # no translation column: one panel

    df["translation accuracy"] = [0.125, 0.5, 1.0]
    fig = plot_convergence(df, {"reconstruction SSIM": 0.95, "translation accuracy": 0.8})
    assert len(fig.axes) == 2  # a share of scans gets its own panel, not the SSIM axis
    assert sum(ln.get_linestyle() == "-" for ln in fig.axes[0].get_lines()) == 4
    solid, dotted = ([ln for ln in fig.axes[1].get_lines() if ln.get_linestyle() == s] for s in ("-", ":"))
    assert np.allclose(solid[0].get_ydata(), [0.125, 0.5, 1.0]) and np.allclose(dotted[0].get_ydata(), 0.8)


def test_snapshot_steps_lists_the_kept_steps_in_order(tmp_path):
    from harmlib.evaluation.snapshots import snapshot_harmonizers, snapshot_steps
    from harmlib.train.loop import snapshot_path

    for step in (100, 50, 150):
        snapshot_path(tmp_path, step).parent.mkdir(parents=True, exist_ok=True)
        snapshot_path(tmp_path, step).write_bytes(b"")
    (tmp_path / "snapshots" / "stepxx.pt").write_bytes(b"")
    assert list(snapshot_steps(tmp_path / "snapshots")) == [50, 100, 150]
    assert snapshot_harmonizers(tmp_path / "nowhere", {}) == {}


def test_the_gmvae_gate_is_e1_against_its_thresholds():
    from harmlib.evaluation.gate import clustering_gate

    collapsed = clustering_gate(
        "gmvae", "cpu", GateConfig(), {"ACC": 0.2, "NMI": 0.0, "ARI": 0.0}, {"ACC": 0.55, "NMI": 0.48}
    )
    assert not gate_passed(collapsed)
    assert gate_failures(collapsed) == [
        "E1 clustering accuracy (components vs true scanners) 0.200 < 0.75",
        "E1 NMI (components vs true scanners) 0.000 < 0.50",
    ]
    assert "0.550 / 0.480" in set(collapsed["value"].astype(str))
    found = clustering_gate("gmvae", "cpu", GateConfig(), {"ACC": 0.8, "NMI": 0.6, "ARI": 0.5})
    assert gate_passed(found) and set(found["profile"]) == {"cpu"}


def test_the_histogram_classifier_reads_the_brain_not_the_background_noise():
    from harmlib.evaluation.gate import HistogramClassifier

    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(40)] * 3, indexing="ij"))
    brain = ((grid - 20) ** 2).sum(0) < 15**2
    clean = np.where(brain, rng.normal(0.6, 0.08, brain.shape), 0.0).astype(np.float32)
    noisy = np.where(brain, clean, rng.uniform(0.0, 0.25, brain.shape)).astype(
        np.float32
    )  # a noisy scanner's background
    from harmlib.data.datasets import Normalizer
    from harmlib.evaluation.clustering import intensity_histograms

    a, b = HistogramClassifier().features([clean, noisy])
    floor_a, floor_b = intensity_histograms(
        [Normalizer().forward(v)[0] for v in (clean, noisy)]
    )  # every voxel above -0.8
    assert (
        np.abs(floor_a - floor_b).sum() > 1.0
    )  # counted above a floor, the background noise dominates (measured 1.42)
    assert (
        np.abs(a - b).sum() < 0.1
    )  # over the brain the two are the same scanner (measured 0.058: Otsu's cut moves a little)


def _sceptic(model_si: float, model_tissue: float, lesion: float | None):
    """Per-case rows with the scale-invariant SSIMs, tissue errors and lesion contrast, and Nyul's beside them:
    before 0.90, rescan 0.98, Nyul 0.93 with tissue error 0.05."""
    rec, trav = _cases(0.97, 0.95, 0.97)
    paired = trav["target"] != "agnostic"
    trav.loc[paired, ["SI before", "SI after", "SI rescan"]] = [0.90, model_si, 0.98]
    trav.loc[paired, ["tissue error before", "tissue error after", "lesion kept"]] = [0.08, model_tissue, lesion]
    nyul = pd.DataFrame(
        {
            "target": ["A", "B"],
            "site": ["X", "X"],
            "SSIM after": [0.93, 0.92],
            "SI after": [0.93, 0.93],
            "tissue error after": [0.05, 0.05],
            "lesion kept": [0.9, 0.9],
        }
    )
    gate = GateConfig(nyul_margin=0.01, gap_closed=0.5, tissue_margin=0.0, lesion_kept=0.8)
    return gate_table("ssim_harmonizer", "tiny", gate, rec, trav, 0.9, nyul)


def test_the_sceptics_criteria_hold_only_above_nyul_the_gap_share_and_with_tissues_and_lesions_kept():
    """gap closed (0.95 - 0.90) / (0.98 - 0.90) = 0.625 >= 0.5, margin over Nyul 0.02 >= 0.01, tissue error below
    Nyul's, lesions kept 0.85 >= 0.8: the gate passes; each shortfall alone fails it, named."""
    assert gate_passed(_sceptic(0.95, 0.04, 0.85))
    cases = {
        "share of the rescan gap closed": (0.935, 0.04, 0.85),  # 0.4375 < 0.5 (and margin 0.005 < 0.01)
        "tissue-contrast error, Nyul's minus the model's": (0.95, 0.06, 0.85),
        "lesions' contrast to WM kept": (0.95, 0.04, 0.5),
    }
    for criterion, args in cases.items():
        fails = gate_failures(_sceptic(*args))
        assert any(criterion in f for f in fails), (criterion, fails)
    table = _sceptic(0.95, 0.04, None)  # no lesion in the cases: no lesion criterion
    assert not table["criterion"].str.contains("lesions' contrast").any() and gate_passed(table)


def test_the_headline_reads_the_margin_over_nyul_and_the_gap_closed():
    from harmlib.evaluation.claims import headline

    text = headline(_sceptic(0.95, 0.04, 0.85))
    assert (
        text
        == "headline: -> A: +0.0200 over Nyul, 62% of the rescan gap closed; -> B: +0.0200 over Nyul, 62% of the rescan gap closed"
    )
    assert headline(_gate()) == ""  # no rescan rows (real data): no headline


def test_a_chapters_key_result_reads_its_gate_and_its_claims_from_the_tables_it_wrote(tmp_path):
    """The box that opens a chapter: the gate's verdict with the criteria missed and the headline, each claim of the
    chapter's tables with its verdict (a missing table reads "not run"), then the chapter's own lines."""
    from harmlib.evaluation.claims import key_result
    from harmlib.evaluation.tables import write_gate

    write_gate(_sceptic(0.95, 0.04, 0.85), tmp_path, "ssim_harmonizer")
    write_gate(_gate(rec_ssim=0.85), tmp_path, "gmm_drit")
    text = key_result(tmp_path, ["paper1_table3"], ["ssim_harmonizer", "gmm_drit", "drit"], ["trained in 3 min"])
    lines = text.splitlines()
    assert lines[0].startswith(
        "- **SSIM-guided harmonizer (paper 1)**: passes its quality gate; -> A: +0.0200 over Nyul"
    )
    assert lines[1] == "- **GMM-DRIT (paper 2)**: below its quality gate (1 of 7 criteria missed)"
    assert lines[2] == "- **DRIT++ (paper 2's baseline)**: no quality gate measured"
    assert lines[3].startswith("- **not run**: Paper 1, Table 3: brain-age MAE") and "R2" in lines[4]
    assert lines[-1] == "- trained in 3 min" and len(lines) == 6
    assert key_result(tmp_path) == "- nothing measured yet"


def test_the_headline_writes_a_share_that_rounds_to_zero_without_a_sign():
    from harmlib.evaluation.claims import headline

    text = headline(_sceptic(0.89996, 0.04, 0.85))  # gap closed (0.89996 - 0.90) / 0.08 = -0.05 %
    assert "-0%" not in text and "0% of the rescan gap closed" in text, text
