"""Losses as plain functions; each objective returns (total, {name: term}) so logging is free.

Paper 1's terms (Sec. 2), on the models' images in [-1, 1]; SSIM terms see them shifted to [0, 1]:

    L_rec^x    = lam * L_SSIM(x_u, x_{u->u}) + (1 - lam) * |x_u - x_{u->u}|_1
    L_cc^x     = lam * L_SSIM(x_u, x_u^cc)  + (1 - lam) * |x_u - x_u^cc|_1
    L_struct^x = 1 - s(x_{u->u}, x_{u->l})          L_lum^x = 1 - l(x_l, x_{u->l})
    L_cla^s    E_s predicts x_l's label              L_lat    E_b, E_s recover c_u and n_r from x_{u->l}
    L_hist     (ours; 0 in the paper profile) 1-D Wasserstein of the whole x_{u->l}'s brain intensities and site l's
    L_field    (ours; 0 in the paper profile) the whole x_{u->l}'s smooth log intensity field vs site l's mean field
    L_tex      (ours; 0 in both profiles, a probe) x_{u->l}'s local texture statistics (noise level, fine detail)
               vs the real x_l's: feature matching on what a curve and a field leave
    L_adv^x    LSGAN of D_a^x on x_{u->l}            L_pre^{x,G}  D_p^x reads label l from x_{u->l}
    L_pre^{x,D} D_p^x reads the label of real x_l    L_adv^b, L_pre^b  the content discriminator's games
    KL         the noise part of E_s(x_u) towards N(0, 1)

Two readings we had to choose (the paper gives no more detail):
* The content game D_a^b tells labeled from unlabeled structure codes (c_l real, c_u fake), so that
  the structure space is shared by both sets.
* The objective writes ``- lambda_pre^b L_pre^b`` for the encoders: maximizing a cross-entropy is
  unbounded, so the encoders instead push D_p^b's site predictions to 1/2 (the maximum-entropy
  point), the usual domain-confusion form of the same goal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmlib.config import AGUITWeights, SSIMConfig
from harmlib.losses import l_field, l_hist, l_tex, label_bce, lsgan
from harmlib.models.levers import Where
from harmlib.ssim import ssim_components

DATA_RANGE = 1.0  # SSIM terms are computed on the images shifted from [-1, 1] to [0, 1] (see _unit)


@dataclass(frozen=True)
class AGUITForward:
    """One iteration's images and codes by the paper's names (``harmlib.aguit.task.forward``), read by both the
    D and the G objective.

    x_l, label: the labeled image and its site label l in {-1, 1}^K; x_u the unlabeled image; c_u = E_b(x_u) and
    c_l = E_b(x_l) (detached: only D^b reads it); n_u and logit_l the noise part of E_s(x_u) and E_s's site logits
    of x_l; x_uu = G(c_u, s_u) the reconstruction; mask_u, mask_l the brains (None: unmasked losses). The
    translation (None during the reconstruction warm-up): n_r, x_ul = G(c_u, s_r), its codes c_ul, n_ul and the
    cycle x_cc = G(c_ul, s_u). With the cpu levers (:mod:`harmlib.models.levers`): ``landing_ul``, where the levers
    put x_{u->l} (its landmarks and field), and ``site_l``, site l's mean landmarks and field: the two sides of
    L_hist and L_field.
    """

    x_l: torch.Tensor
    label: torch.Tensor
    x_u: torch.Tensor
    c_u: torch.Tensor
    n_u: torch.Tensor
    logit_l: torch.Tensor
    x_uu: torch.Tensor
    c_l: torch.Tensor | None = None
    mask_u: torch.Tensor | None = None
    mask_l: torch.Tensor | None = None
    n_r: torch.Tensor | None = None
    x_ul: torch.Tensor | None = None
    c_ul: torch.Tensor | None = None
    n_ul: torch.Tensor | None = None
    x_cc: torch.Tensor | None = None
    landing_ul: Where | None = None
    site_l: Where | None = None


def _unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]. SSIM's luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) assumes
    non-negative intensities: on [-1, 1] the local means of grey matter sit near 0 and change sign, where
    l swings between -1 and 1 for a small intensity change. Contrast and structure are shift-invariant."""
    return (x.float() + 1.0) * 0.5


def _window(ssim_cfg: SSIMConfig, shape: torch.Size) -> dict:
    """The configured window, shrunk (with its sigma) when an axis is narrower, as at 4 mm."""
    win = min(ssim_cfg.win_size, (min(shape[2:]) - 1) // 2 * 2 + 1)
    return {"win_size": win, "sigma": ssim_cfg.sigma * win / ssim_cfg.win_size, "k1": ssim_cfg.k1, "k2": ssim_cfg.k2}


def _mean(m: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of a map; with a mask (N, 1, *spatial) the mean over the brain. SSIM maps are "valid"
    (each value is its window's centre), so the mask is cropped by the window's radius to match."""
    if mask is None:
        return m.mean()
    r = (mask.shape[-1] - m.shape[-1]) // 2
    if r:
        mask = mask[(..., *[slice(r, -r)] * (mask.ndim - 2))]
    return (m * mask).sum() / mask.sum().clamp_min(1.0) / m.shape[1]


def brain_mask(x: torch.Tensor, threshold: float = -0.8) -> torch.Tensor:
    """Where a normalized image (background -1) holds brain, dilated by one voxel: the region the
    losses are averaged over with ``harmonizer.mask_losses`` (the synthetic background is Rician noise)."""
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return pool((x.detach().float() > threshold).float(), 3, stride=1, padding=1)


def mixed(x: torch.Tensor, y: torch.Tensor, ssim_cfg: SSIMConfig, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``lam * L_SSIM + (1 - lam) * L1``: the form of L_rec^x and L_cc^x (over ``mask`` if given)."""
    w = _window(ssim_cfg, x.shape)
    l1 = _mean((x.float() - y.float()).abs(), mask)
    if ssim_cfg.lam == 0:
        return l1
    s = ssim_components(_unit(x), _unit(y), DATA_RANGE, **w).combine(ssim_cfg.alpha, ssim_cfg.beta, ssim_cfg.gamma)
    return ssim_cfg.lam * (1 - _mean(s, mask)) + (1 - ssim_cfg.lam) * l1


def l_struct(
    x_uu: torch.Tensor, x_ul: torch.Tensor, ssim_cfg: SSIMConfig, mask: torch.Tensor | None = None
) -> torch.Tensor:
    w = _window(ssim_cfg, x_uu.shape)
    return 1 - _mean(ssim_components(_unit(x_uu), _unit(x_ul), DATA_RANGE, **w).structure, mask)


def l_lum(
    x_l: torch.Tensor, x_ul: torch.Tensor, ssim_cfg: SSIMConfig, mask: torch.Tensor | None = None
) -> torch.Tensor:
    w = _window(ssim_cfg, x_l.shape)
    return 1 - _mean(ssim_components(_unit(x_l), _unit(x_ul), DATA_RANGE, **w).luminance, mask)


def kl_noise(n: torch.Tensor) -> torch.Tensor:
    """KL of a deterministic code towards N(0, I), up to a constant: mean(n^2) / 2."""
    return 0.5 * (n.float() ** 2).mean()


def aguit_generator_loss(
    f: AGUITForward, nets: dict[str, nn.Module], w: AGUITWeights, ssim_cfg: SSIMConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_{G, E_b, E_s} on the forward pass ``f``; D^x judges x_{u->l} and D^b the structure code c_u."""
    d_x_fake = nets["D_x"](f.x_ul)
    adv_b_logit, pre_b_logits = nets["D_b"](f.c_u)  # the encoders want c_u judged "labeled" and site-less
    m_u, m_l = f.mask_u, f.mask_l
    m_lum = None if m_u is None else m_u * m_l  # luminance compares x_l with x_{u->l}: both brains
    terms = {
        "rec": mixed(f.x_u, f.x_uu, ssim_cfg, m_u),
        "cc": mixed(f.x_u, f.x_cc, ssim_cfg, m_u),
        "struct": l_struct(f.x_uu, f.x_ul, ssim_cfg, m_u),
        "lum": l_lum(f.x_l, f.x_ul, ssim_cfg, m_lum),
        "cla_s": label_bce(f.logit_l, f.label),
        "adv_b": lsgan(adv_b_logit, True),
        "pre_b": F.binary_cross_entropy_with_logits(pre_b_logits.float(), torch.full_like(pre_b_logits.float(), 0.5)),
        "adv_x": sum(lsgan(adv, True) for adv, _ in d_x_fake) / len(d_x_fake),
        "pre_x_g": sum(label_bce(lab, f.label) for _, lab in d_x_fake) / len(d_x_fake),
        "lat": (f.c_ul.float() - f.c_u.detach().float()).abs().mean() + (f.n_ul.float() - f.n_r).abs().mean(),
        "kl": kl_noise(f.n_u),
    }
    if w.hist:
        terms["hist"] = l_hist(f.landing_ul.landmarks, f.site_l.landmarks)
    if w.field:
        terms["field"] = l_field(f.landing_ul.field, f.site_l.field, nets["levers"].field.valid)
    if w.tex:
        terms["tex"] = l_tex(
            f.x_ul, brain_mask(f.x_u) if m_u is None else m_u, f.x_l, brain_mask(f.x_l) if m_l is None else m_l
        )
    total = sum(getattr(w, k) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


def aguit_reconstruction_loss(
    f: AGUITForward, w: AGUITWeights, ssim_cfg: SSIMConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The warm-up objective (``train.warmup`` steps, as HACA3's first epoch): L_rec^x and L_cla^s only."""
    terms = {"rec": mixed(f.x_u, f.x_uu, ssim_cfg, f.mask_u), "cla_s": label_bce(f.logit_l, f.label)}
    total = w.rec * terms["rec"] + w.cla_s * terms["cla_s"]
    return total, {k: float(v.detach()) for k, v in terms.items()}


def aguit_discriminator_loss(
    f: AGUITForward, nets: dict[str, nn.Module], w: AGUITWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_D on the detached translations and codes of ``f``: D^x tells real x_l from x_{u->l} and reads x_l's
    label; D^b plays the content games (c_l real, c_u fake)."""
    d_x_real, d_x_fake = nets["D_x"](f.x_l), nets["D_x"](f.x_ul.detach())
    d_b_real, d_b_fake = nets["D_b"](f.c_l.detach()), nets["D_b"](f.c_u.detach())
    terms = {
        "d_adv_x": sum(lsgan(r[0], True) + lsgan(g[0], False) for r, g in zip(d_x_real, d_x_fake)) / len(d_x_real),
        "d_pre_x": sum(label_bce(r[1], f.label) for r in d_x_real) / len(d_x_real),
        "d_adv_b": lsgan(d_b_real[0], True) + lsgan(d_b_fake[0], False),
        "d_pre_b": label_bce(d_b_real[1], f.label),
    }
    weights = {"d_adv_x": w.adv_x, "d_pre_x": w.pre_x_d, "d_adv_b": w.adv_b, "d_pre_b": w.pre_b}
    total = sum(weights[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}
