"""Building blocks shared by every network, generic over 2D (slices) and 3D (volumes).

``dim`` is 2 or 3 everywhere; the same code builds the 3D SSIM-guided harmonizer and the 2D
DRIT-family models.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(dim: int, cin: int, cout: int, k: int, stride: int = 1, pad_mode: str = "reflect") -> nn.Module:
    """A padded convolution that keeps the size (stride 1) or divides it by ``stride``."""
    cls = nn.Conv2d if dim == 2 else nn.Conv3d
    return cls(
        cin,
        cout,
        k,
        stride=stride,
        padding=(k - 1) // 2 if k % 2 else k // 2 - 1 + (stride == 1),
        padding_mode=pad_mode,
    )


def instance_norm(dim: int, ch: int, affine: bool = False) -> nn.Module:
    return (nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d)(ch, affine=affine)


class LayerNorm(nn.Module):
    """Per-sample normalization over channels and space, with a per-channel affine (as in MUNIT/AGUIT)."""

    def __init__(self, ch: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(ch))
        self.beta = nn.Parameter(torch.zeros(ch))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(1).view(-1, *[1] * (x.ndim - 1))
        std = flat.std(1).view(-1, *[1] * (x.ndim - 1))
        shape = (1, -1, *[1] * (x.ndim - 2))
        return (x - mean) / (std + self.eps) * self.gamma.view(shape) + self.beta.view(shape)


class AdaIN(nn.Module):
    """Adaptive instance norm: normalize each channel, then scale and shift by style parameters.

    The parameters are not learned here: the generator's MLP writes them per sample with
    :meth:`set_params` before each forward pass.
    """

    def __init__(self, dim: int, ch: int) -> None:
        super().__init__()
        self.norm = instance_norm(dim, ch, affine=False)
        self.dim, self.ch = dim, ch
        self.scale: torch.Tensor | None = None
        self.shift: torch.Tensor | None = None

    def set_params(self, p: torch.Tensor) -> None:
        shape = (p.shape[0], self.ch, *[1] * self.dim)
        self.scale = 1 + p[:, : self.ch].reshape(shape)
        self.shift = p[:, self.ch :].reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            raise RuntimeError("AdaIN used before its style parameters were set (call set_params)")
        return self.norm(x) * self.scale + self.shift


def make_norm(kind: str, dim: int, ch: int) -> nn.Module:
    if kind == "in":
        return instance_norm(dim, ch)
    if kind == "adain":
        return AdaIN(dim, ch)
    if kind == "ln":
        return LayerNorm(ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'; use in, adain, ln or none")


class ConvBlock(nn.Module):
    """conv -> norm -> activation."""

    def __init__(
        self, dim: int, cin: int, cout: int, k: int, stride: int = 1, norm: str = "in", act: str = "relu"
    ) -> None:
        super().__init__()
        self.conv = conv(dim, cin, cout, k, stride)
        self.norm = make_norm(norm, dim, cout)
        self.act = {
            "relu": nn.ReLU(inplace=True),
            "lrelu": nn.LeakyReLU(0.2, inplace=True),
            "tanh": nn.Tanh(),
            "none": nn.Identity(),
        }[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ImageOutput(ConvBlock):
    """A generator's last conv7: tanh onto [-1, 1] (the image drawn from the code), or with ``residual`` a
    delta that starts at zero and is added to the input image, x + delta (IGUANE's generator: the identity
    at initialization). ``switch`` names the config field in the error when x is missing."""

    def __init__(self, dim: int, cin: int, residual: bool, switch: str) -> None:
        super().__init__(dim, cin, 1, 7, norm="none", act="none" if residual else "tanh")
        self.residual, self.switch = residual, switch
        if residual:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, h: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        if not self.residual:
            return super().forward(h)
        if x is None:
            raise ValueError(f"a residual generator ({self.switch}) needs the input image x")
        return x + super().forward(h)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection; ``norm='adain'`` makes it style-modulated."""

    def __init__(self, dim: int, ch: int, norm: str = "in") -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(dim, ch, ch, 3, norm=norm), ConvBlock(dim, ch, ch, 3, norm=norm, act="none")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MLP(nn.Module):
    """Fully connected layers with ReLU between them."""

    def __init__(self, cin: int, cout: int, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        dims = [cin] + [hidden] * (layers - 1) + [cout]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            mods.append(nn.Linear(a, b))
            if i < layers - 1:
                mods.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def adain_layers(module: nn.Module) -> list[AdaIN]:
    return [m for m in module.modules() if isinstance(m, AdaIN)]


def assign_adain_params(module: nn.Module, params: torch.Tensor) -> None:
    """Split the MLP output over every AdaIN layer of ``module`` (2 x channels each)."""
    for m in adain_layers(module):
        m.set_params(params[:, : 2 * m.ch])
        params = params[:, 2 * m.ch :]


def n_adain_params(module: nn.Module) -> int:
    return sum(2 * m.ch for m in adain_layers(module))


def pad_multiple(halvings: int) -> int:
    """The multiple every spatial size is padded to: 2^halvings, so each stride-2 step of a net halves exactly
    and its upsampling path returns the input's size; at least 8. Model files store the padding they used."""
    return max(8, 2**halvings)


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Average pooling by 2 (for the multi-scale discriminator)."""
    return (F.avg_pool2d if x.ndim == 4 else F.avg_pool3d)(x, 3, stride=2, padding=1, count_include_pad=False)


def global_pool(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).mean(-1)


# Nyul & Udupa's (2000) landmarks: the brain's 1st and 99th percentiles and its deciles.
LANDMARK_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)


def brain_landmarks(x: torch.Tensor, percentiles: torch.Tensor) -> torch.Tensor:
    """(N, L) percentiles of each image's brain: its voxels above the image's mean (the
    ``data.datasets.Normalizer``'s foreground), which ignores the background noise at any grid."""
    q = percentiles.to(x.device, torch.float32) / 100.0
    rows = [torch.quantile(_foreground(v), q) for v in x.detach().float().flatten(1)]
    return torch.stack(rows)


def _foreground(v: torch.Tensor) -> torch.Tensor:
    """The voxels above the mean; a constant image has none, and all of it is its own foreground."""
    above = v[v > v.mean()]
    return above if above.numel() else v


def piecewise_linear(x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, floor: float = -1.0) -> torch.Tensor:
    """Map each image of x (N, 1, *spatial) through the curve (floor -> floor, src_k -> dst_k), linear
    between knots and, above the last one, along the last segment. ``src`` and ``dst``: (N, L), increasing."""
    n = x.shape[0]
    ones = torch.full((n, 1), floor, device=x.device, dtype=torch.float32)
    kx, ky = torch.cat([ones, src.float()], 1), torch.cat([ones, dst.float()], 1)
    flat = x.float().reshape(n, -1)
    i = torch.searchsorted(kx.contiguous(), flat.contiguous()).clamp(1, kx.shape[1] - 1)
    x0, x1, y0, y1 = (t.gather(1, j) for t, j in ((kx, i - 1), (kx, i), (ky, i - 1), (ky, i)))
    out = y0 + (y1 - y0) / (x1 - x0).clamp_min(1e-4) * (flat - x0)
    return out.reshape(x.shape).to(x.dtype)


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

    def target(self, style: torch.Tensor) -> torch.Tensor:
        """(N, L) landmarks of the style code."""
        return torch.cummax(self.standard + self.mlp(style.float()), 1).values

    def forward(self, x: torch.Tensor, style: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        """x's intensities on the style's scale; ``src``: x's landmarks when x is a crop of a larger image."""
        src = brain_landmarks(x, self.percentiles) if src is None else src
        return piecewise_linear(x, src, self.target(style))


def field_grid_step(sigma_vox: float) -> int:
    """Spacing (voxels) of the coarse grid a low-pass field of Gaussian ``sigma_vox`` is kept on: 2/3 sigma,
    where that Gaussian's spectrum is below 1 % (the field between grid points is linear, not aliased)."""
    return max(1, int(round(2 * sigma_vox / 3)))


def grid_points(n: int, step: int) -> torch.Tensor:
    """The coarse grid's positions along an axis of ``n`` voxels: evenly spaced, both ends included, as
    ``F.interpolate(..., align_corners=True)`` places them."""
    return torch.linspace(0, n - 1, -(-(n - 1) // step) + 1).round().long()


def log_lowpass(x: torch.Tensor, sigma_vox: float, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The brain's log low-pass intensity on the coarse grid, and where it is defined.

    ``x`` (N, 1, *spatial) in [-1, 1]; the brain is each image's foreground (voxels above its mean, as
    :func:`brain_landmarks`). Normalized convolution: Gaussian(v * m) / Gaussian(m) with v = (x + 1) / 2, so
    the edge of the brain does not darken the field. Returns (N, *grid) log values (0 where undefined) and
    the (N, *grid) mask of points with at least 5 % brain weight around them.
    """
    from scipy import ndimage  # numpy-side, once per volume: the training loop never calls it

    logs, valid = [], []
    for img in x.detach().float().cpu().numpy()[:, 0]:
        m = (img > img.mean()).astype("float32")
        num = ndimage.gaussian_filter((img + 1) / 2 * m, sigma_vox, mode="constant")
        den = ndimage.gaussian_filter(m, sigma_vox, mode="constant")
        idx = torch.meshgrid(*[grid_points(n, step) for n in img.shape], indexing="ij")
        num_g, den_g = torch.from_numpy(num)[idx], torch.from_numpy(den)[idx]
        ok = den_g > 0.05
        logs.append(torch.where(ok, (num_g.clamp_min(1e-4) / den_g.clamp_min(1e-4)).log(), torch.zeros(())))
        valid.append(ok)
    return torch.stack(logs).to(x.device), torch.stack(valid).to(x.device)


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

    def own(self, logs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """An image's field relative to the cohort's (0 where either is undefined)."""
        return torch.where(valid & self.valid, logs - self.cohort, torch.zeros(()))

    def target(self, style: torch.Tensor) -> torch.Tensor:
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
        """2D: coronal slices x (N, 1, X, Z) of volumes of the field's ``shape`` (X, Y, Z), ``own`` (N, gx, gz) their
        planes of their volumes' own fields at grid positions ``at`` (N,): the style's plane replaces the own."""
        d = (self.plane(self.target(style), at) - own.float())[:, None]
        return multiply_field(
            x, F.interpolate(d, size=(self.shape[0], self.shape[2]), mode="bilinear", align_corners=True)
        )

    def log_field(self, style: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """(N, 1, *shape): the log of the factor by which the style's field replaces the image's own, upsampled from
        the coarse grid to the whole (padded) volume: what :meth:`forward` multiplies in. A 2D model's slices share
        their volume's: each coronal plane of it is what :meth:`forward_slices` applies to that slice."""
        d = (self.target(style) - own.float())[:, None]
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


def multiply_field(x: torch.Tensor, log_field: torch.Tensor) -> torch.Tensor:
    """x in [-1, 1] with its intensities v = (x + 1) / 2 multiplied by exp(log_field): the background stays -1."""
    v = (x.float() + 1) / 2 * log_field.exp()
    return (2 * v - 1).to(x.dtype)
