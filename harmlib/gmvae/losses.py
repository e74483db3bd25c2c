"""L_GMVAE = lambda_rec L_rec + lambda_gauss L_gauss + lambda_cat L_cat (thesis Sec. 4, stage 1).

* L_rec: binary cross-entropy of the decoder's output (a sigmoid) against the slice mapped to [0, 1]
  by (x + 1) / 2, summed over pixels, averaged over the batch.
* L_gauss: one-sample estimate of KL(q(z|x, y) || p(z|y)): log N(z; mu, sigma^2) - log N(z; mu_y, sigma_y^2)
  at the sampled z, summed over the Gaussian dimensions.
* L_cat: KL(q(y|x) || Cat(1/K)) = sum_k q_k log q_k - log(1/K). The PyTorch reference (jariasf/GMVAE)
  hard-codes log(1/10); here K is the number of components, so the term is 0 exactly at the uniform q.

Levers beyond the thesis (each off by default, so the paper profile keeps the thesis's objective):

* ``gmvae.likelihood: gaussian`` replaces L_rec by the Gaussian negative log-likelihood of the slice in
  [0, 1] with mean sigmoid(decoder) and a fixed standard deviation ``gmvae.sigma`` (Dilokthanakul's
  ``-continuous``, whose decoder also learns a per-pixel log-variance). A fixed sigma rather than a learned
  one: the slices' background is exactly 0, where a learned variance shrinks towards 0 and drives the
  NLL to -infinity, so the reconstruction term would outweigh any KL weight; a fixed sigma keeps the
  decoder, its output-bias start and the model file unchanged, and is itself the rec-vs-KL lever
  (L_rec = SSE / (2 sigma^2) + const).
* ``gmvae.free_bits``: L_cat = max(KL, free_bits) on the batch-mean KL, as Nat-D/GMVAE's ``-lambda``
  (its categorical-KL gradient is applied only when the batch-mean KL exceeds lambda); below the floor
  the term has no gradient. The log shows the KL itself.
* ``gmvae.kl_warmup``: the weights of L_gauss and L_cat are multiplied by min(1, step / kl_warmup),
  a function of the step only (as the Gumbel temperature), so a resumed run is identical.
* ``gmvae.balance``: + balance * L_bal, L_bal = KL(q(y) || Cat(1/K)) with q(y) the batch mean of q(y|x).
  L_cat's expectation splits into I(x; y) + KL(q(y) || p(y)) (Hoffman & Johnson's ELBO surgery): L_cat
  pulls every q(y|x) towards uniform, which a component left empty does not feel; L_bal weighs only the
  second part, the mixture's use of its components, so an emptied component costs (the aggregate-posterior
  term of clustering objectives such as IMSAT). Not under the warm-up: it is not a term of the ELBO.
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


def gaussian_kl(
    z: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, mu_prior: torch.Tensor, var_prior: torch.Tensor
) -> torch.Tensor:
    """L_gauss: log q(z|x, y) - log p(z|y) at the sample z, averaged over the batch."""
    return (
        log_normal(z.float(), mu.float(), var.float()) - log_normal(z.float(), mu_prior.float(), var_prior.float())
    ).mean()


def categorical_kl(logits: torch.Tensor) -> torch.Tensor:
    """L_cat = KL(q(y|x) || uniform over K) = E_x[sum_k q_k log q_k] - log(1/K)."""
    k = logits.shape[1]
    log_q = logits.float().log_softmax(1)
    return (log_q.exp() * log_q).sum(1).mean() - math.log(1.0 / k)


def balance_kl(logits: torch.Tensor) -> torch.Tensor:
    """L_bal = KL(q(y) || uniform over K), q(y) = the batch mean of q(y|x): 0 when the batch uses every component
    equally, log K when one component takes it all."""
    k = logits.shape[1]
    q = logits.float().softmax(1).mean(0)
    return (q * (q.clamp_min(1e-12).log() - math.log(1.0 / k))).sum()


def reconstruction_gaussian(x_logits: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """L_rec as -log N((x + 1) / 2; sigmoid(logits), sigma^2), summed per image, averaged over the batch."""
    target = ((x.float() + 1) / 2).clamp(0, 1)
    sq = (torch.sigmoid(x_logits.float()) - target) ** 2
    nll = 0.5 * math.log(2 * math.pi * sigma**2) + sq / (2 * sigma**2)
    return nll.flatten(1).sum(1).mean()


def free_bits(kl: torch.Tensor, floor: float) -> torch.Tensor:
    """max(kl, floor): a KL below the floor costs the floor and has no gradient (``floor`` 0: the KL itself)."""
    return kl.clamp(min=floor) if floor > 0 else kl


def kl_warmup_scale(step: int, warmup: int) -> float:
    """The factor on L_gauss and L_cat at 0-based ``step``: 0 at step 0, rising linearly to 1 at ``warmup``."""
    return 1.0 if warmup <= 0 else min(1.0, step / warmup)


def gmvae_loss(
    f: dict[str, torch.Tensor],
    x: torch.Tensor,
    w: GMVAEWeights,
    *,
    likelihood: str = "bce",
    sigma: float = 0.1,
    free_bits_floor: float = 0.0,
    kl_scale: float = 1.0,
    balance: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_GMVAE on one forward pass ``f`` of :class:`harmlib.gmvae.model.GMVAE`.

    The defaults are the thesis's objective; ``likelihood``, ``sigma``, ``free_bits_floor``, ``kl_scale``
    (the warm-up factor of this step) and ``balance`` (the weight of L_bal) are the levers of ``gmvae.*``.
    The returned terms are the raw ones.
    """
    if likelihood == "bce":
        rec = reconstruction_bce(f["x_logits"], x)
    elif likelihood == "gaussian":
        rec = reconstruction_gaussian(f["x_logits"], x, sigma)
    else:
        raise ValueError(f"gmvae_loss: likelihood={likelihood!r}; use bce or gaussian")
    terms = {
        "rec": rec,
        "gauss": gaussian_kl(f["z"], f["mu"], f["var"], f["mu_prior"], f["var_prior"]),
        "cat": categorical_kl(f["logits"]),
        "balance": balance_kl(f["logits"]),
    }
    total = w.rec * terms["rec"] + kl_scale * (
        w.gauss * terms["gauss"] + w.cat * free_bits(terms["cat"], free_bits_floor)
    )
    if balance > 0:
        total = total + balance * terms["balance"]
    return total, {k: float(v.detach()) for k, v in terms.items()}
