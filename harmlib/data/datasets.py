"""Datasets for both papers: 3D volumes (SSIM-guided harmonizer), 2D coronal slices (GM-VAE, GMM-DRIT,
DRIT++), the semi-supervised (x_l, x_u) pairing of paper 1 and the two-domain (x_a, x_b) pairing of DRIT.

Every image is normalized into the generators' tanh range [-1, 1] by a `Normalizer` whose per-image
parameters are returned, so outputs can be written back in the input's intensity units, and padded
with background to a multiple of 8 (182 is not divisible by 4; strided encoders need it) so that
`crop_pads` gives back the exact grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from harmlib.data.io import DataError, load_volume
from harmlib.data.manifest import Manifest
from harmlib.data.mni import block_average
from harmlib.intensity import LANDMARK_PERCENTILES, brain_landmarks

Array = np.ndarray | torch.Tensor
Pads = tuple[tuple[int, int], ...]


# --------------------------------------------------------------------------- intensities
@dataclass(frozen=True)
class Normalizer:
    """Robust percentile scaling into [-1, 1], the range of the generators' final tanh.

    x' = 2 (x - low) / (high - low) - 1 with low = 0 (background, -> -1) and high = the
    ``percentile``-th percentile (99.5) of the brain's voxels (-> +1); values beyond are clipped.
    Brain voxels are those above the volume's mean intensity: a cheap foreground mask that ignores
    background (Rician) noise. A percentile rather than the maximum is robust to a few bright voxels
    (vessels, noise), and scaling (no shift, no histogram matching) keeps each scanner's contrast:
    the scanner-site appearance is what the models must learn (paper 1's style s, paper 2's z^a).
    Inputs are non-negative magnitude T1s; negative values are clipped to -1 (and invert to 0).
    """

    percentile: float = 99.5
    clip: bool = True
    method: ClassVar[str] = "percentile"

    def __post_init__(self) -> None:
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(
                f"Normalizer: percentile={self.percentile} is invalid; use a value in (50, 100], e.g. 99.5"
            )

    def forward(self, vol: Array) -> tuple[Array, dict[str, float]]:
        """Normalize one image (numpy or torch, any shape); return it and its parameters {low, high}."""
        v = vol.detach().cpu().numpy() if isinstance(vol, torch.Tensor) else np.asarray(vol)
        fg = v[v > v.mean()]
        fg = fg if fg.size else v[v > 0]  # a constant image has nothing above its mean
        if not fg.size:
            raise DataError(
                f"Normalizer: no voxel above 0 in an image of shape {tuple(v.shape)}; a T1 with a positive brain is needed"
            )
        params = {"low": 0.0, "high": float(np.percentile(fg, self.percentile))}
        return self.apply(vol, params), params

    def apply(self, vol: Array, params: dict[str, float]) -> Array:
        """Normalize with given parameters {low, high} (another grid's of the same scan, at inference)."""
        low, high = params["low"], params["high"]
        x = vol.float() if isinstance(vol, torch.Tensor) else np.asarray(vol).astype(np.float32)
        out = 2.0 * (x - low) / (high - low) - 1.0
        if self.clip:
            out = out.clamp(-1.0, 1.0) if isinstance(out, torch.Tensor) else np.clip(out, -1.0, 1.0)
        return out

    def inverse(self, x: Array, params: dict[str, Any]) -> Array:
        """Back to input units: x = (x' + 1) / 2 (high - low) + low; batched params broadcast over axis 0."""
        low, high = _bcast(params["low"], x), _bcast(params["high"], x)
        return (x + 1.0) * 0.5 * (high - low) + low

    def to_dict(self) -> dict[str, Any]:
        """Settings for a checkpoint (the per-image {low, high} travel with each item)."""
        return {"method": self.method, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        d = dict(d)
        method = d.pop("method", cls.method)
        if method != cls.method:
            raise ValueError(f"Normalizer: unknown method '{method}'; known: {cls.method}")
        return cls(**d)


def _bcast(p: Any, x: Array) -> Any:
    """A per-item parameter vector (after collation) shaped (B, 1, ...) to broadcast over a batch."""
    if isinstance(p, (np.ndarray, torch.Tensor)) and p.ndim == 1 and x.ndim > 1:
        p = p.reshape(-1, *([1] * (x.ndim - 1)))
        return p.to(x.device, x.dtype) if isinstance(p, torch.Tensor) and isinstance(x, torch.Tensor) else p
    return p


# --------------------------------------------------------------------------- shapes
def pads_for(shape: Sequence[int], m: int | None = 8) -> Pads:
    """Centred (before, after) pads that bring every axis of ``shape`` to a multiple of ``m``."""
    if not m or m <= 1:
        return tuple((0, 0) for _ in shape)
    return tuple(((-s) % m // 2, (-s) % m - (-s) % m // 2) for s in shape)


def pad_to_multiple(x: Array, m: int = 8, value: float = 0.0, spatial: int | None = None) -> tuple[Array, Pads]:
    """Pad the last ``spatial`` axes of ``x`` (numpy or torch; default all axes of a 2D/3D array)
    to a multiple of ``m``, centred, with ``value`` (background: 0 raw, -1 normalized)."""
    if spatial is None:
        if x.ndim > 3:
            raise ValueError(
                f"pad_to_multiple: x has {x.ndim} axes; pass spatial=2 or 3 to say which trailing axes to pad"
            )
        spatial = x.ndim
    pads = pads_for(x.shape[x.ndim - spatial :], m)
    if isinstance(x, torch.Tensor):
        flat = [p for pair in reversed(pads) for p in pair]  # F.pad starts at the last axis
        return torch.nn.functional.pad(x, flat, mode="constant", value=value), pads
    return np.pad(x, [(0, 0)] * (x.ndim - spatial) + list(pads), constant_values=value), pads


def crop_pads(x: Array, pads: Pads) -> Array:
    """Undo `pad_to_multiple` exactly on the last ``len(pads)`` axes (works on batches too)."""
    lead = (slice(None),) * (x.ndim - len(pads))
    return x[lead + tuple(slice(b, s - a) for (b, a), s in zip(pads, x.shape[x.ndim - len(pads) :]))]


def label_vector(domain_index: int, k: int) -> torch.Tensor:
    """Paper 1's l in {-1, 1}^K: +1 at the image's scanner-site, -1 elsewhere (all -1 if unknown, -1)."""
    lab = -torch.ones(k, dtype=torch.float32)
    if domain_index >= 0:
        lab[domain_index] = 1.0
    return lab


def _header_shape(path: Any) -> tuple[int, ...]:
    try:
        shape = tuple(nib.load(str(path)).shape)
    except Exception:  # let the validated loader say what is wrong with the file
        shape = load_volume(path).shape
    return shape[:3] if len(shape) == 4 and shape[3] == 1 else shape


def _shape_error(path: Any, shape: tuple, ref: tuple, ref_path: Any) -> DataError:
    return DataError(
        f"{path}: shape {shape} differs from {ref} of {ref_path}; resample every volume of a dataset to one grid (harmlib preprocess)"
    )


# --------------------------------------------------------------------------- 3D volumes
class VolumeDataset(Dataset):
    """T1 volumes of one manifest selection, normalized and padded: the x in R^{1 x H x W x D} of paper 1.

    Items: {"image": float32 (1, D, H, W) in [-1, 1], padded with -1; "domain_index": index in
    ``domains`` (-1 for an unknown site when ``allow_unknown``); "label": l in {-1, 1}^K; "index":
    row of ``self.manifest`` (the selection); "age" (nan if unknown); "diagnosis" ("" if unknown);
    "norm": {low, high} for `Normalizer.inverse`}. ``self.pads`` crops images back to ``self.shape``.
    ``domains`` defaults to ``manifest.domains("train")``, the order of the label vector.
    """

    def __init__(
        self,
        manifest: Manifest,
        split: str | None = None,
        role: str | None = None,
        domains: Sequence[str] | None = None,
        normalizer: Normalizer = Normalizer(),
        cache: bool = True,
        pad_multiple: int | None = 8,
        allow_unknown: bool = False,
        downsample: int = 1,
    ):
        self.manifest = manifest.select(split, role)
        self.downsample = int(downsample)  # exact block averaging, e.g. 2 mm files -> a 4 mm model grid
        if not len(self.manifest):
            raise DataError(
                f"no volumes with split={split or 'any'}, role={role or 'any'} in the manifest "
                f"({len(manifest)} rows; splits: {_values(manifest, 'split')}; roles: {_values(manifest, 'role')}); choose another selection"
            )
        self.domains = list(domains) if domains is not None else manifest.domains("train")
        if not self.domains:
            raise DataError("the manifest has no training domains to order the label vector; pass domains=[...]")
        known = {d: k for k, d in enumerate(self.domains)}
        unknown = [d for d in self.manifest.df["domain"] if d not in known]
        if unknown and not allow_unknown:
            raise DataError(f"unknown site '{unknown[0]}'; known: {', '.join(self.domains)}")
        self.domain_indices = np.array([known.get(d, -1) for d in self.manifest.df["domain"]], dtype=np.int64)
        self.normalizer, self.cache, self.pad_multiple = normalizer, cache, pad_multiple
        # Shapes from the headers (no data read): a mismatch fails now, not mid-epoch.
        paths = self.manifest.paths()
        self.file_shape = _header_shape(paths[0])
        for p in paths[1:]:
            if _header_shape(p) != self.file_shape:
                raise _shape_error(p, _header_shape(p), self.file_shape, paths[0])
        self.shape = tuple(-(-s // self.downsample) for s in self.file_shape)
        self.pads = pads_for(self.shape, pad_multiple)
        self._cache: dict[int, tuple[torch.Tensor, dict[str, float]]] = {}

    def __len__(self) -> int:
        return len(self.manifest)

    @property
    def ages(self) -> np.ndarray:
        return self.manifest.df["age"].to_numpy(dtype=float)

    @property
    def diagnoses(self) -> list[str]:
        return list(self.manifest.df["diagnosis"])

    def affine(self, i: int = 0) -> np.ndarray:
        """The voxel-to-world affine of row ``i`` on the dataset's grid (after any downsampling)."""
        aff = nib.load(str(self.manifest.path(i))).affine
        f = self.downsample
        scale = np.diag([f, f, f, 1.0])
        scale[:3, 3] = (f - 1) / 2  # a block's centre sits (f - 1) / 2 voxels from its first voxel
        return aff @ scale

    def normalized(self, i: int) -> tuple[np.ndarray, dict[str, float]]:
        """Row ``i`` normalized, unpadded (float32, the grid's shape), and its {low, high}."""
        path = self.manifest.path(i)
        vol = np.asarray(load_volume(path).dataobj, dtype=np.float32)
        if vol.shape != self.file_shape:  # the file changed since the dataset was built
            raise _shape_error(path, vol.shape, self.file_shape, self.manifest.path(0))
        return self.normalizer.forward(block_average(vol, self.downsample) if self.downsample > 1 else vol)

    def _image(self, i: int) -> tuple[torch.Tensor, dict[str, float]]:
        if i in self._cache:
            return self._cache[i]
        x, params = self.normalized(i)
        x, _ = pad_to_multiple(x, self.pad_multiple or 1, value=-1.0)  # -1 = background after scaling
        out = (torch.from_numpy(np.ascontiguousarray(x))[None], params)
        if self.cache:  # cpu cohorts are small (~100 volumes at 2 mm: ~400 MB)
            self._cache[i] = out
        return out

    def _meta(self, i: int) -> dict[str, Any]:
        d = int(self.domain_indices[i])
        return {
            "domain_index": d,
            "label": label_vector(d, len(self.domains)),
            "index": i,
            "age": float(self.ages[i]),
            "diagnosis": self.diagnoses[i],
        }

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, params = self._image(i)
        return {"image": image, **self._meta(i), "norm": dict(params)}

    def intensity_scales(self) -> dict[str, float]:
        """Each site's typical scale (median of the Normalizer's ``high`` over its volumes).

        A harmonized image is mapped back to intensities with the *target* site's scale, so an
        image harmonized to A has A's intensity units (not its source scanner's); ``"*"`` is the
        median over every volume, the scale of style-agnostic outputs.
        """
        highs = np.array([self._image(i)[1]["high"] for i in range(len(self))])
        doms = np.array(self.manifest.df["domain"])
        return {
            **{d: float(np.median(highs[doms == d])) for d in self.domains if (doms == d).any()},
            "*": float(np.median(highs)),
        }


def array_landmarks(x: np.ndarray, percentiles: torch.Tensor) -> torch.Tensor:
    """(1, L) brain landmarks of one normalized, unpadded volume (:func:`harmlib.intensity.brain_landmarks`)."""
    return brain_landmarks(torch.from_numpy(np.asarray(x, np.float32))[None], percentiles)


def _values(manifest: Manifest, col: str) -> str:
    return ", ".join(sorted(manifest.df[col].unique())) or "none"


# --------------------------------------------------------------------------- 2D coronal slices
def coronal_indices(affine: np.ndarray, n_y: int, n_slices: int, spacing_mm: float, centre_mm: float) -> list[int]:
    """Indices on the second (coronal, y) axis of ``n_slices`` planes ``spacing_mm`` apart around MNI y = ``centre_mm``."""
    col = np.asarray(affine, dtype=float)[:3, 1]
    if abs(col[1]) < 0.99 * np.linalg.norm(col):
        raise DataError(
            "the second voxel axis is not the world's y axis; coronal slices need volumes on an MNI grid (harmlib preprocess)"
        )
    ys = centre_mm + (np.arange(n_slices) - (n_slices - 1) / 2) * spacing_mm
    idx = [int(round((y - affine[1, 3]) / col[1])) for y in ys]
    if len(set(idx)) < n_slices or min(idx) < 0 or max(idx) >= n_y:
        raise ValueError(
            f"n_slices={n_slices} at spacing_mm={spacing_mm} gives coronal planes {idx} on a {n_y}-plane "
            f"axis of {abs(col[1]):g} mm voxels; use fewer slices or a spacing of at least one voxel"
        )
    return sorted(idx)


class SliceDataset(Dataset):
    """2D coronal slices of the selected volumes: the x in R^{1 x H x W} of GMM-DRIT (and DRIT++, GM-VAE).

    The thesis (Sec. 5) only says: "each 3D volume was converted into grayscale 2D coronal slices of
    size 182x182" (a coronal plane of the 182x218x182 FSL grid is exactly 182x182), 2650 slices from
    931 volumes, and per domain 1.8 (SALD) to 9.1 (Triotim) slices per volume: which planes were kept
    is not stated. Here: ``n_slices`` (3, about the thesis' mean of 2.8) planes ``spacing_mm`` (4 mm)
    apart centred on MNI y = ``centre_mm`` (-18 mm: the brain's anterior-posterior middle, through
    thalamus, ventricles and hippocampal heads), the same anatomical planes for every volume and
    resolution, so that domains differ in appearance, not anatomy. Sizes: 182x182 at 1 mm, 91x91 at
    2 mm, 46x46 at 4 mm, padded with background to a multiple of ``pad_multiple`` (184, 96, 48).
    Each volume is normalized as a whole (`Normalizer`) before slicing.

    Items: as `VolumeDataset` with "image" (1, X, Z) (x: left-right, z: inferior-superior) and
    "slice": the plane's index on the coronal axis; "index" is the volume's row.
    """

    def __init__(
        self,
        manifest: Manifest,
        split: str | None = None,
        role: str | None = None,
        domains: Sequence[str] | None = None,
        n_slices: int = 3,
        spacing_mm: float = 4.0,
        centre_mm: float = -18.0,
        normalizer: Normalizer = Normalizer(),
        cache: bool = True,
        pad_multiple: int | None = 8,
        allow_unknown: bool = False,
    ):
        if n_slices < 1:
            raise ValueError(f"SliceDataset: n_slices={n_slices} is invalid; use 1 or more")
        # Volumes are read unpadded and uncached: only the chosen slices are kept in memory.
        self.volumes = VolumeDataset(
            manifest, split, role, domains, normalizer, cache=False, pad_multiple=None, allow_unknown=allow_unknown
        )
        self.n_slices, self.cache, self.pad_multiple = n_slices, cache, pad_multiple
        self.slices = coronal_indices(self.volumes.affine(0), self.volumes.shape[1], n_slices, spacing_mm, centre_mm)
        self.shape = (self.volumes.shape[0], self.volumes.shape[2])
        self.pads = pads_for(self.shape, pad_multiple)
        self.domains, self.manifest, self.normalizer = self.volumes.domains, self.volumes.manifest, normalizer
        self.domain_indices = np.repeat(self.volumes.domain_indices, n_slices)
        self._cache: dict[int, tuple[torch.Tensor, dict[str, float]]] = {}

    def __len__(self) -> int:
        return len(self.volumes) * self.n_slices

    def _stack(self, v: int) -> tuple[torch.Tensor, dict[str, float]]:
        if v in self._cache:
            return self._cache[v]
        x, params = self.volumes.normalized(v)
        s, _ = pad_to_multiple(
            np.stack([x[:, j, :] for j in self.slices]), self.pad_multiple or 1, value=-1.0, spatial=2
        )
        out = (torch.from_numpy(np.ascontiguousarray(s)), params)
        if self.cache:
            self._cache[v] = out
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        v, k = divmod(i, self.n_slices)
        stack, params = self._stack(v)
        return {"image": stack[k][None], **self.volumes._meta(v), "slice": self.slices[k], "norm": dict(params)}


# --------------------------------------------------------------------------- pairs
def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])  # one stream per (seed, epoch): reproducible, resumable


def _cover(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """``n`` indices into ``size`` items: fresh permutations back to back, so each item comes once per pass."""
    return np.concatenate([rng.permutation(size) for _ in range(-(-n // size))])[:n]


class LabeledUnlabeledPairs(Dataset):
    """Paper 1's training pairs (x_l, x_u): a labeled image with its label vector l and an unlabeled one.

    The reference zips a shuffled labeled loader with a shuffled unlabeled loader; x_u is translated
    with x_l's l. Here both are shuffled per epoch (``set_epoch``) from ``seed`` and the epoch has
    max(len) pairs, the shorter set recycled, so no image is dropped. Use with shuffle=False.
    """

    def __init__(self, labeled: Dataset, unlabeled: Dataset, seed: int = 0):
        if (np.asarray(labeled.domain_indices) < 0).any():
            raise DataError(
                "labeled images need a known site for their label vector l; build the labeled dataset without allow_unknown"
            )
        self.labeled, self.unlabeled, self.seed = labeled, unlabeled, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng, n = _rng(self.seed, epoch), max(len(self.labeled), len(self.unlabeled))
        self.epoch = epoch
        self.pairs = np.stack([_cover(rng, len(self.labeled), n), _cover(rng, len(self.unlabeled), n)], 1)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        il, iu = self.pairs[i]
        return self.labeled[int(il)], self.unlabeled[int(iu)]


class DomainPairs(Dataset):
    """Unpaired (x_a, x_b) from two different domains a != b, for DRIT++ and GMM-DRIT stage 2.

    Each epoch every image is x_a once (shuffled); x_b's domain is drawn uniformly from the other
    domains, then an image uniformly within it: domain-balanced partners (as DRIT++'s multi-domain
    sampler), which matters with the thesis' imbalance (375 to 963 slices per domain).
    Deterministic given ``seed`` and ``set_epoch``; use with shuffle=False.
    """

    def __init__(self, dataset: Dataset, seed: int = 0):
        dom = np.asarray(dataset.domain_indices)
        if (dom < 0).any():
            raise DataError("DomainPairs needs a known domain for every image; build the dataset without allow_unknown")
        self.present = np.unique(dom)
        if len(self.present) < 2:
            raise DataError(
                f"DomainPairs needs images from at least two domains; found only '{dataset.domains[self.present[0]]}'"
            )
        self.dataset, self.seed, self.dom = dataset, seed, dom
        self.members = {int(d): np.flatnonzero(dom == d) for d in self.present}
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = _rng(self.seed, epoch)
        self.epoch = epoch
        a = rng.permutation(len(self.dom))
        b = [rng.choice(self.members[int(rng.choice(self.present[self.present != self.dom[i]]))]) for i in a]
        self.pairs = np.stack([a, np.asarray(b, dtype=np.int64)], 1)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        ia, ib = self.pairs[i]
        return self.dataset[int(ia)], self.dataset[int(ib)]


# --------------------------------------------------------------------------- the 2D models' site field
def slab_volume(x: np.ndarray | torch.Tensor, pads: Pads) -> torch.Tensor:
    """A normalized volume (X, Y, Z) as (1, 1, X', Y, Z'): X and Z padded with background as its coronal slices
    are, so a site field's grid spans exactly what the slices hold."""
    return F.pad(torch.as_tensor(x, dtype=torch.float32)[None, None], [*pads[1], 0, 0, *pads[0]], value=-1.0)


def slab_shape(data: SliceDataset) -> tuple[int, int, int]:
    """(X', Y, Z'): the volumes of ``data`` padded as its slices (:func:`slab_volume`)."""
    (a0, a1), (b0, b1) = data.pads
    return data.shape[0] + a0 + a1, data.volumes.shape[1], data.shape[1] + b0 + b1


def volume_slabs(data: SliceDataset) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each volume of ``data`` read once, for the levers of a 2D model: its normalized volume padded as its slices
    (:func:`slab_volume`, (1, 1, X', Y, Z')) and its brain landmarks (V, L), read on the unpadded volume."""
    normalized = [data.volumes.normalized(v)[0] for v in range(len(data.volumes))]
    landmarks = torch.cat([array_landmarks(x, torch.tensor(LANDMARK_PERCENTILES)) for x in normalized])
    return [slab_volume(x, data.pads) for x in normalized], landmarks


def slice_volume_index(data: SliceDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Every slice of ``data``: the index of its volume (N,) and its coronal index (N,) (slices are volume-major)."""
    return torch.arange(len(data)) // data.n_slices, torch.as_tensor(data.slices).repeat(len(data.volumes))
