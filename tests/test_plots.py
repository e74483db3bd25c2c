"""Figures that can be wrong: their structure is tested where a mix-up would mislead a reader."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from harmlib.plots import plot_subject_rows


def test_each_row_shows_one_subjects_input_and_outputs():
    """Chapter 05's grid once showed one subject's input beside another's outputs (dict keys reused per subject):
    keyed by subject, every panel of a row is that subject's."""
    versions = ("input", "-> A", "-> B", "truth at A")
    rows = {
        f"sub-{k}\\nsite {k}": {v: np.full((8, 9, 10), 10.0 * k + j) for j, v in enumerate(versions)} for k in (1, 2, 3)
    }
    fig = plot_subject_rows(rows, plane=(2, 0.5))
    axes = np.asarray(fig.axes).reshape(3, len(versions))
    for r, (label, vols) in enumerate(rows.items()):
        assert any(label == t.get_text() for t in axes[r, 0].texts)
        for c, name in enumerate(versions):
            shown = axes[r, c].images[0].get_array()
            assert np.allclose(shown, vols[name][:, :, 5].T)  # this row's subject, this version
    assert [axes[0, c].get_title() for c in range(len(versions))] == list(versions)


def test_rows_with_different_versions_are_refused():
    with pytest.raises(ValueError, match="has versions"):
        plot_subject_rows({"a": {"input": np.ones((4, 4, 4))}, "b": {"other": np.ones((4, 4, 4))}})


def test_tables_for_readers_have_no_nan_no_negative_zero_and_three_decimals():
    import pandas as pd

    from harmlib.plots import reader_number, reader_table

    assert [reader_number(v) for v in (0.123456, -0.00001, -0.0004, 12.3456, float("nan"), True, 3)] == [
        "0.123",
        "-1e-05",
        "-0.0004",
        "12.346",
        "",
        "yes",
        "3",
    ]
    html = reader_table(
        pd.DataFrame({"a": [1.0, float("nan"), -0.0], "holds": [True, False, True], "s": ["x", None, "z"]})
    )
    assert not any(bad in html for bad in ("NaN", "nan", "None", "-0.000", "<th>0</th>"))
    assert "yes" in html and "no" in html


def test_distributions_compared_side_by_side_share_one_x_range():
    from harmlib.plots import plot_intensity_distributions

    rng = np.random.default_rng(0)
    panels = {"unharmonized": {"a": rng.normal(0.4, 0.1, 50), "b": rng.normal(0.7, 0.1, 50)}}
    panels["harmonized"] = {"a": rng.normal(0.58, 0.001, 50), "b": rng.normal(0.585, 0.001, 50)}
    fig = plot_intensity_distributions(panels)
    limits = {ax.get_xlim() for ax in fig.axes}
    assert len(limits) == 1  # the narrow harmonized panel is drawn on the unharmonized panel's range


def test_loss_curves_are_two_readable_panels_whatever_the_number_of_terms():
    import pandas as pd

    from harmlib.plots import plot_loss_curves

    log = pd.DataFrame({"step": range(5), "seconds": range(5)} | {f"d_{k}": np.arange(1, 6.0) for k in "ab"})
    log = log.assign(**{f"g{k}": np.linspace(2, 1, 5) for k in range(11)})
    fig = plot_loss_curves(log)
    assert len(fig.axes) == 2 and sum(len(ax.lines) for ax in fig.axes) == 13
    assert all(np.isclose(line.get_ydata()[0], 1.0) for ax in fig.axes for line in ax.lines)


def test_a_grid_of_many_volumes_wraps_and_the_colorbar_does_not_squeeze_a_panel():
    import pandas as pd

    from harmlib.plots import plot_volumes_grid, plot_wasserstein_heatmaps

    fig = plot_volumes_grid({f"site {k}": np.ones((8, 8, 8)) * k for k in range(14)}, planes=((2, 0.5),))
    assert len([ax for ax in fig.axes if ax.get_title()]) == 14 and np.asarray(fig.axes).size == 14
    from harmlib.plots import plot_harmonization_planes

    vol = np.random.default_rng(0).uniform(0.1, 1, (20, 24, 20))
    fig = plot_harmonization_planes(vol, {"A": vol * 1.1, "B": vol * 0.9, "nyul": vol + 0.05})
    fig.canvas.draw()
    images = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"][:4]  # the first row: 4 columns
    widths = [ax.get_position().width for ax in images]
    assert max(widths) - min(widths) < 0.005 * max(widths), widths  # the Nyul column is as wide as the others
    m = pd.DataFrame(np.eye(3), index=list("abc"), columns=list("abc"))
    fig = plot_wasserstein_heatmaps({"unharmonized": m, "A": m, "Nyul": m})
    fig.canvas.draw()
    widths = [ax.get_position().width for ax in fig.axes[:3]]
    assert max(widths) - min(widths) < 0.01 * max(widths)
