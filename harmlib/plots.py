"""Figures shared by the notebooks (matplotlib only; no computation that belongs elsewhere)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from harmlib.ssim import SSIMComponents


def show_slice(ax: plt.Axes, img: np.ndarray, title: str = "", cmap: str = "gray", vmin: float | None = None, vmax: float | None = None):
    """A 2D slice in neurological display: first axis left to right, second axis upwards."""
    im = ax.imshow(np.asarray(img).T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return im


def plot_ssim_maps(x: np.ndarray, y: np.ndarray, comps: SSIMComponents, alpha: float, beta: float, gamma: float, fig: plt.Figure | None = None) -> plt.Figure:
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


def plot_volumes_grid(vols: dict[str, np.ndarray], planes: Sequence[tuple[int, float]] = ((1, 0.5), (2, 0.55)), vmax: float | None = None, width: float = 1.8) -> plt.Figure:
    """One column per volume (titled by its key), one row per plane (axis, fraction of the axis)."""
    fig, axes = plt.subplots(len(planes), len(vols), figsize=(width * len(vols), width * 1.1 * len(planes)), squeeze=False)
    vmax = vmax or float(np.percentile(np.concatenate([v.ravel() for v in vols.values()]), 99.8))
    for j, (name, v) in enumerate(vols.items()):
        for i, (axis, frac) in enumerate(planes):
            show_slice(axes[i, j], np.take(v, int(frac * v.shape[axis]), axis=axis), name if i == 0 else "", vmin=0, vmax=vmax)
    fig.tight_layout()
    return fig


def plot_loss_curves(log, title: str = "") -> plt.Figure:
    """Every logged loss term against the step, one small panel each."""
    terms = [c for c in log.columns if c not in ("step", "seconds")]
    cols = min(5, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False)
    for ax, term in zip(axes.ravel(), terms):
        ax.plot(log["step"], log[term], lw=1)
        ax.set_title(term, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(terms):]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
