"""DRIT++ (Lee et al., the multi-domain MDMM variant) and GMM-DRIT (thesis Sec. 3) on 2D slices.

The networks, named as in the thesis:

* ``E_c`` (:class:`ContentEncoder`) E^c: x -> z^c, a feature map meant to hold anatomy only. During
  training a Gaussian noise layer perturbs z^c (DRIT++), so the generator cannot rely on tiny values.
* ``E_a`` E^a: x -> attribute z^a. DRIT++: :class:`AttributeEncoder` on the image and its tiled
  one-hot domain code, giving (mu, logvar) of a unimodal q(z^a|x) pulled to N(0, I) (nz 8).
  GMM-DRIT: the frozen GM-VAE (``harmlib.gmvae.model.GMVAE.attribute``), giving (z^a, y~).
* ``G`` (:class:`Generator`) G(z^c, z^a, c): the attribute and the domain code c (one-hot over K, or
  c_sf = 0 for scanner-free) pass through an MLP whose output is tiled and concatenated to the
  features inside every residual block before the upsamplings, as in DRIT++'s multi-domain generator.
* ``D_s1``, ``D_s2`` (:class:`ScannerDiscriminator`) D_s^1 and D_s^2: real/fake patch map plus K
  scanner logits; D_s^1 judges encoded translations, D_s^2 random-attribute (DRIT++) or
  scanner-free (GMM-DRIT) ones.
* ``D_c`` (:class:`ContentDiscriminator`) D_c: K scanner logits read from z^c.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from harmlib.config import DRITArch
from harmlib.models.blocks import MLP, ConvBlock, ImageOutput, LayerNorm, ResBlock, conv, global_pool, upsample
from harmlib.models.levers import Levers, LeverSpec, Where, compose

GMM_DRIT, DRIT = "gmm_drit", "drit"  # the model files' kinds: GMM-DRIT (the thesis) and its baseline DRIT++
VARIANTS = (GMM_DRIT, DRIT)


@dataclass(frozen=True)
class DRITSpec(DRITArch):
    """Architecture shared by DRIT++ and GMM-DRIT: the ``drit`` section's :class:`~harmlib.config.DRITArch`
    fields (``nz``: 8, or the GM-VAE's gaussian_size) plus the number of scanners K."""

    n_domains: int = 5
    volume: tuple[int, ...] = ()  # (X, Y, Z) of the volumes, X and Z padded as the slices: the site field's extent
    voxel_size_mm: float = 1.0  # for site_field_mm in voxels

    def levers(self) -> LeverSpec:
        """The cpu levers composed around G, read from the code (z^a, c)."""
        return LeverSpec.of(self, dim=2, style_dim=self.nz + self.n_domains, hidden=4 * self.width, section="drit")


def tile(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B, C) vector repeated over the spatial grid of ``like`` (B, *, H, W)."""
    return v.to(like.dtype)[:, :, None, None].expand(-1, -1, *like.shape[2:])


class ContentEncoder(nn.Module):
    """E^c: conv7 -> ``n_down`` stride-2 convs -> ``n_res`` residual blocks (instance norm), + noise in training."""

    def __init__(self, spec: DRITSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(2, 1, spec.width, 7, norm="in", act="lrelu")]
        ch = spec.width
        for _ in range(spec.n_down):
            layers.append(ConvBlock(2, ch, ch * 2, 4, stride=2, norm="in", act="relu"))
            ch *= 2
        layers += [ResBlock(2, ch) for _ in range(spec.n_res)]
        self.net = nn.Sequential(*layers)
        self.out_ch, self.noise = ch, spec.content_noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return z + self.noise * torch.randn_like(z) if self.training and self.noise > 0 else z


class AttributeEncoder(nn.Module):
    """DRIT++'s E^a: convs (no norm) on [x, tiled c], global pooling, then (mu, logvar) of q(z^a|x)."""

    def __init__(self, spec: DRITSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(2, 1 + spec.n_domains, spec.attr_width, 7, norm="none", act="lrelu")]
        ch = spec.attr_width
        for _ in range(spec.n_down + 2):  # style is global: downsample further than E^c
            nxt = min(ch * 2, 4 * spec.attr_width)
            layers.append(ConvBlock(2, ch, nxt, 4, stride=2, norm="none", act="lrelu"))
            ch = nxt
        self.net = nn.Sequential(*layers)
        self.mu, self.logvar = nn.Linear(ch, spec.nz), nn.Linear(ch, spec.nz)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = global_pool(self.net(torch.cat([x, tile(c, x)], 1)))
        return self.mu(h), self.logvar(h).clamp(-10, 10)


class _ConcatRes(nn.Module):
    """DRIT++'s residual block with an injected vector: after each 3x3 conv, the tiled vector is
    concatenated and fused back to ``ch`` channels by two 1x1 convs (cheap at any resolution)."""

    def __init__(self, ch: int, ns: int) -> None:
        super().__init__()
        self.c1, self.c2 = (
            ConvBlock(2, ch, ch, 3, norm="in", act="none"),
            ConvBlock(2, ch, ch, 3, norm="in", act="none"),
        )
        self.f1, self.f2 = self._fuse(ch, ns), self._fuse(ch, ns)

    @staticmethod
    def _fuse(ch: int, ns: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(ch + ns, ch + ns, 1), nn.ReLU(inplace=True), nn.Conv2d(ch + ns, ch, 1), nn.ReLU(inplace=True)
        )

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        t = tile(s, h)
        y = self.f1(torch.cat([self.c1(h), t], 1))
        y = self.f2(torch.cat([self.c2(y), t], 1))
        return h + y


class Generator(nn.Module):
    """G(z^c, z^a, c): an MLP maps (z^a, c) to one vector per residual block, which is tiled and concatenated
    to its features (at the content code's resolution, before the upsamplings, as in DRIT++'s multi-domain
    generator); then (upsample, conv3, LayerNorm) x n_down (DRIT++'s 3x3 transposed convs) and conv7 + tanh.

    With ``spec.residual`` (the cpu profile) the last conv7 has no tanh and starts at zero: G's output is a change
    of appearance that :func:`generate` adds to the levers' slice (:mod:`harmlib.models.levers`).
    """

    def __init__(self, spec: DRITSpec, content_ch: int) -> None:
        super().__init__()
        ch = content_ch
        self.mlp = MLP(spec.nz + spec.n_domains, spec.n_res * ch, hidden=4 * spec.width)
        self.res = nn.ModuleList([_ConcatRes(ch, ch) for _ in range(spec.n_res)])
        self.ups = nn.ModuleList()
        for _ in range(spec.n_down):
            self.ups.append(nn.Sequential(conv(2, ch, ch // 2, 3), LayerNorm(ch // 2), nn.ReLU(inplace=True)))
            ch //= 2
        self.out = ImageOutput(2, ch, delta=spec.residual)

    def forward(self, z_c: torch.Tensor, z_a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """G(z^c, z^a, c)."""
        s = self.mlp(style_code(z_a, c)).chunk(len(self.res), 1)
        h = z_c
        for block, s_i in zip(self.res, s):
            h = block(h, s_i)
        for up in self.ups:
            h = up(upsample(h))
        return self.out(h)


def style_code(z_a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(z^a, c): what G's MLP and the levers read."""
    return torch.cat([z_a, c.to(z_a.dtype)], 1)


def generate(
    nets: dict[str, nn.Module],
    z_c: torch.Tensor,
    z_a: torch.Tensor,
    c: torch.Tensor,
    x: torch.Tensor | None = None,
    where: Where | None = None,
) -> torch.Tensor:
    """The translated slices: G(z^c, z^a, c), or on the cpu profile levers_(z^a, c)(x) + G(z^c, z^a, c), x the
    slices whose content z^c is and ``where`` where they sit in their volumes (:func:`slice_where`)."""
    return compose(nets.get("levers"), nets["G"](z_c, z_a, c), x, style_code(z_a, c), where)


class ScannerDiscriminator(nn.Module):
    """D_s^i: a PatchGAN; returns (real/fake map, K scanner logits pooled over the image)."""

    def __init__(self, spec: DRITSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(2, 1, spec.d_width, 4, stride=2, norm="none", act="lrelu")]
        ch = spec.d_width
        for _ in range(spec.d_layers - 1):
            layers.append(ConvBlock(2, ch, min(ch * 2, 8 * spec.d_width), 4, stride=2, norm="none", act="lrelu"))
            ch = min(ch * 2, 8 * spec.d_width)
        self.net = nn.Sequential(*layers)
        self.adv = conv(2, ch, 1, 3)
        self.cls = conv(2, ch, spec.n_domains, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return self.adv(h), global_pool(self.cls(h))


class ContentDiscriminator(nn.Module):
    """D_c: which scanner does z^c come from? (K logits; E^c is trained to make them uninformative)."""

    def __init__(self, spec: DRITSpec, content_ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            ConvBlock(2, content_ch, spec.d_width, 3, norm="none", act="lrelu"),
            ConvBlock(2, spec.d_width, spec.d_width, 4, stride=2, norm="none", act="lrelu"),
            ConvBlock(2, spec.d_width, spec.d_width, 4, stride=2, norm="none", act="lrelu"),
        )
        self.head = nn.Linear(spec.d_width, spec.n_domains)

    def forward(self, z_c: torch.Tensor) -> torch.Tensor:
        return self.head(global_pool(self.net(z_c)))


def build_drit(spec: DRITSpec, attribute_encoder: nn.Module | None = None) -> dict[str, nn.Module]:
    """The nets by the thesis's names. DRIT++ when ``attribute_encoder`` is None, else GMM-DRIT with that (frozen) E^a.

    Args:
        spec: the architecture (the ``drit`` section's fields, K and nz).
        attribute_encoder: GMM-DRIT's pretrained GM-VAE, or None for DRIT++'s own E^a.
    """
    e_c = ContentEncoder(spec)
    e_a = attribute_encoder if attribute_encoder is not None else AttributeEncoder(spec)
    if attribute_encoder is not None:
        e_a.requires_grad_(False)  # stage 2 never updates the pretrained GM-VAE
    nets: dict[str, nn.Module] = {"E_c": e_c, "E_a": e_a, "G": Generator(spec, e_c.out_ch)}
    if spec.residual:  # the cpu levers, around G (built after G, so the paper's nets draw the same weights)
        nets["levers"] = Levers(spec.levers())
    return nets | {
        "D_s1": ScannerDiscriminator(spec),
        "D_s2": ScannerDiscriminator(spec),
        "D_c": ContentDiscriminator(spec, e_c.out_ch),
    }


def slice_where(
    levers: Levers,
    landmarks: torch.Tensor | None,
    own: torch.Tensor | None,
    coronal: torch.Tensor,
    scale: torch.Tensor | None = None,
) -> Where:
    """Where slices sit in their volumes: their volumes' landmarks (N, L), own fields (N, *grid) and stored scales
    (N,), and the slices' positions on the field's grid from their coronal indices (N,)."""
    at = None if levers.field is None else levers.field.coronal_position(coronal)
    return Where(landmarks, own, at, scale)
