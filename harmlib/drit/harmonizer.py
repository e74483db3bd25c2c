"""Inference with the 2D models (GMM-DRIT, DRIT++): slice-by-slice harmonization of whole volumes.

A volume on the model's grid is normalized as in training (as a whole), cut into all of its coronal
slices, each slice padded as in training and translated, then stacked back and mapped to the
target site's intensity units (as the 3D model's). ``harmlib.harmonize.files`` resamples files to and from
that grid.

Targets (thesis Sec. 3):
* a training scanner (domain-to-domain): c is its one-hot code (for GMM-DRIT, the GM-VAE component
  matched to that scanner) and z^a is sampled from that scanner's attribute distribution: the
  mixture component p(z|y=k) for GMM-DRIT, DRIT++'s unimodal N(0, I) otherwise; or, with a
  reference slice of the target scanner, z^a = E^a(reference);
* ``scanner-free``: z^a ~ N(0, I) and c = c_sf = 0;
* ``self:<training site>`` (the quality gate's reconstruction of held-out subjects scanned at a training site):
  each slice keeps its own attribute, z^a = E^a(x) (for DRIT++ with that site's code c, for GMM-DRIT the GM-VAE
  posterior mean), with the site's code c: x -> G(E^c(x), E^a(x), c).
Otherwise one z^a (seeded) serves every slice of a volume, so the slices of one output share one appearance.

Resolution: E^c, E^a and G run on the coronal slices of the model's grid (2 mm on cpu), as trained. A scan on a
finer grid gets the model's change at its own resolution (`harmlib.harmonize.change`): the landmark curve on every
voxel, the planes of the site field and G's delta upsampled as changes (in all three axes: the slices' change is
a volume on the model's grid), so a 1 mm scan comes back with its 1 mm detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harmlib.checkpoint import CheckpointError
from harmlib.data.datasets import Normalizer, array_landmarks, crop_pads, slab_volume
from harmlib.data.io import DataError
from harmlib.drit.model import (
    GMM_DRIT,
    VARIANTS,
    AttributeEncoder,
    ContentEncoder,
    DRITSpec,
    Generator,
    generate,
    slice_where,
    style_code,
)
from harmlib.gmvae.model import GMVAE, GMVAESpec
from harmlib.harmonize.base import register
from harmlib.harmonize.change import Change, change_from
from harmlib.harmonize.targets import Target
from harmlib.models.levers import Levers, Where, cat, migrate_levers

SLICE_KINDS = VARIANTS  # the model-file kinds this module loads


@dataclass
class SliceHarmonizer:
    """A loaded 2D model file: E^c, E^a, G, its domains, the volume grid and the slice grid."""

    kind: str
    nets: dict[str, torch.nn.Module]
    domains: list[str]
    component: dict[str, int]  # scanner -> index of its code c (the matched GM-VAE component for GMM-DRIT)
    affine: np.ndarray
    shape: tuple[int, ...]
    slice_shape: tuple[int, int]
    pads: tuple[tuple[int, int], ...]
    normalizer: Normalizer
    spec: DRITSpec
    device: torch.device
    scales: dict[str, float] | None = None  # each training site's intensity scale (None: older model files)

    def target(self, text: str | Target) -> Target:
        t = Target.parse(text, self.domains, "scanner-free")  # a Target passes unchanged
        if t.own and t.domain is None:
            raise DataError(f"target '{text}': a 2D model reconstructs with a site's code; use self:<training site>")
        return t

    def label(self, target: str | Target) -> int | None:
        """The code index of a target scanner (by domain, site or scanner name, or ``self:<site>``); None for scanner-free."""
        t = target if isinstance(target, Target) else self.target(target)
        return None if t.domain is None else self.component[t.domain]

    def harmonize(self, vol: np.ndarray, target: str | Target, seed: int = 0) -> np.ndarray:
        return harmonize_slices(self, vol, target, seed)

    def change(self, vol: np.ndarray, target: str | Target, seed: int = 0) -> Change:
        return slice_change(self, vol, target, seed)

    def code(self, target: str | Target, n: int) -> torch.Tensor:
        """c for ``n`` slices: the target's one-hot code, or c_sf = 0."""
        k = self.label(target)
        c = torch.zeros(n, self.spec.n_domains)
        if k is not None:
            c[:, k] = 1.0
        return c.to(self.device)

    def attribute(self, target: str | Target, seed: int = 0, reference: torch.Tensor | None = None) -> torch.Tensor:
        """z^a (1, nz): from a reference slice of the target scanner, or sampled (see the module docstring)."""
        k = self.label(target)
        if reference is not None:
            if k is None:
                raise DataError("a reference image gives a scanner's attribute; the scanner-free target takes none")
            ref = reference.to(self.device).reshape(1, 1, *reference.shape[-2:])
            if self.kind == GMM_DRIT and self.nets["E_a"].spec.view == "field":
                raise DataError(
                    "this GMM-DRIT's E^a reads a slice's plane of its volume's site field, which one reference slice "
                    "does not carry; harmonize to the scanner by name (its GM-VAE component) instead"
                )
            return (
                self.nets["E_a"].attribute(ref)[0]
                if self.kind == GMM_DRIT
                else self.nets["E_a"](ref, self.code(target, 1))[0]
            )
        gen = torch.Generator().manual_seed(seed)
        if k is not None and self.kind == GMM_DRIT:
            return self.nets["E_a"].component(k, 1, gen)
        return torch.randn(1, self.spec.nz, generator=gen).to(self.device)


def own_attribute(
    h: SliceHarmonizer,
    x: torch.Tensor,
    c: torch.Tensor,
    planes: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each slice's own z^a: the mean of q(z^a|x) (DRIT++'s E^a with the site's code ``c``; the GM-VAE's posterior,
    which with the field view reads the slices' ``planes`` of their volume's own field and its stored ``scale``)."""
    if h.kind == GMM_DRIT:
        return h.nets["E_a"].attribute(h.nets["E_a"].view_input(x, planes, scale))[0]
    return h.nets["E_a"](x, c)[0]


@register(*SLICE_KINDS)
def load_slice_harmonizer(ck: dict[str, Any], path: Any = "model file", device: str = "cpu") -> SliceHarmonizer:
    """Rebuild a GMM-DRIT or DRIT++ model file's E^c, E^a and G (eval mode); an incomplete file is a CheckpointError."""
    try:
        return _build(ck, device)
    except (KeyError, TypeError, RuntimeError) as err:  # missing fields, another architecture's weights
        raise CheckpointError(
            f"{path}: an incomplete or inconsistent '{ck.get('kind')}' model file ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:120]}); export it again with harmlib.drit.task.export_model"
        ) from None


def _build(ck: dict[str, Any], device: str) -> SliceHarmonizer:
    spec = DRITSpec(**ck["spec"])
    e_c = ContentEncoder(spec)
    if ck["kind"] == GMM_DRIT:
        e_a: torch.nn.Module = GMVAE(GMVAESpec(**{**ck["gmvae_spec"], "size": tuple(ck["gmvae_spec"]["size"])}))
        component = {d: int(k) for d, k in ck["component"].items()}
    else:
        e_a = AttributeEncoder(spec)
        component = {d: i for i, d in enumerate(ck["domains"])}
    nets = {"E_c": e_c, "E_a": e_a, "G": Generator(spec, e_c.out_ch)}
    if spec.residual:
        nets["levers"] = Levers(spec.levers())
    state = migrate_levers(ck["state"])
    dev = torch.device(device)
    for k, net in nets.items():
        net.load_state_dict(state[k])
        net.to(dev).eval()
    pads = tuple(tuple(int(v) for v in p) for p in ck["pads"])
    return SliceHarmonizer(
        ck["kind"],
        nets,
        list(ck["domains"]),
        component,
        np.asarray(ck["affine"]),
        tuple(int(v) for v in ck["shape"]),
        tuple(int(v) for v in ck["slice_shape"]),
        pads,
        Normalizer.from_dict(ck["normalizer"]),
        spec,
        dev,
        ck.get("scales"),
    )


def own_planes(h: SliceHarmonizer, where: Where | None) -> torch.Tensor | None:
    """The slices' planes of their volumes' own fields (what a field-view GM-VAE reads), None without a field."""
    if where is None or where.field is None:
        return None
    return h.nets["levers"].field.plane(where.field, where.region)


@torch.no_grad()
def translate_slices(
    h: SliceHarmonizer,
    x: torch.Tensor,
    target: str | Target,
    seed: int = 0,
    reference: torch.Tensor | None = None,
    batch_size: int = 32,
    where: Where | None = None,
) -> torch.Tensor:
    """G(E^c(x), z^a, c) for normalized, padded slices ``x`` (N, 1, H, W) in [-1, 1], with the cpu levers where the
    slices sit in their volumes (``where``, :func:`volume_where`: one row for all slices of one volume, or one per
    slice; None: each slice's own landmarks and no field)."""
    t = h.target(target)  # parsed once; ``self:<site>`` keeps each slice's own z^a with that site's code
    z_a = None if t.own else h.attribute(t, seed, reference)
    codes = h.code(t, x.shape[0])
    out = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(h.device)
        c = codes[start : start + batch_size]
        wb = None if where is None else _rows(where, start, len(xb)).to(h.device)
        z = (
            own_attribute(h, xb, c, own_planes(h, wb), None if wb is None else wb.scale)
            if t.own
            else z_a.expand(xb.shape[0], -1)
        )
        out.append(generate(h.nets, h.nets["E_c"](xb), z, c, xb, wb).float().cpu())
    return torch.cat(out) if out else x.new_zeros(x.shape)


def _rows(where: Where, start: int, n: int) -> Where:
    """Rows start..start+n of ``where``; a one-row field or landmarks (a whole volume's) serve every slice."""

    def take(v: torch.Tensor | None) -> torch.Tensor | None:
        if v is None:
            return None
        return v.expand(n, *v.shape[1:]) if len(v) == 1 else v[start : start + n]

    return Where(take(where.landmarks), take(where.field), take(where.region), take(where.scale))


def volume_read(h: SliceHarmonizer, x: np.ndarray, high: float) -> Where | None:
    """A normalized volume's (X, Y, Z) landmarks (1, L), own field (1, *grid) and stored scale ``high`` (its
    Normalizer's, (1,)) for the cpu levers (None without the landmark curve): read once, for all its slices and for
    its change."""
    levers = h.nets.get("levers")
    if levers is None or levers.curve is None:
        return None
    landmarks = array_landmarks(x, levers.curve.percentiles)
    return replace(levers.read(slab_volume(x, h.pads), landmarks), scale=torch.tensor([float(high)]))


def volume_where(h: SliceHarmonizer, volume: Where | None, coronal: Sequence[int]) -> Where | None:
    """Where the coronal planes ``coronal`` sit in their volume (read by :func:`volume_read`)."""
    if volume is None:
        return None
    idx = torch.as_tensor(list(coronal))
    return slice_where(h.nets["levers"], volume.landmarks, volume.field, idx, volume.scale)


def harmonize_slices(h: SliceHarmonizer, vol: np.ndarray, target: str | Target, seed: int = 0) -> np.ndarray:
    """Harmonize a volume on the model's grid, coronal slice by coronal slice; the target's intensity units out."""
    return slice_change(h, vol, target, seed).apply(vol)


@torch.no_grad()
def slice_change(h: SliceHarmonizer, vol: np.ndarray, target: str | Target, seed: int = 0) -> Change:
    """What the model does to a volume on its grid, slice by slice, in parts that apply at any resolution
    (`harmlib.harmonize.change`). A target's code (z^a, c) is the same for every slice, so the landmark curve is one
    pointwise map and the planes of the site field one 3D field; ``self:<site>`` keeps each slice's own z^a, so its
    whole change is G's output minus the input."""
    if vol.ndim != 3 or (vol.shape[0], vol.shape[2]) != h.slice_shape:
        raise DataError(
            f"a volume of shape {vol.shape} has coronal slices of {tuple(vol.shape[::2]) if vol.ndim == 3 else '?'}, but this {h.kind} "
            f"model was trained on {h.slice_shape} slices; resample it to the model's grid first (harmonize_file does)"
        )
    t = h.target(target)
    x, params = h.normalizer.forward(vol)
    x = np.asarray(x, np.float32)
    slices = np.ascontiguousarray(np.moveaxis(x, 1, 0))  # (Y, X, Z): one coronal plane per item
    brain = np.flatnonzero(
        (np.moveaxis(vol, 1, 0) > 0).reshape(vol.shape[1], -1).any(1)
    )  # planes outside the head stay background
    out = np.full_like(slices, -1.0)
    volume = volume_read(h, x, params["high"])  # once: its slices and its change
    if brain.size:
        xp = F.pad(
            torch.from_numpy(slices[brain])[:, None],
            [h.pads[1][0], h.pads[1][1], h.pads[0][0], h.pads[0][1]],
            value=-1.0,
        )
        y = translate_slices(h, xp, t, seed, where=volume_where(h, volume, brain))
        out[brain] = crop_pads(y, h.pads).numpy()[:, 0]
    knots = field = None
    if volume is not None and not t.own:
        levers = h.nets["levers"]
        code = style_code(h.attribute(t, seed), h.code(t, 1))  # what translate_slices gave every slice
        knots = (volume.landmarks[0].numpy(), levers.curve.style_landmarks(code)[0].cpu().numpy())
        if volume.field is not None:
            slab = levers.field.log_field(code, volume.field.to(h.device))[0, 0].cpu().numpy()
            field = crop_pads(slab, (h.pads[0], (0, 0), h.pads[1]))
    high = t.scale(h.scales, params["high"])
    return change_from(h.normalizer, params, high, x, np.moveaxis(out, 0, 1), knots, field)


def translate_dataset(
    h: SliceHarmonizer, data: Any, target: str | Target, seed: int = 0, indices: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Translate slices of a ``SliceDataset`` built like the model's training data; returns (inputs, outputs),
    both (N, X, Z) in the normalized range [-1, 1], padding cropped."""
    idx = list(range(len(data))) if indices is None else list(indices)
    if tuple(data.shape) != h.slice_shape:
        raise DataError(
            f"the dataset's slices are {tuple(data.shape)}, but this {h.kind} model was trained on {h.slice_shape} slices; "
            "build the dataset at the model's resolution"
        )
    items = [data[i] for i in idx]
    x = torch.stack([it["image"] for it in items]) if items else torch.zeros(0, 1, 1, 1)
    where = None
    levers = h.nets.get("levers")
    if items and levers is not None and levers.curve is not None:  # each slice with its whole volume's, as in training
        volumes = {r: volume_read(h, *_normalized(data, r)) for r in sorted({it["index"] for it in items})}
        where = cat([volume_where(h, volumes[it["index"]], [it["slice"]]) for it in items])
    y = translate_slices(h, x, target, seed, where=where)
    return crop_pads(x, h.pads).numpy()[:, 0], crop_pads(y, h.pads).numpy()[:, 0]


def _normalized(data: Any, r: int) -> tuple[np.ndarray, float]:
    """Volume ``r`` of a dataset normalized, and its stored scale (the Normalizer's high)."""
    x, params = data.volumes.normalized(r)
    return x, params["high"]
