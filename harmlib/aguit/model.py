"""The SSIM-guided disentanglement harmonizer (paper 1, Sec. 2): AGUIT's networks, in 2D or 3D.

* ``E_b`` (:class:`StructureEncoder`): image -> brain-structure code c in B (a feature map).
* ``E_s`` (:class:`StyleEncoder`): image -> style s = (n, l): noise n in N (``noise_dim``) and label
  logits over the K scanner-site pairs; l = tanh(logits) lies in (-1, 1), the paper's {-1, 1}^K.
* ``G`` (:class:`Generator`): (c, s) -> image; an MLP maps s to the AdaIN parameters of its
  residual blocks, so the style modulates every channel of the structure code.
* ``D^x`` (:class:`ImageDiscriminator`): multi-scale PatchGAN whose last layer has 1 + K outputs:
  D_a^x (real/fake, LSGAN) and D_p^x (label prediction).
* ``D^b`` (:class:`ContentDiscriminator`): on c, 1 + K outputs: D_a^b (which domain-agnostic
  real/fake game the structure code plays) and D_p^b (can the site be read from c?).

Facts from the AGUIT reference: conv7(64), two stride-2 conv4 (128, 256), four
IN residual blocks; the style encoder the same without norm, global pooling and a 1x1 layer to
noise_dim (8) + K; the decoder four AdaIN residual blocks, two (upsample, conv5, LayerNorm) and a
conv7 with tanh; an MLP with 256 hidden units. Widths and depths are config fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from harmlib.config import AGUITArch
from harmlib.models.blocks import (
    MLP,
    ConvBlock,
    ImageOutput,
    ResBlock,
    assign_adain_params,
    conv,
    downsample,
    global_pool,
    n_adain_params,
    pad_multiple,
    upsample,
)
from harmlib.models.levers import Levers, LeverSpec, Where, compose

KIND = "ssim_harmonizer"  # the model file's kind: paper 1's 3D harmonizer


@dataclass(frozen=True)
class AGUITSpec(AGUITArch):
    """Architecture of one harmonizer: the ``harmonizer`` section's :class:`~harmlib.config.AGUITArch` fields,
    plus what the data decides (2D or 3D, K sites)."""

    dim: int = 3
    n_domains: int = 5
    volume: tuple[int, ...] = ()  # the padded volume's shape: the site field's grid spans it (set by build_task)
    voxel_size_mm: float = 1.0  # the model grid's voxel, for site_field_mm in voxels

    @property
    def style_dim(self) -> int:
        """|s| = |n| + K."""
        return self.noise_dim + self.n_domains

    def levers(self) -> LeverSpec:
        """The cpu levers composed around G (``residual``, ``landmark_curve``, ``site_field_mm``), read from s."""
        return LeverSpec.of(self, dim=self.dim, style_dim=self.style_dim, hidden=self.mlp_hidden, section="harmonizer")

    @property
    def pad_multiple(self) -> int:
        """Volumes are padded for one halving more than E_b's n_down (E_s and D^x downsample further)."""
        return pad_multiple(self.n_down + 1)


class StructureEncoder(nn.Module):
    """E_b: conv7 -> ``n_down`` stride-2 conv4 -> ``n_res`` residual blocks, all instance-normed."""

    def __init__(self, spec: AGUITSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(spec.dim, 1, spec.width, 7)]
        ch = spec.width
        for _ in range(spec.n_down):
            layers.append(ConvBlock(spec.dim, ch, ch * 2, 4, stride=2))
            ch *= 2
        layers += [ResBlock(spec.dim, ch) for _ in range(spec.n_res)]
        self.net = nn.Sequential(*layers)
        self.out_ch = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class StyleEncoder(nn.Module):
    """E_s: unnormalized convs, global pooling, then a linear layer to (noise n, label logits)."""

    def __init__(self, spec: AGUITSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(spec.dim, 1, spec.style_width, 7, norm="none")]
        ch = spec.style_width
        for _ in range(spec.n_down + 2):  # two more stride-2 steps than E_b: style is global
            nxt = min(ch * 2, 4 * spec.style_width)
            layers.append(ConvBlock(spec.dim, ch, nxt, 4, stride=2, norm="none"))
            ch = nxt
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(ch, spec.noise_dim + spec.n_domains)
        self.noise_dim = spec.noise_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (n, label logits)."""
        out = self.head(global_pool(self.net(x)))
        return out[:, : self.noise_dim], out[:, self.noise_dim :]


def style_vector(noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """s = (n, l): the generator's input; ``label`` in [-1, 1]^K."""
    return torch.cat([noise, label], 1)


class Generator(nn.Module):
    """G: AdaIN residual blocks on c, then (upsample, conv5, LayerNorm) x n_down, conv7 + tanh: G(c, s) is the image.

    With ``spec.residual`` (the cpu profile) the last conv7 has no tanh and starts at zero: G(c, s) is a change of
    appearance that :func:`generate` adds to the levers' image (:mod:`harmlib.models.levers`).
    """

    def __init__(self, spec: AGUITSpec, content_ch: int) -> None:
        super().__init__()
        ch = content_ch
        self.res = nn.Sequential(*[ResBlock(spec.dim, ch, norm="adain") for _ in range(spec.n_res)])
        ups: list[nn.Module] = []
        for _ in range(spec.n_down):
            ups.append(ConvBlock(spec.dim, ch, ch // 2, 5, norm="ln"))
            ch //= 2
        self.ups = nn.ModuleList(ups)
        self.out = ImageOutput(spec.dim, ch, delta=spec.residual)
        self.mlp = MLP(spec.style_dim, n_adain_params(self.res), spec.mlp_hidden)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """G(c, s): the MLP sets every AdaIN from s; the residual blocks and upsamplings decode c."""
        assign_adain_params(self.res, self.mlp(style))
        h = self.res(content)
        for up in self.ups:
            h = up(upsample(h))
        return self.out(h)


def generate(
    nets: dict[str, nn.Module],
    content: torch.Tensor,
    style: torch.Tensor,
    x: torch.Tensor | None = None,
    where: Where | None = None,
) -> torch.Tensor:
    """The harmonizer's image for (c, s): G(c, s), or on the cpu profile levers_s(x) + G(c, s), x the image whose
    structure code c is and ``where`` where it sits in its whole volume (None: x is whole)."""
    return compose(nets.get("levers"), nets["G"](content, style), x, style, where)


class _PatchD(nn.Module):
    def __init__(self, spec: AGUITSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(spec.dim, 1, spec.d_width, 4, stride=2, norm="none", act="lrelu")]
        ch = spec.d_width
        for _ in range(spec.d_layers - 1):
            layers.append(ConvBlock(spec.dim, ch, ch * 2, 4, stride=2, norm="none", act="lrelu"))
            ch *= 2
        layers.append(conv(spec.dim, ch, 1 + spec.n_domains, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return out[:, :1], global_pool(out[:, 1:])  # adversarial map, label logits


class ImageDiscriminator(nn.Module):
    """D^x = (D_a^x, D_p^x) at ``d_scales`` scales: a list of (real/fake map, label logits)."""

    def __init__(self, spec: AGUITSpec) -> None:
        super().__init__()
        self.scales = nn.ModuleList([_PatchD(spec) for _ in range(spec.d_scales)])

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        outs = []
        for d in self.scales:
            outs.append(d(x))
            x = downsample(x)
        return outs


class ContentDiscriminator(nn.Module):
    """D^b = (D_a^b, D_p^b) on the brain-structure code: (real/fake logit, label logits)."""

    def __init__(self, spec: AGUITSpec, content_ch: int) -> None:
        super().__init__()
        ch = content_ch
        self.net = nn.Sequential(
            ConvBlock(spec.dim, ch, spec.d_width, 3, norm="none", act="lrelu"),
            ConvBlock(spec.dim, spec.d_width, spec.d_width, 4, stride=2, norm="none", act="lrelu"),
            ConvBlock(spec.dim, spec.d_width, spec.d_width, 4, stride=2, norm="none", act="lrelu"),
        )
        self.head = nn.Linear(spec.d_width, 1 + spec.n_domains)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(global_pool(self.net(c)))
        return out[:, :1], out[:, 1:]


def build_aguit(spec: AGUITSpec) -> dict[str, nn.Module]:
    """The nets by the paper's names: E_b, E_s, G, D_x (D_a^x, D_p^x), D_b (D_a^b, D_p^b); with ``spec.residual``
    also the cpu ``levers`` composed around G (:func:`generate`).

    Args:
        spec: the architecture (``aguit.task.spec_from_config`` makes it from the ``harmonizer`` section).
    """
    e_b = StructureEncoder(spec)
    nets: dict[str, nn.Module] = {"E_b": e_b, "E_s": StyleEncoder(spec), "G": Generator(spec, e_b.out_ch)}
    if spec.residual:  # the cpu levers, around G (built here, after G, so the paper's nets draw the same weights)
        nets["levers"] = Levers(spec.levers())
    return nets | {"D_x": ImageDiscriminator(spec), "D_b": ContentDiscriminator(spec, e_b.out_ch)}
