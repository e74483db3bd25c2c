"""Image-pair metrics on volumes: SSIM and its terms, PSNR, mean brain intensity."""

from __future__ import annotations

import numpy as np
import torch

from harmlib.ssim import ssim_components


def _t(v: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))[None, None]


def ssim_terms(
    a: np.ndarray, b: np.ndarray, data_range: float | None = None, win_size: int = 11, mask: np.ndarray | None = None
) -> dict[str, float]:
    """Mean SSIM and its luminance, contrast and structure terms between two volumes.

    The data range defaults to the larger of the two images' ranges, so that two differently
    scaled scans of one subject are compared on one scale. ``mask`` (the volumes' shape, e.g.
    `brain_mask(a) | brain_mask(b)`) averages the maps over those voxels only: with a noisy rather
    than a zero background, whole-volume means mostly score the background.
    """
    win = min(win_size, (min(a.shape) - 1) // 2 * 2 + 1)
    dr = data_range or float(max(np.ptp(a), np.ptp(b)))
    comps = ssim_components(_t(a), _t(b), dr, win_size=win)
    sel = (lambda m: m[0, 0][map_mask(mask, win)]) if mask is not None else (lambda m: m)  # noqa: E731
    maps = {
        "ssim": comps.combine(),
        "luminance": comps.luminance,
        "contrast": comps.contrast,
        "structure": comps.structure,
    }
    return {k: sel(m).mean().item() for k, m in maps.items()}


def map_mask(mask: np.ndarray, win_size: int) -> torch.Tensor:
    """A volume mask cropped to the "valid" SSIM maps (each map voxel is its window's centre)."""
    r = (win_size - 1) // 2
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))
    m = m[tuple(slice(r, s - r) for s in m.shape)]
    if not m.any():
        raise ValueError("ssim mask: no voxel left inside the valid SSIM map; pass a brain mask of the volumes' shape")
    return m


def scale_free(v: np.ndarray, mask: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """``v`` divided by its ``percentile`` inside ``mask``: a global rescale, which any normalization undoes, then
    earns nothing in a comparison (scale-invariant SSIM, fine detail)."""
    p = float(np.percentile(v[mask], percentile))
    return (v / p if p > 0 else v).astype(np.float32)


def fine_detail(v: np.ndarray, mask: np.ndarray) -> float:
    """The SD of what a Gaussian of 1 voxel removes (v - G_1(v)) over ``mask``, on the scale-free ``v``: the detail
    at the grid's own resolution (an image of coarser resolution on this grid has less of it; noise counts too)."""
    from scipy import ndimage

    u = scale_free(v, mask)
    return float((u - ndimage.gaussian_filter(u, 1.0))[mask].std())


def tissue_ratios(v: np.ndarray, labels: np.ndarray, names: tuple[str, ...], min_voxels: int = 20) -> dict[str, float]:
    """Each labelled tissue's mean over WM's (label k + 1 is ``names[k]``; WM is ``names.index("wm") + 1``): the
    tissue contrast a harmonizer must bring to the target's, whatever the global scale."""
    wm = float(v[labels == names.index("wm") + 1].mean())
    return {
        t: float(v[labels == k + 1].mean()) / wm
        for k, t in enumerate(names)
        if t != "wm" and (labels == k + 1).sum() >= min_voxels
    }


def tissue_contrast_error(v: np.ndarray, truth: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> float:
    """Mean over tissues of |tissue/WM ratio in ``v`` - in ``truth``| (`tissue_ratios`)."""
    a, b = tissue_ratios(v, labels, names), tissue_ratios(truth, labels, names)
    return float(np.mean([abs(a[t] - b[t]) for t in a]))


def lesion_contrast_kept(v: np.ndarray, truth: np.ndarray, labels: np.ndarray, lesion: int, wm: int) -> float:
    """The lesions' contrast to the WM around them (1 - lesion mean / surrounding WM mean, WM within 3 voxels) in ``v``
    as a share of the truth's; NaN without lesion voxels."""
    from scipy import ndimage

    les = labels == lesion
    if les.sum() < 5:
        return float("nan")
    around = ndimage.binary_dilation(les, iterations=3) & (labels == wm)

    def contrast(x: np.ndarray) -> float:
        return 1 - float(x[les].mean()) / float(x[around].mean())

    return contrast(v) / contrast(truth)


def psnr(a: np.ndarray, ref: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio of ``a`` against ``ref`` (dB)."""
    dr = data_range or float(np.ptp(ref))
    mse = float(np.mean((a.astype(np.float64) - ref) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(dr**2 / mse)


def mean_brain_intensity(v: np.ndarray) -> float:
    """Mean intensity of the voxels above the volume's mean (the brain, without background noise)."""
    return float(v[v > v.mean()].mean())


def otsu_threshold(v: np.ndarray, bins: int = 256) -> float:
    """Otsu's (1979) threshold: the cut of the intensity histogram that maximizes between-class variance."""
    hist, edges = np.histogram(np.asarray(v, dtype=np.float64).ravel(), bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[1:][np.argmax(between[:-1])])  # the last cut would leave class 1 empty


def brain_mask(v: np.ndarray) -> np.ndarray:
    """Head/brain voxels of a skull-stripped T1 on an MNI grid: above Otsu's threshold.

    The synthetic cohort's background is Rician noise, not exact zeros, so ``v > 0`` would keep it;
    Otsu's cut between the noise and the tissue mode needs no tuned number.
    """
    v = np.asarray(v)
    if not np.isfinite(v).all() or np.ptp(v) == 0:
        raise ValueError(
            f"brain_mask: a volume of shape {v.shape} is constant or not finite; pass a T1 with a brain in it"
        )
    return v > otsu_threshold(v)


def slice_flicker(out: np.ndarray, ref: np.ndarray, axis: int = 1) -> float:
    """How much a slice-by-slice output jumps between neighbouring planes along ``axis`` (1: coronal), beyond
    what its input does.

    Per plane k, d_k is the mean change out - ref over the input's brain in that plane (`brain_mask`), in
    units of the input's mean brain intensity. A harmonizer that treats the volume as one (a 3D model, Nyul)
    changes neighbouring planes alike, so d_k is smooth in k; one that translates each plane on its own can
    shift each differently. The flicker is the mean |d_k - (d_{k-1} + d_{k+1}) / 2| over planes with brain on
    both sides (the second difference: a smooth trend across the volume does not count). 0: no jumps;
    0.01: neighbouring planes differ by ~1 % of the brain's intensity.
    """
    if out.shape != ref.shape:
        raise ValueError(f"slice_flicker: output {out.shape} and input {ref.shape} differ in shape")
    mask = brain_mask(ref)
    scale = float(ref[mask].mean()) if mask.any() else 1.0
    diff = np.moveaxis((out - ref) * mask, axis, 0).reshape(ref.shape[axis], -1).sum(1)
    n = np.moveaxis(mask, axis, 0).reshape(ref.shape[axis], -1).sum(1)
    planes = np.flatnonzero(n > 0)
    if planes.size < 3:
        return 0.0
    d = diff[planes] / n[planes] / scale
    inner = (planes[1:-1] - 1 == planes[:-2]) & (planes[1:-1] + 1 == planes[2:])  # contiguous neighbours only
    second = np.abs(d[1:-1] - 0.5 * (d[:-2] + d[2:]))[inner]
    return float(second.mean()) if second.size else 0.0
