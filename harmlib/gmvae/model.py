"""The Gaussian-mixture VAE of GMM-DRIT's stage 1 (Dilokthanakul et al.; thesis Sec. 4), for 2D slices.

Generative model: y ~ Cat(1/K), z | y ~ p(z|y) = N(mu_y, diag sigma_y^2) with learned component means
and variances, x | z ~ p(x|z) = Bernoulli(decoder(z)) on images mapped to [0, 1].
Inference model: q(y|x) (a categorical, sampled with Gumbel-softmax at temperature tau) and
q(z|x, y) = N(mu(x, y), diag sigma^2(x, y)).

After pretraining, the inference network is GMM-DRIT's attribute encoder E^a:
(z^a, y~) = E^a(x) with z^a the mean of q(z|x, y) at y = q(y|x) and y~ the one-hot argmax of q(y|x)
(:meth:`GMVAE.attribute`). K is the number of training domains (scanners).

What x is (``GMVAESpec.view``): ``slice``, the thesis's, the coronal slice itself; ``field`` (ours, the cpu
profile), the slice's plane of its volume's smooth intensity field, relative to the training cohort's
(``models.blocks.SiteField``, the 2D models' site field on the same grid), resampled to ``size`` and scaled by
``view_scale`` into [-1, 1] (:meth:`GMVAE.view_input`); with ``scale_weight`` the volume's log stored scale (the
Normalizer's high over the cohort's median, which normalizing divides out) is added to the planes. A slice's
intensities barely tell its scanner (a supervised reader of slice histograms: 0.76 on the cpu cohort v1) while its
volume's field separated cohort v1's sites (k-means 1.00); on cohort v2 the field alone does not (k-means 0.37-0.42),
the field with the stored scale does (0.98; `book/cpu_notes.md`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmlib.config import GMVAEArch
from harmlib.models.blocks import ConvBlock, upsample

KIND = "gmvae"  # the model file's kind: GMM-DRIT's stage 1


@dataclass(frozen=True)
class GMVAESpec(GMVAEArch):
    """Architecture of one GM-VAE: the ``gmvae`` section's :class:`~harmlib.config.GMVAEArch` fields plus the
    padded slice ``size`` (H, W, divisible by 2**n_down) and K components."""

    size: tuple[int, int] = (96, 96)
    n_components: int = 5
    view: str = "slice"  # what x is: the slice (the thesis) or its plane of its volume's site field (``field``)
    view_scale: float = 1.0  # field view: the log field's multiplier into [-1, 1]
    scale_weight: float = 0.0  # field view: the weight of the log stored scale over ``scale_ref`` added to the planes
    scale_ref: float = 1.0  # field view: the training cohort's median stored scale (the Normalizer's high)

    @property
    def bottleneck(self) -> tuple[int, int, int]:
        """(channels, h, w) of the convolutional feature map before the fully connected layers."""
        f = 2**self.n_down
        if self.size[0] % f or self.size[1] % f:
            raise ValueError(
                f"GM-VAE: slice size {self.size} is not divisible by 2**n_down={f}; pad slices to a multiple of {f}"
            )
        return self.width * 2 ** (self.n_down - 1), self.size[0] // f, self.size[1] // f


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool = False) -> torch.Tensor:
    """A differentiable sample of q(y|x): softmax((logits + Gumbel noise) / tau)."""
    return F.gumbel_softmax(logits.float(), tau=tau, hard=hard)


class Encoder(nn.Module):
    """The inference network: features h(x), then q(y|x) and q(z|x, y)."""

    def __init__(self, spec: GMVAESpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in = 1
        for i in range(spec.n_down):
            ch = spec.width * 2**i
            layers.append(ConvBlock(2, ch_in, ch, 4, stride=2, norm="none", act="lrelu"))
            ch_in = ch
        self.conv = nn.Sequential(*layers)
        c, h, w = spec.bottleneck
        self.fc = nn.Sequential(nn.Linear(c * h * w, spec.hidden), nn.LeakyReLU(0.2, inplace=True))
        self.q_y = nn.Linear(spec.hidden, spec.n_components)  # logits of q(y|x)
        self.q_z = nn.Sequential(
            nn.Linear(spec.hidden + spec.n_components, spec.hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(spec.hidden, 2 * spec.gaussian_size),
        )  # mean and variance of q(z|x, y)
        self.gaussian_size = spec.gaussian_size
        # Start q(z|x, y) narrow (variance ~0.02): z then carries the slice from the first step, and the
        # decoder learns to use it before L_gauss widens the posterior (a wide start collapses it at once).
        nn.init.constant_(self.q_z[-1].bias[spec.gaussian_size :], -4.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))

    def q_z_given(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance) of q(z|x, y); softplus keeps the variance positive."""
        out = self.q_z(torch.cat([h, y.to(h.dtype)], 1))
        return out[:, : self.gaussian_size], F.softplus(out[:, self.gaussian_size :]) + 1e-6


class Decoder(nn.Module):
    """p(x|z): a fully connected layer to the bottleneck map, then (upsample, conv) blocks; logits out."""

    def __init__(self, spec: GMVAESpec) -> None:
        super().__init__()
        c, h, w = spec.bottleneck
        self.shape = (c, h, w)
        self.fc = nn.Sequential(
            nn.Linear(spec.gaussian_size, spec.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(spec.hidden, c * h * w),
            nn.ReLU(inplace=True),
        )
        ups: list[nn.Module] = []
        for i in reversed(range(spec.n_down)):
            cout = spec.width * 2 ** max(i - 1, 0)
            ups.append(ConvBlock(2, c, cout, 3, norm="none", act="relu"))
            c = cout
        self.ups = nn.ModuleList(ups)
        self.out = nn.Conv2d(c, 1, 3, padding=1)
        # A per-pixel output bias, as the last linear layer of the reference's MLP decoder has: the mean
        # slice is learned at once and z only has to explain deviations from it (without it, a conv
        # decoder learns the mean slowly and the posterior collapses before z carries anything).
        self.bias = nn.Parameter(torch.zeros(1, 1, *spec.size))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, *self.shape)
        for up in self.ups:
            h = up(upsample(h))
        return self.out(h) + self.bias


class GMVAE(nn.Module):
    """q(y|x), q(z|x, y), p(z|y) (learned means and variances per component) and p(x|z)."""

    def __init__(self, spec: GMVAESpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = Encoder(spec)
        self.decoder = Decoder(spec)
        self.p_z_mean = nn.Linear(spec.n_components, spec.gaussian_size)  # y -> mu_y
        self.p_z_var = nn.Linear(spec.n_components, spec.gaussian_size)  # y -> sigma_y^2 (softplus)

    @torch.no_grad()
    def init_output(self, mean_slice: torch.Tensor) -> None:
        """Start the decoder at the mean training slice (``mean_slice`` in [-1, 1], shape (H, W))."""
        p = ((mean_slice.float() + 1) / 2).clamp(1e-3, 1 - 1e-3)
        self.decoder.bias.copy_(torch.logit(p).reshape(self.decoder.bias.shape))

    @torch.no_grad()
    def set_prior_means(self, centers: torch.Tensor) -> None:
        """Set the means of p(z|y=k) to ``centers[k]`` (shape (K, gaussian_size)), e.g. k-means centres of codes."""
        k, d = self.spec.n_components, self.spec.gaussian_size
        if tuple(centers.shape) != (k, d):
            raise ValueError(
                f"GM-VAE: prior means of shape {tuple(centers.shape)}; need (K, gaussian_size) = ({k}, {d})"
            )
        self.p_z_mean.weight.copy_(centers.T.to(self.p_z_mean.weight))  # mu_y = W y + b with y one-hot: column k
        self.p_z_mean.bias.zero_()

    def prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance) of p(z|y) for a (soft) one-hot y."""
        return self.p_z_mean(y), F.softplus(self.p_z_var(y)) + 1e-6

    def forward(self, x: torch.Tensor, tau: float) -> dict[str, torch.Tensor]:
        """One pass for L_GMVAE; ``x`` in [-1, 1] (the datasets' range), the decoder sees and returns [0, 1] logits."""
        h = self.encoder.features(x)
        logits = self.encoder.q_y(h).float()
        y = gumbel_softmax(logits, tau)
        mu, var = self.encoder.q_z_given(h, y)
        z = mu + var.sqrt() * torch.randn_like(mu)
        mu_p, var_p = self.prior(y)
        return {
            "logits": logits,
            "prob": logits.softmax(1),
            "y": y,
            "mu": mu,
            "var": var,
            "z": z,
            "mu_prior": mu_p,
            "var_prior": var_p,
            "x_logits": self.decoder(z),
        }

    def view_input(
        self, x: torch.Tensor, planes: torch.Tensor | None = None, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The GM-VAE's x for slices ``x`` (N, 1, H, W): the slices themselves (``slice`` view), or (``field``
        view) :meth:`field_input` of their planes ``planes`` (N, gx, gz) of their volumes' own log fields and
        their volumes' stored ``scale`` (N,)."""
        if self.spec.view == "slice":
            return x
        if planes is None:
            raise ValueError("this GM-VAE reads the slices' site-field planes (view 'field'); pass planes")
        return self.field_input(planes, scale)

    def field_input(self, planes: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Field view: planes (N, gx, gz) plus ``scale_weight`` * log(scale / scale_ref) (each volume's stored
        scale, (N,), which normalizing divides out), resampled to ``size`` and scaled by ``view_scale``, clipped to
        [-1, 1] (the decoder's range)."""
        if self.spec.scale_weight:
            if scale is None:
                raise ValueError(
                    "this GM-VAE reads each volume's stored scale beside its field (scale_weight); pass scale"
                )
            log = (scale.to(planes).clamp_min(1e-12) / self.spec.scale_ref).log()
            planes = planes + self.spec.scale_weight * log[:, None, None]
        p = F.interpolate(planes[:, None].float(), size=self.spec.size, mode="bilinear", align_corners=True)
        return (p * self.spec.view_scale).clamp(-1, 1)

    def attribute(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E^a(x) = (z^a, y~): the mean of q(z|x, y) at y = q(y|x), and the one-hot argmax of q(y|x)."""
        h = self.encoder.features(x)
        logits = self.encoder.q_y(h)
        mu, _ = self.encoder.q_z_given(h, logits.float().softmax(1))
        return mu, F.one_hot(logits.argmax(1), self.spec.n_components).to(mu.dtype)

    def component(self, k: int, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples z^a ~ p(z|y=k): the target's mixture component."""
        y = F.one_hot(torch.tensor([k]), self.spec.n_components).float().to(self.p_z_mean.weight.device)
        mu, var = self.prior(y)
        eps = torch.randn(n, mu.shape[1], generator=generator).to(mu.device)
        return mu + var.sqrt() * eps


def temperature(step: int, iterations: int, tau0: float, tau_min: float) -> float:
    """Gumbel-softmax temperature annealed geometrically from ``tau0`` at step 0 to ``tau_min`` at the last step."""
    frac = min(1.0, step / max(iterations - 1, 1))
    return tau0 * (tau_min / tau0) ** frac
