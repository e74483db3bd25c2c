"""Loss terms that more than one model family plays with: the least-squares GAN, a BCE against site labels,
L_hist (ours) on Nyul landmarks and L_field (ours) on the site field's maps. Each family's objective (``harmlib.<family>.losses``) uses them."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_bce(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of per-site logits against a label vector in {-1, 1}^K."""
    return F.binary_cross_entropy_with_logits(logits.float(), (label.float() + 1) / 2)


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN: (D - 1)^2 for real targets, D^2 for fake ones."""
    return ((pred.float() - (1.0 if real else 0.0)) ** 2).mean()


def l_field(field_ul: torch.Tensor, field_l: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean |difference| of the log low-pass fields of the whole x_{u->l} (set by the site field) and of the
    target site (the mean over its labeled training scans), over the coarse grid's points inside the brain."""
    w = valid.float()
    return ((field_ul.float() - field_l.float()).abs() * w).sum() / (w.sum() * field_ul.shape[0]).clamp_min(1)


def l_hist(landmarks_ul: torch.Tensor, landmarks_l: torch.Tensor) -> torch.Tensor:
    """1-D Wasserstein distance between the brain intensities of the whole x_{u->l} and of the target site,
    read at Nyul's landmarks (mean |difference| of the percentiles; the site's are the mean over its labeled
    training scans): the translation's intensity distribution against the site's, whatever the anatomy
    and wherever the training crop lies."""
    return (landmarks_ul.float() - landmarks_l.float()).abs().mean()
