"""Loss terms that more than one model family plays with: the least-squares GAN, a BCE against site labels,
L_hist (ours) on Nyul landmarks, L_field (ours) on the site field's maps and L_tex (ours) on local texture statistics. Each family's objective (``harmlib.<family>.losses``) uses them."""

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


def _box(x: torch.Tensor) -> torch.Tensor:
    """The 3^d box mean (same size): the low-pass of the texture statistics."""
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    return pool(x, 3, stride=1, padding=1, count_include_pad=False)


def _erode(mask: torch.Tensor) -> torch.Tensor:
    pool = F.max_pool2d if mask.ndim == 4 else F.max_pool3d
    return 1 - pool(1 - mask, 5, stride=1, padding=2)


def texture_stats(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, 2): each image's robust size of its finest detail (x minus its 3^d box mean: noise, ringing) and of the
    detail one scale up (the box mean minus its own box mean: resolution), inside its brain eroded by two voxels.
    Robust: the mean of the lower half of |band| there, so that tissue edges (the upper half) do not set it; its
    gradient reaches every voxel of that half (a median would move one)."""
    low = _box(x.float())
    bands = (x.float() - low, low - _box(low))
    inner = _erode(mask.float()) > 0.5
    out = []
    for i in range(x.shape[0]):
        row = []
        for band in bands:
            v = band[i][inner[i]].abs()
            if v.numel() < 2:  # a crop with almost no brain inside: the whole crop stands in for it
                v = band[i].abs().flatten()
            row.append(torch.topk(v, v.numel() // 2, largest=False).values.mean())
        out.append(torch.stack(row))
    return torch.stack(out)


def l_tex(x_ul: torch.Tensor, mask_ul: torch.Tensor, x_l: torch.Tensor, mask_l: torch.Tensor) -> torch.Tensor:
    """Feature matching on local statistics: mean |log| ratio of x_{u->l}'s texture statistics (noise level and
    fine detail, :func:`texture_stats`) to those of the real x_l of the same site in the batch (detached): the
    local appearance a curve and a smooth field do not set."""
    fake = texture_stats(x_ul, mask_ul).clamp_min(1e-6).log()
    real = texture_stats(x_l.detach(), mask_l).clamp_min(1e-6).log()
    return (fake - real).abs().mean()
