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
