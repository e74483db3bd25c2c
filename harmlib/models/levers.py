"""The cpu profile's appearance levers, composed around a paper's generator instead of inside it.

The papers' generators draw the image: y = G(c, s). On a laptop's budget a decoder through a bottleneck
reconstructs below doing nothing (hundreds of CPU steps against 10^4-10^5 GPU iterations), so the cpu profile
composes G with levers that start as the identity and that the style code moves:

    y = field_s(curve_s(x)) + G(c, s)        (G's last conv starts at zero: y = x at step 0)

* ``residual`` (IGUANE's generator): y = x + G(c, s); G outputs a change of appearance, not an image.
* ``landmark_curve`` (:class:`LandmarkCurve`, histogram AdaIN): x's Nyul landmarks mapped onto the style's.
* ``site_field_mm`` (:class:`SiteField`, bias AdaIN): x's smooth intensity field moved to the style's.

:class:`Levers` is all of them, with one calling convention for volumes (3D, whole or cropped) and coronal slices
(2D): ``levers(x, style, where)``, where :class:`Where` says where x sits in its whole volume. A family composes
it in one line (:func:`compose`). A new lever: a module here, its config field, and its line in
:meth:`Levers.forward`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmlib.intensity import (
    LANDMARK_PERCENTILES,
    brain_landmarks,
    field_grid_step,
    grid_points,
    log_lowpass,
    multiply_field,
    piecewise_linear,
)
from harmlib.models.blocks import MLP


@dataclass(frozen=True)
class LeverSpec:
    """Which levers, for which images: the ``residual``, ``landmark_curve`` and ``site_field_mm`` config fields of a
    family's section, and what the data decides."""

    dim: int  # 3: volumes or crops of them; 2: coronal slices of volumes
    style_dim: int  # the style code's size (3D: noise + K labels; 2D: z^a + K)
    hidden: int  # the levers' MLPs' hidden units
    landmark_curve: bool = False
    site_field_mm: float = 0.0  # the field's Gaussian sigma in mm; 0: no site field
    volume: tuple[int, ...] = ()  # the whole (padded) volume the field spans, in voxels (X, Y, Z)
    voxel_size_mm: float = 1.0  # that volume's voxel
    section: str = "harmonizer"  # the config section of these fields, for messages

    @property
    def field_sigma(self) -> float:
        """The site field's sigma in voxels: the one place millimetres become voxels."""
        return self.site_field_mm / self.voxel_size_mm

    @classmethod
    def of(cls, spec: Any, **data: Any) -> LeverSpec:
        """The levers of a family's spec: every lever field it shares with this class (its config section's
        ``landmark_curve``, ``site_field_mm``, ..., and the grid) read by name, so a new lever's field needs no line
        here; ``data``: what the family decides (dim, style_dim, hidden, section)."""
        shared = {f.name: getattr(spec, f.name) for f in fields(cls) if f.name not in data and hasattr(spec, f.name)}
        return cls(**shared, **data)


@dataclass(frozen=True)
class Where:
    """Where a batch of images sits in its whole volumes: what the levers read from the whole volume once.

    landmarks: (N, L) each whole volume's brain landmarks (the curve maps a crop or slice with its volume's).
    field: (N, *grid) each whole volume's own field relative to the cohort's (:meth:`SiteField.own`).
    region: 3D, (N, 3) each crop's start in the whole volume (None: the images are whole);
        2D, (N,) each slice's coronal position on the field's grid (:meth:`SiteField.coronal_position`).
    scale: (N,) each whole volume's stored intensity scale (the Normalizer's ``high``, which normalizing divides
        out): the levers do not use it; a field-view GM-VAE with ``scale_weight`` reads it beside the field.
    """

    landmarks: torch.Tensor | None = None
    field: torch.Tensor | None = None
    region: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def __getitem__(self, i: slice | torch.Tensor) -> Where:
        return Where(*[None if v is None else v[i] for v in self._values()])

    def _values(self) -> list[torch.Tensor | None]:
        return [getattr(self, f.name) for f in fields(self)]

    def repeat(self, n: int) -> Where:
        """The batch repeated n times along the batch axis (one call for several branches of a step)."""
        return Where(*[None if v is None else torch.cat([v] * n) for v in self._values()])

    def detach(self) -> Where:
        return Where(*[None if v is None else v.detach() for v in self._values()])

    def to(self, device: torch.device | str) -> Where:
        return Where(*[None if v is None else v.to(device) for v in self._values()])


def cat(parts: list[Where]) -> Where:
    """Batches of :class:`Where` joined along the batch axis."""
    cols = zip(*[p._values() for p in parts])
    return Where(*[None if any(v is None for v in col) else torch.cat(col) for col in cols])


class LandmarkCurve(nn.Module):
    """Histogram AdaIN on the image itself: each image's brain landmarks (Nyul's percentiles, its own
    statistics, as instance norm's mean and SD) are mapped piecewise-linearly onto landmarks that an MLP
    reads from the style code, as AdaIN maps a channel's mean and SD onto the style's.

    The style's landmarks are ``standard`` (the training cohort's mean landmarks, set by
    :meth:`set_standard` before training) plus offsets u = MLP(style), kept increasing by a running
    maximum. u's last layer starts at zero, so at step 0 every style maps to the cohort's standard scale
    (Nyul's, fitted to all sites). Additive offsets, not scaled gaps: sites differ by a few hundredths of
    the intensity range, which Adam reaches in tens of steps on an offset but not through a cumulative product.
    """

    def __init__(self, style_dim: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("percentiles", torch.tensor(LANDMARK_PERCENTILES))
        n = len(LANDMARK_PERCENTILES)
        self.register_buffer("standard", torch.linspace(-0.5, 0.9, n))  # replaced by set_standard
        self.mlp = MLP(style_dim, n, hidden)
        last = self.mlp.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def set_standard(self, landmarks: torch.Tensor) -> None:
        """The step-0 target of every style: mean landmarks (L,) of the training images (normalized)."""
        self.standard.copy_(torch.as_tensor(landmarks, dtype=torch.float32))

    def style_landmarks(self, style: torch.Tensor) -> torch.Tensor:
        """(N, L) landmarks of the style code."""
        return torch.cummax(self.standard + self.mlp(style.float()), 1).values

    def forward(self, x: torch.Tensor, style: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        """x's intensities on the style's scale; ``src``: x's landmarks when x is a crop of a larger image."""
        src = brain_landmarks(x, self.percentiles) if src is None else src
        return piecewise_linear(x, src, self.style_landmarks(style))


class SiteField(nn.Module):
    """Bias AdaIN: a smooth multiplicative intensity field in the template's space, read from the style code.

    Scanners differ in where the brain is brighter, not only in how bright (coil profiles, the bias N4 leaves):
    a global curve cannot move that, and convolutions on crops do not know where they are. In MNI space the
    site's mean log low-pass field (its scans against the cohort's) is a map the style can carry. The image's
    own field ``own`` (its log low-pass, :func:`log_lowpass`, after the landmark curve to the cohort's standard,
    minus the cohort's mean ``cohort``) is divided out and the style's Phi(s) = MLP(s) multiplied in, on a coarse
    grid upsampled trilinearly: v -> v * exp(Phi(s) - own), v = (x + 1) / 2. The MLP's last layer starts at zero,
    so at step 0 every image is put on the cohort's mean field.
    """

    def __init__(self, style_dim: int, hidden: int, shape: tuple[int, ...], sigma: float) -> None:
        super().__init__()
        self.shape, self.sigma = tuple(int(v) for v in shape), float(sigma)
        self.step = field_grid_step(sigma)
        self.grid = tuple(len(grid_points(n, self.step)) for n in self.shape)
        n = 1
        for g in self.grid:
            n *= g
        self.mlp = MLP(style_dim, n, hidden)
        last = self.mlp.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.register_buffer("cohort", torch.zeros(self.grid))  # the cohort's mean log field: set_cohort
        self.register_buffer("valid", torch.ones(self.grid, dtype=torch.bool))

    def read(
        self, x: torch.Tensor, landmarks: torch.Tensor, standard: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole volumes' (N, 1, *shape) log low-pass fields on the grid, after the landmark curve from their
        ``landmarks`` (N, L) to the cohort's ``standard`` (L,) (so a site's contrast does not enter its field),
        and where they are defined (:func:`log_lowpass`)."""
        rows = [  # one volume at a time: the curve's intermediate copies of a whole cohort are not needed at once
            log_lowpass(piecewise_linear(x[i : i + 1], landmarks[i : i + 1], standard[None]), self.sigma, self.step)
            for i in range(len(x))
        ]
        return torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])

    def set_cohort(self, logs: torch.Tensor, valid: torch.Tensor) -> None:
        """The cohort's mean log field over its (V, *grid) fields, and the points inside most brains."""
        self.valid.copy_(valid.float().mean(0) > 0.5)
        w = valid.float()
        self.cohort.copy_((logs * w).sum(0) / w.sum(0).clamp_min(1))

    def fit_cohort(self, volumes: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """The cohort's mean field from whole volumes (V, 1, *shape) with their ``landmarks`` (V, L), read after the
        curve to their mean landmarks; returns each volume's own field (V, *grid)."""
        logs, valid = self.read(volumes, landmarks, landmarks.mean(0))
        self.set_cohort(logs, valid)
        return self.own(logs, valid)

    def own(self, logs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """An image's field relative to the cohort's (0 where either is undefined)."""
        return torch.where(valid & self.valid, logs - self.cohort, torch.zeros(()))

    def style_field(self, style: torch.Tensor) -> torch.Tensor:
        """(N, *grid) Phi(s): the style's field relative to the cohort's."""
        return self.mlp(style.float()).view(-1, *self.grid) * self.valid

    @staticmethod
    def plane(grid: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """(N, gx, gz): the coronal planes of (N, gx, gy, gz) maps at fractional grid positions ``at`` (N,) along
        gy, linear between grid planes (what a 2D model's slice sees of its volume's field)."""
        lo = at.floor().long().clamp(0, grid.shape[2] - 1)
        hi = (lo + 1).clamp(max=grid.shape[2] - 1)
        w = (at - lo.to(at.dtype)).to(grid.dtype)[:, None, None]
        n = torch.arange(len(grid), device=grid.device)
        return grid[n, :, lo] * (1 - w) + grid[n, :, hi] * w

    def coronal_position(self, index: torch.Tensor) -> torch.Tensor:
        """A coronal plane's voxel index -> its fractional position on the grid (both ends shared, as upsampled)."""
        return torch.as_tensor(index).float() * (self.grid[1] - 1) / max(self.shape[1] - 1, 1)

    def forward_slices(self, x: torch.Tensor, style: torch.Tensor, own: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """2D: coronal slices x (N, 1, X, Z) of volumes of the field's ``shape`` (X, Y, Z), ``own`` (N, *grid) their
        volumes' own fields, ``at`` (N,) the slices' grid positions: the style's plane replaces the own."""
        d = (self.plane(self.style_field(style), at) - self.plane(own, at).float())[:, None]
        return multiply_field(
            x, F.interpolate(d, size=(self.shape[0], self.shape[2]), mode="bilinear", align_corners=True)
        )

    def log_field(self, style: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """(N, 1, *shape): the log of the factor by which the style's field replaces the image's own, upsampled from
        the coarse grid to the whole (padded) volume: what :meth:`forward` multiplies in. A 2D model's slices share
        their volume's: each coronal plane of it is what :meth:`forward_slices` applies to that slice."""
        d = (self.style_field(style) - own.float())[:, None]
        return F.interpolate(d, size=self.shape, mode="trilinear" if d.dim() == 5 else "bilinear", align_corners=True)

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, own: torch.Tensor, region: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (N, 1, *spatial) with its field moved from ``own`` (N, *grid) to the style's; ``region``: (N, dim)
        start of each crop in the whole (padded) volume (None: x is the whole volume)."""
        full = self.log_field(style, own)
        if region is not None:
            size = x.shape[2:]
            full = torch.stack(
                [f[(..., *[slice(int(a), int(a) + s) for a, s in zip(r, size)])] for f, r in zip(full, region)]
            )
        return multiply_field(x, full)


class Levers(nn.Module):
    """The appearance levers of :class:`LeverSpec`: x -> field_s(curve_s(x)), the identity at step 0.

    The site field reads an image's field after the curve has put it on the cohort's standard landmarks, so the
    field needs the curve (the config refuses a field without it); the standard is handed to the field here.
    """

    def __init__(self, spec: LeverSpec) -> None:
        super().__init__()
        self.dim, self.section = spec.dim, spec.section
        self.curve = LandmarkCurve(spec.style_dim, spec.hidden) if spec.landmark_curve else None
        self.field = (
            SiteField(spec.style_dim, spec.hidden, spec.volume, spec.field_sigma) if spec.site_field_mm else None
        )

    def read(self, volumes: torch.Tensor, landmarks: torch.Tensor | None = None) -> Where:
        """Whole volumes' (N, 1, *volume) landmarks and own fields, after :meth:`fit_cohort` (``landmarks``: when
        the caller has them)."""
        if self.curve is not None and landmarks is None:
            landmarks = brain_landmarks(volumes, self.curve.percentiles)
        own = None
        if self.field is not None:
            own = self.field.own(*self.field.read(volumes, landmarks, self.curve.standard))
        return Where(landmarks, own)

    def fit_cohort(self, volumes: list[torch.Tensor], landmarks: torch.Tensor | None = None) -> Where:
        """Step 0 of training: the curve's standard (the cohort's mean landmarks) and the field's cohort mean, read
        from every training volume (each (1, 1, *volume)) once; returns each volume's :class:`Where`."""
        if landmarks is None:
            landmarks = torch.cat([brain_landmarks(v, torch.tensor(LANDMARK_PERCENTILES)) for v in volumes])
        if self.curve is not None:
            self.curve.set_standard(landmarks.mean(0))
        own = None if self.field is None else self.field.fit_cohort(torch.cat(volumes), landmarks)
        return Where(landmarks, own)

    def forward(self, x: torch.Tensor, style: torch.Tensor, where: Where | None = None) -> torch.Tensor:
        """x (N, 1, *spatial) on the style's appearance. ``where``: where x sits in its whole volumes (None: x is
        whole and 3D, and is read here; 2D slices without it are mapped by their own landmarks and no field)."""
        if where is None:
            where = self.read(x) if self.dim == 3 else Where()
        if self.curve is not None:
            x = self.curve(x, style, where.landmarks)
        if self.field is not None and where.field is not None:
            x = (self.field if self.dim == 3 else self.field.forward_slices)(x, style, where.field, where.region)
        return x

    def landing(self, style: torch.Tensor, where: Where) -> Where:
        """Where a translation of images at ``where`` to ``style`` lands: the landmarks the curve put them on and
        the field the site field put them on (the cycle maps them back with these; L_hist and L_field read them)."""
        return Where(
            None if self.curve is None else self.curve.style_landmarks(style),
            None if self.field is None else self.field.style_field(style),
            where.region,
        )


def compose(
    levers: Levers | None, image: torch.Tensor, x: torch.Tensor | None, style: torch.Tensor, where: Where | None
) -> torch.Tensor:
    """A generator's output with the levers: G's image (the papers), or levers_s(x) + G's change (cpu)."""
    if levers is None:
        return image
    if x is None:
        raise ValueError(f"a residual generator ({levers.section}.residual) needs the input image x")
    return levers(x, style, where) + image


def migrate_levers(state: dict[str, dict]) -> dict[str, dict]:
    """Nets' weights of a model file written while the levers lived inside G (``G.curve.*``, ``G.field.*``): those
    moved to the ``levers`` net; newer files pass unchanged."""
    if "levers" in state or "G" not in state:
        return state
    g = dict(state["G"])
    moved = {k: g.pop(k) for k in list(g) if k.startswith(("curve.", "field."))}
    return {**state, "G": g, "levers": moved}
