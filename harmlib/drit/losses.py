"""The objectives of DRIT++ (MDMM) and GMM-DRIT (thesis Sec. 4, stage 2), on images in [-1, 1].

For both branches i (1: encoded translations x_{a->b}, x_{b->a}; 2: random-attribute translations):

    L_{D_s^i}  = L^adv (LSGAN: real x_a, x_b vs the translations)  + lambda_cls^D L^cls (BCE of real images' codes c)
    L_{G_i}    = L^adv (translations judged real)                   + lambda_cls^G L^cls (BCE towards the intended code)
    L_{D_c}    = BCE of D_c(z^c) against the image's code c;  E^c's side pushes D_c's outputs to 1/K (no scanner in z^c)
    L_rec^self = |x_{a->a} - x_a|_1 + |x_{b->b} - x_b|_1       L_rec^cc = |x_{a->b->a} - x_a|_1 + |x_{b->a->b} - x_b|_1

plus DRIT++'s small L2 penalty on z^c (weight 0.01) and, for DRIT++ only (its E^a is trained),
KL(q(z^a|x) || N(0, I)) and the latent regression |E^a(G(z^c, z_rand, c)) - z_rand|_1. With G's landmark
curve (ours, off in the paper profile), L_hist (``harmlib.losses.l_hist``) pulls the landmarks of every
translation with a scanner code c onto the mean landmarks of the training volumes with that code; with its
site field, L_field (``harmlib.losses.l_field``) likewise pulls its field onto their mean field.
GMM-DRIT's branch 2 is scanner-free: its intended code is c_sf = 0, so G learns that D_s^2 should
read no scanner at all from x^rand. The adversarial game is least squares (LSGAN) rather than
DRIT++'s cross-entropy: it is more stable on the short CPU budgets of this companion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmlib.config import DRITWeights
from harmlib.losses import l_field, l_hist, label_bce, lsgan


@dataclass(frozen=True)
class AttributePosterior:
    """DRIT++ only (its E^a is trained): q(z^a|x) of a and b, and E^a's mean on the random-attribute translations."""

    mu_a: torch.Tensor
    logvar_a: torch.Tensor
    mu_b: torch.Tensor
    logvar_b: torch.Tensor
    mu_rand_a: torch.Tensor
    mu_rand_b: torch.Tensor


@dataclass(frozen=True)
class DRITForward:
    """One step's forward pass (``harmlib.drit.task.forward``), read by both the D and the G objective.

    x_a, x_b: the pair; c_a, c_b their codes; z_c_a, z_c_b their content codes; x_ab = G(z^c_a, z^a_b, c_b)
    and x_ba the translations; x_aa, x_bb the self-reconstructions; x_a_rand, x_b_rand the random-attribute
    translations with intended codes c_rand_a, c_rand_b (c_sf = 0 for GMM-DRIT) and z_rand; x_aba, x_bab
    the cycle; ``posterior`` DRIT++'s attribute terms (None for GMM-DRIT, whose E^a is frozen); ``hist_pred``
    and ``hist_target`` L_hist's two sides (None without the landmark curve); ``field_pred`` and ``field_target``
    L_field's (None without the site field).
    """

    x_a: torch.Tensor
    x_b: torch.Tensor
    c_a: torch.Tensor
    c_b: torch.Tensor
    z_c_a: torch.Tensor
    z_c_b: torch.Tensor
    x_ab: torch.Tensor
    x_ba: torch.Tensor
    x_aa: torch.Tensor
    x_bb: torch.Tensor
    x_a_rand: torch.Tensor
    x_b_rand: torch.Tensor
    c_rand_a: torch.Tensor
    c_rand_b: torch.Tensor
    x_aba: torch.Tensor
    x_bab: torch.Tensor
    z_rand: torch.Tensor
    posterior: AttributePosterior | None = None
    hist_pred: torch.Tensor | None = None  # with G's landmark curve: the coded translations' landmarks T(z^a, c)
    hist_target: torch.Tensor | None = None  # and their codes' mean landmarks over the training volumes
    field_pred: torch.Tensor | None = None  # with G's site field: the coded translations' fields Phi(z^a, c)
    field_target: torch.Tensor | None = None  # and their codes' mean fields over the training volumes


def code_bce(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """BCE of K scanner logits against a code c in {0, 1}^K (a one-hot scanner, or c_sf = 0)."""
    return label_bce(logits, 2 * c.float() - 1)


def content_confusion(logits: torch.Tensor) -> torch.Tensor:
    """E^c's side of the content game: D_c's per-scanner probabilities pushed to the uniform 1/K."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), 1.0 / logits.shape[1]))


def kl_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over dimensions, averaged over the batch."""
    return 0.5 * (mu.float() ** 2 + logvar.float().exp() - 1 - logvar.float()).sum(1).mean()


def _d_branch(
    d: nn.Module, real: list[torch.Tensor], fake: list[torch.Tensor], codes: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    adv, cls = torch.zeros(()), torch.zeros(())
    for x, y, c in zip(real, fake, codes):
        r_adv, r_cls = d(x)
        f_adv, _ = d(y.detach())
        adv = adv + lsgan(r_adv, True) + lsgan(f_adv, False)
        cls = cls + code_bce(r_cls, c)
    return adv, cls


def drit_discriminator_loss(
    f: DRITForward, nets: dict[str, nn.Module], w: DRITWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_{D_s^1} + L_{D_s^2} + L_{D_c} on detached translations and content codes."""
    real, codes = [f.x_a, f.x_b], [f.c_a, f.c_b]
    adv1, cls1 = _d_branch(nets["D_s1"], real, [f.x_ab, f.x_ba], codes)
    adv2, cls2 = _d_branch(nets["D_s2"], real, [f.x_a_rand, f.x_b_rand], codes)
    d_c = code_bce(nets["D_c"](f.z_c_a.detach()), f.c_a) + code_bce(nets["D_c"](f.z_c_b.detach()), f.c_b)
    terms = {"d_adv1": adv1, "d_cls1": cls1, "d_adv2": adv2, "d_cls2": cls2, "d_content": d_c}
    total = w.adv * (adv1 + adv2) + w.cls_d * (cls1 + cls2 + d_c)
    return total, {k: float(v.detach()) for k, v in terms.items()}


# the per-branch terms (logged apart) and the DRITWeights field that weighs them; every other term is named as its field
BRANCH_WEIGHT = {"adv1": "adv", "adv2": "adv", "cls1": "cls_g", "cls2": "cls_g"}


def _g_branch(
    d: nn.Module, fake: list[torch.Tensor], intended: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    adv, cls = torch.zeros(()), torch.zeros(())
    for y, c in zip(fake, intended):
        f_adv, f_cls = d(y)
        adv = adv + lsgan(f_adv, True)
        cls = cls + code_bce(f_cls, c)
    return adv, cls


def drit_generator_loss(
    f: DRITForward, nets: dict[str, nn.Module], w: DRITWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_{E^c, E^a, G}: both generator branches, reconstructions, the content game and the regularizers."""
    adv1, cls1 = _g_branch(nets["D_s1"], [f.x_ab, f.x_ba], [f.c_b, f.c_a])
    adv2, cls2 = _g_branch(nets["D_s2"], [f.x_a_rand, f.x_b_rand], [f.c_rand_a, f.c_rand_b])
    l1 = lambda a, b: (a.float() - b.float()).abs().mean()  # noqa: E731
    terms = {
        "adv1": adv1,
        "cls1": cls1,
        "adv2": adv2,
        "cls2": cls2,
        "self_rec": l1(f.x_aa, f.x_a) + l1(f.x_bb, f.x_b),
        "cc": l1(f.x_aba, f.x_a) + l1(f.x_bab, f.x_b),
        "content_adv": content_confusion(nets["D_c"](f.z_c_a)) + content_confusion(nets["D_c"](f.z_c_b)),
        "content_reg": (f.z_c_a.float() ** 2).mean() + (f.z_c_b.float() ** 2).mean(),
    }
    if (q := f.posterior) is not None:  # DRIT++: its attribute encoder is trained, with a prior and latent regression
        terms["kl"] = kl_gaussian(q.mu_a, q.logvar_a) + kl_gaussian(q.mu_b, q.logvar_b)
        terms["lat"] = l1(q.mu_rand_a, f.z_rand) + l1(q.mu_rand_b, f.z_rand)
    if w.hist and f.hist_pred is not None and f.hist_target is not None and len(f.hist_pred):
        terms["hist"] = l_hist(f.hist_pred, f.hist_target)
    if w.field and f.field_pred is not None and f.field_target is not None and len(f.field_pred):
        terms["field"] = l_field(f.field_pred, f.field_target, nets["levers"].field.valid)
    total = sum(getattr(w, BRANCH_WEIGHT.get(k, k)) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}
