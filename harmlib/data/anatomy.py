"""Synthetic anatomy: one subject's tissue maps, warped and aged, on the FSL MNI grid.

Built from the ICBM152 2009 priors that ship with nilearn (T1, GM, WM, brain mask; CSF = mask - GM
- WM), block-averaged exactly to the working resolution. Per subject:

* a smooth diffeomorphic warp (scaling and squaring of a smooth velocity field, ~3 mm) and a head
  size factor (+/-3 %, males ~2 % larger);
* age: ventricle enlargement, cortical GM thinning to CSF and white-matter hypointensities from
  about 50, and thicker cortex in childhood (ages ~8 to 90);
* an AD-like effect: extra global atrophy and medial-temporal (hippocampal) GM loss;
* the residual of the template T1 over its 3-class fit (subcortical detail) and a fine texture.

The result is a dict of probability maps (csf, gm, wm, the deep nuclei caudate, putamen, pallidum, thalamus, and
lesion; they sum to the brain mask) plus the residual and texture, which ``harmlib.data.synthetic`` renders at any
scanner site.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from harmlib.data.mni import block_average, fsl_grid_affine
from harmlib.data.physics import TISSUES

HIPPOCAMPI_MM = ((-27.0, -22.0, -14.0), (27.0, -22.0, -14.0))  # approximate MNI centres
# The deep grey nuclei as ellipsoids in MNI space (centre and semi-axes, mm; mirrored across the midline): approximate
# centroids and extents of the Harvard-Oxford subcortical atlas's structures. No atlas ships offline, so each nucleus
# is its ellipsoid (soft edge) within the template's non-CSF brain; the template T1's residual keeps their detail.
NUCLEI_MM = {
    "caudate": ((13.0, 10.0, 10.0), (5.0, 13.0, 8.0)),
    "putamen": ((25.0, 2.0, 0.0), (5.5, 14.0, 8.0)),
    "pallidum": ((19.0, -4.0, -1.0), (3.5, 7.5, 4.5)),
    "thalamus": ((11.0, -18.0, 7.0), (7.0, 11.0, 7.5)),
}
VENTRICLE_BOX_MM = ((-32, 32), (-48, 24), (-4, 34))  # lateral ventricles live inside this box


@dataclass(frozen=True)
class Subject:
    """Who is scanned: the anatomy depends only on these fields and the seed."""

    subject: str
    age: float
    sex: str  # "M" or "F"
    diagnosis: str  # "HC" or "AD"
    seed: int


@lru_cache(maxsize=3)
def priors(voxel_mm: int) -> dict[str, np.ndarray]:
    """Template tissue priors and helper maps at ``voxel_mm`` on the FSL grid (cached)."""
    from nilearn import datasets as nd  # files ship inside nilearn

    def crop(img) -> np.ndarray:
        d = np.asarray(img.get_fdata(), dtype=np.float32)
        return np.ascontiguousarray(d[7:189, 8:226, 0:182][::-1])

    t1 = crop(nd.load_mni152_template(resolution=1))
    gm, wm = crop(nd.load_mni152_gm_template(resolution=1)), crop(nd.load_mni152_wm_template(resolution=1))
    mask = crop(nd.load_mni152_brain_mask(resolution=1))
    gm, wm = gm * mask, wm * mask
    csf = np.clip(mask - gm - wm, 0, None)
    nuclei = _nuclei(gm, wm)
    for frac in nuclei.values():  # each nucleus takes its share of the GM and WM it lies in
        gm, wm = gm - frac * gm / np.maximum(gm + wm, 1e-6), wm - frac * wm / np.maximum(gm + wm, 1e-6)
    # Residual: what the tissue model of the template misses (vessels, partial volume, nuclei's inner texture).
    inside = mask > 0.5
    design = np.stack([csf[inside], gm[inside], wm[inside], *(n[inside] for n in nuclei.values())], 1)
    coef, *_ = np.linalg.lstsq(design, t1[inside], rcond=None)
    resid = np.zeros_like(t1)
    resid[inside] = t1[inside] - design @ coef
    maps = {"csf": csf, "gm": gm, "wm": wm, **nuclei, "mask": mask, "resid": resid}
    maps = {k: block_average(v, voxel_mm) for k, v in maps.items()}
    xyz = world_grid(maps["gm"].shape, voxel_mm)
    box = np.ones(maps["gm"].shape, bool)
    for ax, (lo, hi) in enumerate(VENTRICLE_BOX_MM):
        box &= (xyz[..., ax] > lo) & (xyz[..., ax] < hi)
    maps["vent"] = (maps["csf"] * box * (maps["csf"] > 0.5)).astype(np.float32)
    maps["hippo"] = sum(np.exp(-((xyz - np.array(c)) ** 2).sum(-1) / (2 * 8.0**2)) for c in HIPPOCAMPI_MM).astype(
        np.float32
    )
    maps["template_contrast"] = np.float32(coef[2] - coef[1])  # WM - GM of the template's fit
    return maps


def _nuclei(gm: np.ndarray, wm: np.ndarray) -> dict[str, np.ndarray]:
    """Each deep nucleus's fraction of every 1 mm voxel: its ellipsoids (both hemispheres, a 1.5 mm soft edge) times
    the voxel's GM + WM; where ellipsoids overlap, shared in proportion."""
    xyz = world_grid(gm.shape, 1)
    soft = {}
    for name, (centre, radii) in NUCLEI_MM.items():
        inside = np.zeros(gm.shape, np.float32)
        for side in (-1.0, 1.0):
            c = np.array([side * centre[0], centre[1], centre[2]], np.float32)
            r = np.sqrt((((xyz - c) / np.array(radii, np.float32)) ** 2).sum(-1))  # 1 on the ellipsoid's surface
            inside = np.maximum(inside, 1 / (1 + np.exp(np.clip((r - 1) * min(radii) / 1.5, -30, 30))))
        soft[name] = inside
    total = sum(soft.values())
    share = np.where(total > 1, 1 / np.maximum(total, 1e-6), 1.0)
    return {k: (v * share * (gm + wm)).astype(np.float32) for k, v in soft.items()}


def world_grid(shape: tuple[int, ...], voxel_mm: int) -> np.ndarray:
    """World (mm) coordinates of every voxel of the FSL grid, shape (*shape, 3)."""
    aff = fsl_grid_affine(voxel_mm)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float64)
    return (ijk @ aff[:3, :3].T + aff[:3, 3]).astype(np.float32)


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], voxel_mm: float, fwhm_mm: float, n: int = 1
) -> np.ndarray:
    """``n`` smooth Gaussian random fields of unit SD, shape (n, *shape), correlated over ``fwhm_mm``.

    Smooth fields need no fine grid: white noise is filtered on a grid ~6 samples per FWHM and
    interpolated up, which costs a fraction of filtering at full resolution.
    """
    step = max(float(voxel_mm), fwhm_mm / 6.0)
    coarse = tuple(int(np.ceil(s * voxel_mm / step)) + 2 for s in shape)
    sigma = fwhm_mm / 2.355 / step
    f = np.stack([ndimage.gaussian_filter(rng.standard_normal(coarse), sigma, mode="reflect") for _ in range(n)])
    size = [int(round((s - 1) * voxel_mm / step)) + 1 for s in shape]  # the coarse span covering the volume
    up = F.interpolate(
        torch.from_numpy(f[:, : size[0], : size[1], : size[2]].copy()).float()[None],
        size=shape,
        mode="trilinear",
        align_corners=True,
    )[0]
    up = up.numpy()
    return ((up - up.mean()) / (up.std() + 1e-12)).astype(np.float32)


def _sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear sampling of (C, D, H, W) maps at voxel coordinates (D, H, W, 3)."""
    size = torch.tensor(maps.shape[1:], dtype=coords.dtype)
    grid = (2 * coords / (size - 1) - 1).flip(-1)  # grid_sample wants (x=W, y=H, z=D) in [-1, 1]
    return F.grid_sample(maps[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0]


def diffeomorphic_displacement(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    voxel_mm: int,
    amplitude_mm: float = 3.0,
    smooth_mm: float = 14.0,
    steps: int = 6,
) -> torch.Tensor:
    """Displacement (D, H, W, 3) in voxels: exp of a smooth velocity field by scaling and squaring."""
    vel = smooth_noise(rng, shape, voxel_mm, smooth_mm * 2.355, 3) * (amplitude_mm / voxel_mm)
    disp = torch.from_numpy(np.moveaxis(vel, 0, -1)) / 2**steps
    base = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij"), -1)
    for _ in range(steps):  # phi <- phi o phi
        disp = disp + _sample(disp.permute(3, 0, 1, 2), base + disp).permute(1, 2, 3, 0)
    return disp


def _move(maps: dict[str, np.ndarray], frac: np.ndarray, src: tuple[str, ...], dst: str) -> None:
    """Move ``frac`` of each source tissue into ``dst`` (keeps the sum of probabilities)."""
    for s in src:
        moved = maps[s] * frac
        maps[s] = maps[s] - moved
        maps[dst] = maps[dst] + moved


def make_anatomy(subj: Subject, voxel_mm: int) -> dict[str, np.ndarray]:
    """Tissue maps (csf, gm, wm, lesion), mask, residual and texture of one subject."""
    rng = np.random.default_rng(subj.seed)
    pri = priors(voxel_mm)
    shape = pri["gm"].shape
    names = ("csf", "gm", "wm", *NUCLEI_MM, "mask", "resid", "vent", "hippo")
    stack = torch.from_numpy(np.stack([pri[k] for k in names]))
    # Geometry: head size about the brain's centre, then the diffeomorphic warp.
    size = float(np.clip(rng.normal(1.02 if subj.sex == "M" else 0.98, 0.012), 0.95, 1.05))
    centre = torch.tensor(np.linalg.inv(fsl_grid_affine(voxel_mm)) @ [0.0, -18.0, 18.0, 1.0])[:3].float()
    base = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij"), -1)
    coords = centre + (base - centre) / size + diffeomorphic_displacement(rng, shape, voxel_mm)
    maps = dict(zip(names, (m.numpy() for m in _sample(stack, coords))))
    maps["lesion"] = np.zeros_like(maps["gm"])
    _age_and_disease(maps, subj, voxel_mm, rng)
    maps["texture"] = 1.0 + 0.03 * smooth_noise(rng, shape, voxel_mm, 1.6 * voxel_mm)[0]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in maps.items()}


def tissue_labels(anat: dict[str, np.ndarray], purity: float = 0.5) -> np.ndarray:
    """A label map of the voxels mostly of one tissue: k + 1 for ``TISSUES[k]`` where its fraction exceeds ``purity``,
    0 elsewhere (background and mixed voxels): what the gate's tissue-contrast rows average over."""
    fractions = np.stack([anat[t] for t in TISSUES])
    best = fractions.argmax(0)
    return np.where(fractions.max(0) > purity, best + 1, 0).astype(np.float32)


def atrophy_level(age: float, diagnosis: str) -> float:
    """0 for young adults, 1 at 90; AD adds the equivalent of ~25 years."""
    a = np.clip((age - 25.0) / 65.0, 0.0, 1.0) ** 1.3
    return float(a + (0.4 if diagnosis == "AD" else 0.0))


def _age_and_disease(maps: dict[str, np.ndarray], subj: Subject, voxel_mm: int, rng: np.random.Generator) -> None:
    a = atrophy_level(subj.age, subj.diagnosis)
    inside = maps["mask"] > 0.05
    # Childhood: a thicker, more GM-rich cortex that thins through adolescence.
    young = float(np.clip((20.0 - subj.age) / 12.0, 0.0, 1.0))
    if young:
        rim = ndimage.gaussian_filter(maps["gm"], 2.0 / voxel_mm)
        _move(maps, 0.25 * young * rim * maps["wm"], ("wm",), "gm")
    # Ventricles expand into the surrounding tissue.
    e = 1.0 + 2.2 * a
    grown = np.clip(ndimage.gaussian_filter(maps["vent"], e * 1.5 / voxel_mm) * e**1.6, 0.0, 1.0) * inside
    tissue = maps["gm"] + maps["wm"] + 1e-6
    _move(maps, np.clip((grown - maps["vent"]) / tissue, 0.0, 1.0) * (grown > maps["vent"]), ("gm", "wm"), "csf")
    # Cortical thinning: outer GM next to sulcal CSF turns into CSF.
    outer_csf = maps["csf"] * (ndimage.gaussian_filter(maps["vent"], 3.0 / voxel_mm) < 0.05)
    near = ndimage.gaussian_filter(outer_csf, 1.5 / voxel_mm)
    _move(maps, np.clip(0.55 * a * near / (near.max() + 1e-6) * 2.0, 0.0, 0.6), ("gm",), "csf")
    # Medial-temporal atrophy for AD.
    if subj.diagnosis == "AD":
        _move(maps, np.clip(0.6 * maps["hippo"], 0.0, 0.6), ("gm",), "csf")
    # White-matter hypointensities: periventricular blobs, more with age.
    n = rng.poisson(14.0 * a**2)
    if n:
        peri = (ndimage.gaussian_filter(maps["vent"], 6.0 / voxel_mm) > 0.05) & (maps["wm"] > 0.6)
        idx = np.argwhere(peri)
        blobs = np.zeros_like(maps["wm"])
        for c in idx[rng.integers(0, len(idx), n)] if len(idx) else []:
            blobs[tuple(c)] = 1.0
        blobs = ndimage.gaussian_filter(blobs, rng.uniform(1.5, 3.0) / voxel_mm)
        _move(maps, np.clip(blobs / (blobs.max() + 1e-6), 0.0, 0.85), ("wm",), "lesion")
