"""Building blocks shared by every network, generic over 2D (slices) and 3D (volumes).

``dim`` is 2 or 3 everywhere; the same code builds the 3D SSIM-guided harmonizer and the 2D
DRIT-family models.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmlib.config import pad_multiple  # noqa: F401  (the pad rule, written once in config; nets import it here)


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
    """A generator's last conv7: the image, tanh onto [-1, 1] (the papers' G draws it), or with ``delta`` a change
    of appearance with no tanh that starts at zero, which :class:`~harmlib.models.levers.Levers` adds to the input
    (the cpu profile's residual generator: the identity at initialization, IGUANE)."""

    def __init__(self, dim: int, cin: int, delta: bool = False) -> None:
        super().__init__(dim, cin, 1, 7, norm="none", act="none" if delta else "tanh")
        if delta:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)


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


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Average pooling by 2 (for the multi-scale discriminator)."""
    return (F.avg_pool2d if x.ndim == 4 else F.avg_pool3d)(x, 3, stride=2, padding=1, count_include_pad=False)


def global_pool(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).mean(-1)
