"""Figures shared by the notebooks (matplotlib only; no computation that belongs elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from harmlib.ssim import SSIMComponents


def show_slice(
    ax: plt.Axes,
    img: np.ndarray,
    title: str = "",
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
):
    """A 2D slice in neurological display: first axis left to right, second axis upwards."""
    im = ax.imshow(np.asarray(img).T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return im


def plot_ssim_maps(
    x: np.ndarray,
    y: np.ndarray,
    comps: SSIMComponents,
    alpha: float,
    beta: float,
    gamma: float,
    fig: plt.Figure | None = None,
) -> plt.Figure:
    """x, y and the l, c, s and combined SSIM maps of one 2D pair (components of shape (1, 1, H, W))."""
    fig = fig or plt.figure(figsize=(13, 2.8))
    fig.clf()
    axes = fig.subplots(1, 6)
    vmax = float(max(x.max(), y.max()))
    show_slice(axes[0], x, "x (reference)", vmin=0, vmax=vmax)
    show_slice(axes[1], y, "y (other scanner)", vmin=0, vmax=vmax)
    maps = {
        "luminance l": (comps.luminance, 0, 1),
        "contrast c": (comps.contrast, 0, 1),
        "structure s": (comps.structure, -1, 1),
        f"l^{alpha:g} c^{beta:g} s^{gamma:g}": (comps.combine(alpha, beta, gamma), -1, 1),
    }
    for ax, (title, (m, lo, hi)) in zip(axes[2:], maps.items()):
        im = show_slice(ax, m[0, 0].detach().cpu().numpy(), title, cmap="viridis", vmin=lo, vmax=hi)
    fig.colorbar(im, ax=axes[2:], shrink=0.8)
    return fig


def plot_exponent_grid(values: np.ndarray, alphas: Sequence[float], gammas: Sequence[float], title: str) -> plt.Figure:
    """A heatmap of SSIM over a grid of (alpha, gamma) exponents."""
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    im = ax.imshow(values, origin="lower", cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas])
    ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_xlabel("gamma (structure)")
    ax.set_ylabel("alpha (luminance)")
    ax.set_title(title, fontsize=10)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax)
    return fig


def plot_volumes_grid(
    vols: dict[str, np.ndarray],
    planes: Sequence[tuple[int, float]] = ((1, 0.5), (2, 0.55)),
    vmax: float | None = None,
    width: float = 1.8,
    per_row: int = 7,
) -> plt.Figure:
    """One column per volume (titled by its key), one row per plane (axis, fraction of the axis); more than
    ``per_row`` volumes wrap onto further rows, so titles stay legible."""
    names = list(vols)
    chunks = [names[i : i + per_row] for i in range(0, len(names), per_row)]
    cols = min(len(names), per_row)
    fig, axes = plt.subplots(
        len(planes) * len(chunks), cols, figsize=(width * cols, width * 1.15 * len(planes) * len(chunks)), squeeze=False
    )
    vmax = vmax or float(np.percentile(np.concatenate([v.ravel() for v in vols.values()]), 99.8))
    for c, chunk in enumerate(chunks):
        for j in range(cols):
            for i, (axis, frac) in enumerate(planes):
                ax = axes[c * len(planes) + i, j]
                if j >= len(chunk):
                    ax.set_axis_off()
                    continue
                v = vols[chunk[j]]
                show_slice(
                    ax, np.take(v, int(frac * v.shape[axis]), axis=axis), chunk[j] if i == 0 else "", vmin=0, vmax=vmax
                )
    fig.tight_layout()
    return fig


def plot_subject_rows(
    rows: dict[str, dict[str, np.ndarray]], plane: tuple[int, float] = (2, 0.55), width: float = 2.0
) -> plt.Figure:
    """One row per subject (keyed by its label, e.g. "sub-01\\nsite"), one column per version of *that* subject
    (input, each target, the truth), one plane (axis, fraction); each row on its own intensity scale (its 99.8th
    percentile), so a site's brightness does not wash out another's. Keyed by subject, a row cannot mix subjects."""
    versions = list(next(iter(rows.values())))
    fig, axes = plt.subplots(
        len(rows), len(versions), figsize=(width * len(versions), width * 1.15 * len(rows)), squeeze=False
    )
    axis, frac = plane
    for r, (label, vols) in enumerate(rows.items()):
        if list(vols) != versions:
            raise ValueError(f"row {label!r} has versions {list(vols)}, the first row {versions}")
        vmax = float(np.percentile(np.concatenate([v.ravel() for v in vols.values()]), 99.8)) or 1.0
        for c, (name, v) in enumerate(vols.items()):
            show_slice(
                axes[r, c], np.take(v, int(frac * v.shape[axis]), axis=axis), name if r == 0 else "", vmin=0, vmax=vmax
            )
        axes[r, 0].text(-0.04, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def plot_loss_curves(log, title: str = "") -> plt.Figure:
    """The logged loss terms against the step in two panels, the discriminators' (``d_*``) and the rest (the
    generator side), each term relative to its first logged value (terms differ by orders of magnitude; what a
    reader looks for is which fall, which rise and which stay flat)."""
    terms = [c for c in log.columns if c not in ("step", "seconds")]
    groups = {"discriminators": [t for t in terms if t.startswith("d_")]}
    groups["generator side"] = [t for t in terms if t not in groups["discriminators"]]
    groups = {k: v for k, v in groups.items() if v}
    fig, axes = plt.subplots(1, len(groups), figsize=(5.0 * len(groups), 3.0), squeeze=False)
    for ax, (name, group) in zip(axes[0], groups.items()):
        for term in group:
            y = log[term].to_numpy(dtype=float)
            first = next((v for v in y if np.isfinite(v) and v != 0), 1.0)
            ax.plot(log["step"], y / abs(first), lw=1, label=term)
        ax.set_title(f"{name}: each term / its first value", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, frameon=False, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_wasserstein_heatmaps(matrices: dict, vmax: float | None = None, width: float = 3.4) -> plt.Figure:
    """Paper 1, Fig. 5: one heatmap of pairwise Wasserstein distances (square DataFrames) per version, one color scale."""
    vmax = vmax or max(float(np.max(m.to_numpy())) for m in matrices.values()) or 1.0
    # constrained layout: the colorbar gets its own room instead of squeezing the last panel
    fig, axes = plt.subplots(
        1, len(matrices), figsize=(width * len(matrices) + 0.8, width * 0.95), squeeze=False, layout="constrained"
    )
    for ax, (title, m) in zip(axes[0], matrices.items()):
        im = ax.imshow(m.to_numpy(), cmap="magma", vmin=0, vmax=vmax)
        labels = [str(s).split("@")[-1] for s in m.index]  # sites are shorter than scanner@site
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels if ax is axes[0][0] else [], fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Wasserstein distance")
    return fig


def plot_intensity_distributions(panels: dict, xlabel: str = "mean voxel intensity", width: float = 3.2) -> plt.Figure:
    """Paper 1, Fig. 4 / paper 2, Fig. 4: per-domain distributions, one panel per version.

    ``panels``: {version: {domain: values}} (samples: drawn as kernel densities) or
    {version: (bin_edges, {domain: density})} (histograms: drawn as curves).
    """
    from scipy.stats import gaussian_kde

    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), width * 0.8), squeeze=False, sharex=True)
    samples = [np.asarray(v, float) for data in panels.values() if not isinstance(data, tuple) for v in data.values()]
    lo = min((float(np.min(v)) for v in samples), default=0.0)  # one x-range for every panel: they are compared
    hi = max((float(np.max(v)) for v in samples), default=1.0)
    for ax, (title, data) in zip(axes[0], panels.items()):
        if isinstance(data, tuple):
            edges, dens = data
            for d, y in dens.items():
                ax.plot((edges[:-1] + edges[1:]) / 2, y, lw=1, label=str(d).split("@")[-1])
        else:
            grid = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 200)
            for d, v in data.items():
                v = np.asarray(v, dtype=float)
                y = gaussian_kde(v)(grid) if len(v) > 1 and np.ptp(v) > 0 else np.zeros_like(grid)
                ax.plot(grid, y, lw=1, label=str(d).split("@")[-1])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))  # tick labels that do not run into each other
    axes[0, -1].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def plot_attribute_pca(
    xy: np.ndarray, labels: Sequence[int], names: Sequence[str], ratio: Sequence[float] | None = None, title: str = ""
) -> plt.Figure:
    """Paper 2, Fig. 2: the 2D PCA projection of the attribute space, one colour per scanner."""
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    labels = np.asarray(labels)
    for k, name in enumerate(names):
        pts = xy[labels == k]
        ax.scatter(pts[:, 0], pts[:, 1], s=10, alpha=0.75, label=str(name).split("@")[-1])
    r = ratio if ratio is not None else (np.nan, np.nan)
    ax.set_xlabel(f"PC 1 ({r[0]:.0%} of variance)", fontsize=8)
    ax.set_ylabel(f"PC 2 ({r[1]:.0%} of variance)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False, title="scanner", title_fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_class_means(
    images: np.ndarray, labels: Sequence[int], names: Sequence[str], title: str = "", width: float = 1.9
) -> plt.Figure:
    """One panel per class: the mean of its 2D ``images`` (N, X, Z), Z up, on one symmetric colour scale (e.g. the
    GM-VAE's field-view inputs per scanner)."""
    labels = np.asarray(labels)
    means = [images[labels == k].mean(0) for k in range(len(names))]
    v = float(max(np.abs(m).max() for m in means)) or 1.0
    fig, axes = plt.subplots(1, len(names), figsize=(width * len(names), width * 1.15), squeeze=False)
    for ax, m, name in zip(axes[0], means, names):
        im = ax.imshow(m.T, origin="lower", cmap="RdBu_r", vmin=-v, vmax=v)
        ax.set_title(str(name).split("@")[-1], fontsize=8)
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8).ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def plot_translation_grid(
    rows: dict[str, dict[str, np.ndarray]], width: float = 1.5, vmin: float = -1.0, vmax: float = 1.0
) -> plt.Figure:
    """Paper 2, Fig. 3: one row per source image, its columns (input, scanner-free, each target) as given."""
    cols = list(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(width * len(cols), width * 1.05 * len(rows)), squeeze=False)
    for i, (row, images) in enumerate(rows.items()):
        for j, col in enumerate(cols):
            show_slice(axes[i, j], images[col], col if i == 0 else "", vmin=vmin, vmax=vmax)
        axes[i, 0].text(
            -0.08, 0.5, row, transform=axes[i, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8
        )
    fig.tight_layout()
    return fig


PLANES = {"axial": (2, 0.55), "coronal": (1, 0.5), "sagittal": (0, 0.42)}


def _plane(v: np.ndarray, axis: int, frac: float) -> np.ndarray:
    return np.take(v, int(frac * (v.shape[axis] - 1)), axis=axis)


def plot_harmonization_planes(
    original: np.ndarray, harmonized: dict[str, np.ndarray], title: str = "", width: float = 1.55
) -> plt.Figure:
    """Paper 1, Fig. 3: axial, coronal and sagittal slices of an original and its harmonized versions,
    each followed by a row of differences (harmonized - original) on one symmetric colour scale."""
    cols = {"original": original, **harmonized}
    # each image on its own grey scale (its brain's 99.5th percentile) so its contrast shows; the
    # difference rows show the intensity changes on one scale
    vmax = {k: float(np.percentile(v[v > 0], 99.5)) if (v > 0).any() else 1.0 for k, v in cols.items()}
    diffs = {k: v - original for k, v in harmonized.items()}
    dmax = max(float(np.percentile(np.abs(d), 99.5)) for d in diffs.values()) or 1.0
    fig, axes = plt.subplots(  # constrained: the colorbar gets its own room, every column keeps its width
        2 * len(PLANES),
        len(cols),
        figsize=(width * len(cols) + 0.9, width * 2 * len(PLANES)),
        squeeze=False,
        layout="constrained",
    )
    for p, (plane, (axis, frac)) in enumerate(PLANES.items()):
        for j, (name, vol) in enumerate(cols.items()):
            show_slice(axes[2 * p, j], _plane(vol, axis, frac), name if p == 0 else "", vmin=0, vmax=vmax[name])
            ax = axes[2 * p + 1, j]
            ax.set_axis_off()
            if name in diffs:
                im = show_slice(ax, _plane(diffs[name], axis, frac), cmap="RdBu_r", vmin=-dmax, vmax=dmax)
        axes[2 * p, 0].text(
            -0.1, 0.5, plane, transform=axes[2 * p, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8
        )
    axes[1, 0].text(
        0.5,
        0.5,
        "difference\n(harmonized -\noriginal)",
        ha="center",
        va="center",
        fontsize=7,
        transform=axes[1, 0].transAxes,
    )
    if diffs:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.3, label="intensity difference")
    fig.suptitle(title, fontsize=9)
    return fig


def plot_convergence(df, thresholds: dict[str, float] | None = None, title: str = "") -> plt.Figure:
    """The quality gate's metrics against the training step (`harmlib.evaluation.gate.convergence`).

    One solid line per SSIM metric; a metric's ``"<name> (unharmonized)"`` column (SSIM of the input to the
    truth, the bar to beat) is drawn dashed in the same colour; ``thresholds`` ({metric: value}, e.g. the gate's
    reconstruction threshold) are dotted horizontal lines in their metric's colour. A ``translation accuracy``
    column gets a panel of its own (a share of scans, on another scale than SSIM).
    """
    thresholds = thresholds or {}
    metrics = [c for c in df.columns if c != "step" and not c.endswith(" (unharmonized)")]
    shares = [m for m in metrics if m.endswith("accuracy")]
    metrics = [m for m in metrics if m not in shares]
    if shares:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.0, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
    else:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, m in enumerate(metrics):
        color = colors[k % len(colors)]
        ax.plot(df["step"], df[m], marker="o", ms=3, lw=1.3, color=color, label=m)
        if f"{m} (unharmonized)" in df.columns:
            ax.plot(df["step"], df[f"{m} (unharmonized)"], ls="--", lw=1, color=color, label=f"{m} (unharmonized)")
        if m in thresholds:
            ax.axhline(thresholds[m], ls=":", lw=1.2, color=color, label=f"gate: {m} >= {thresholds[m]:g}")
    for m, v in thresholds.items():
        if m not in metrics and m not in shares:
            ax.axhline(v, ls=":", lw=1.2, color="0.3", label=f"gate: {m} >= {v:g}")
    ax.set_xlabel("training step")
    ax.set_ylabel("SSIM over the brain")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if shares:
        for m in shares:
            ax2.plot(df["step"], df[m], marker="o", ms=3, lw=1.3, color="k", label=m)
            if m in thresholds:
                ax2.axhline(thresholds[m], ls=":", lw=1.2, color="k", label=f"gate >= {thresholds[m]:g}")
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_xlabel("training step")
        ax2.set_ylabel("share of outputs read as the target")
        ax2.set_title("translation (independent classifier)", fontsize=10)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7, loc="lower right")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.24), ncol=2)  # below the x label
    fig.tight_layout()
    return fig


def plot_folds(cv, metric: str, title: str = "") -> plt.Figure:
    """One box per version of a cross-validation's per-fold ``metric`` (``evaluation.downstream.cross_validate``)."""
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    names = list(dict.fromkeys(cv.version))
    ax.boxplot([cv[cv.version == n][metric] for n in names], tick_labels=names)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    return fig


def reader_number(x: float) -> str:
    """A number as a reader reads it: 3 decimals (4 significant digits under 0.1), no "-0.000", nothing for NaN."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(x)
    x = float(x)
    if abs(x) < 0.1 and x != 0:
        text = f"{x:.4g}"
        return "0" if float(text) == 0 else text
    text = f"{x:.3f}"
    return text[1:] if text in ("-0.000",) else text


def reader_table(df) -> str:
    """A table's HTML for the book: no pandas index unless it carries labels, numbers by :func:`reader_number`, empty
    cells for missing values, booleans as yes / no."""
    import pandas as pd

    show = df.copy()
    for col in show.columns:
        if pd.api.types.is_bool_dtype(show[col]) or pd.api.types.is_numeric_dtype(show[col]):
            show[col] = [reader_number(v) for v in show[col]]
        else:
            show[col] = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in show[col]]
    keep_index = not isinstance(df.index, pd.RangeIndex)
    return show.to_html(index=keep_index, classes="harmlib-table", border=0, na_rep="")


def reader_tables() -> None:
    """In a notebook: every DataFrame displayed from now on is drawn by :func:`reader_table` (called once per
    chapter, in its set-up cell); outside IPython it does nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    import pandas as pd

    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, reader_table)


def plot_budget(table, needed: float, title: str = "") -> plt.Figure:
    """How a model's gate moves with its training budget (`harmlib.evaluation.ablation.budget_table`): the
    scale-invariant SSIM to the truth at A and B against the steps, with Nyul fitted to each target (dashed, the
    model's value minus its margin) and the gate's bar, Nyul + ``needed`` (dotted). Log-scaled steps."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, target in enumerate(("A", "B")):
        si, margin = table[f"SSIM to truth {target}"], table[f"margin over Nyul {target}"]
        nyul = float((si - margin).median())  # the same Nyul at every budget: its median says it once
        ax.plot(table["steps"], si, marker="o", ms=4, lw=1.3, color=colors[k], label=f"model -> {target}")
        ax.axhline(nyul, ls="--", lw=1, color=colors[k], label=f"Nyul -> {target}")
        ax.axhline(nyul + needed, ls=":", lw=1.2, color=colors[k], label=f"gate: Nyul + {needed:g} ({target})")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(list(table["steps"]), [str(s) for s in table["steps"]])
    ax.set_xlabel("training steps")
    ax.set_ylabel("scale-invariant SSIM to the truth")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig
