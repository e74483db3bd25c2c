"""L_GMVAE = lambda_rec L_rec + lambda_gauss L_gauss + lambda_cat L_cat (thesis Sec. 4, stage 1).

* L_rec: binary cross-entropy of the decoder's output (a sigmoid) against the slice mapped to [0, 1]
  by (x + 1) / 2, summed over pixels, averaged over the batch.
* L_gauss: one-sample estimate of KL(q(z|x, y) || p(z|y)): log N(z; mu, sigma^2) - log N(z; mu_y, sigma_y^2)
  at the sampled z, summed over the Gaussian dimensions.
* L_cat: KL(q(y|x) || Cat(1/K)) = sum_k q_k log q_k - log(1/K). The PyTorch reference (jariasf/GMVAE)
  hard-codes log(1/10); here K is the number of components, so the term is 0 exactly at the uniform q.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harmlib.config import GMVAEWeights


def log_normal(z: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag var), summed over the last axis."""
    return -0.5 * (math.log(2 * math.pi) + var.log() + (z - mean) ** 2 / var).sum(-1)


def reconstruction_bce(x_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L_rec on images ``x`` in [-1, 1]: BCE(sigmoid(logits), (x + 1) / 2), summed per image."""
    target = ((x.float() + 1) / 2).clamp(0, 1)
    return F.binary_cross_entropy_with_logits(x_logits.float(), target, reduction="none").flatten(1).sum(1).mean()


def gaussian_kl(z: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, mu_prior: torch.Tensor, var_prior: torch.Tensor) -> torch.Tensor:
    """L_gauss: log q(z|x, y) - log p(z|y) at the sample z, averaged over the batch."""
    return (log_normal(z.float(), mu.float(), var.float()) - log_normal(z.float(), mu_prior.float(), var_prior.float())).mean()


def categorical_kl(logits: torch.Tensor) -> torch.Tensor:
    """L_cat = KL(q(y|x) || uniform over K) = E_x[sum_k q_k log q_k] - log(1/K)."""
    k = logits.shape[1]
    log_q = logits.float().log_softmax(1)
    return (log_q.exp() * log_q).sum(1).mean() - math.log(1.0 / k)


def gmvae_loss(f: dict[str, torch.Tensor], x: torch.Tensor, w: GMVAEWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """L_GMVAE on one forward pass ``f`` of :class:`harmlib.models.gmvae.GMVAE`."""
    terms = {
        "rec": reconstruction_bce(f["x_logits"], x),
        "gauss": gaussian_kl(f["z"], f["mu"], f["var"], f["mu_prior"], f["var_prior"]),
        "cat": categorical_kl(f["logits"]),
    }
    total = w.rec * terms["rec"] + w.gauss * terms["gauss"] + w.cat * terms["cat"]
    return total, {k: float(v.detach()) for k, v in terms.items()}
