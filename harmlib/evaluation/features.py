"""FID and KID in a learned feature space (paper 2, E5).

No pretrained Inception network can be downloaded here, and Inception features of natural images are a
questionable yardstick for MRI anyway; the thesis itself says "in a learned feature space". We therefore
train the feature extractor here: a small CNN *scanner classifier* (2D slices or 3D volumes) trained to
recognise the scanner-site of real images, whose penultimate layer (global-average-pooled, then a linear
layer to ``feature_dim``) is the feature space. Features that separate scanners are the ones that should
match between translated images and real images of the target domain. FID and KID are then computed by
torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with this module as
``feature=`` (supported for custom ``nn.Module``s with a ``num_features`` attribute; no torch-fidelity,
no download). Values are therefore not on the Inception scale of the thesis' numbers (FID 0.761 vs
11.71; KID 0.000578 vs 0.0134): compare methods with each other, not with the paper's absolute values.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from tqdm.auto import tqdm

from harmlib.config import EvaluationConfig


class ScannerClassifier(nn.Module):
    """Conv blocks (conv 3, instance norm, ReLU, stride-2 conv) -> global mean -> ``feature_dim`` -> K logits."""

    def __init__(
        self, n_classes: int, spatial_dims: int = 2, width: int = 16, feature_dim: int = 64, n_blocks: int = 4
    ):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(
                f"ScannerClassifier: spatial_dims={spatial_dims} is invalid; use 2 (slices) or 3 (volumes)"
            )
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        norm = nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d
        layers: list[nn.Module] = []
        ch_in = 1
        for k in range(n_blocks):
            ch = width * 2 ** min(k, 3)
            layers += [
                conv(ch_in, ch, 3, padding=1),
                norm(ch, affine=True),
                nn.ReLU(inplace=True),
                conv(ch, ch, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),
            ]
            ch_in = ch
        self.body = nn.Sequential(*layers)
        self.embed = nn.Linear(ch_in, feature_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, n_classes))
        self.spatial_dims = spatial_dims

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (N, feature_dim): the space FID and KID are measured in."""
        return self.embed(self.body(x).flatten(2).mean(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FeatureExtractor(nn.Module):
    """A frozen trained `ScannerClassifier` seen through its features; torchmetrics reads ``num_features``."""

    def __init__(self, classifier: ScannerClassifier):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = int(classifier.embed.out_features)

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)  # always in eval mode, as torchmetrics' Inception

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


def train_feature_extractor(
    images: torch.Tensor, labels: np.ndarray, cfg: EvaluationConfig, seed: int = 0, batch_size: int = 16
) -> tuple[FeatureExtractor, pd.DataFrame]:
    """Train a scanner classifier on real ``images`` (N, 1, *spatial) with integer domain ``labels``.

    Returns the feature extractor and a log (epoch, loss, train accuracy): a near-chance accuracy means
    the features do not see scanner appearance and FID/KID would be uninformative.
    """
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if images.ndim not in (4, 5) or images.shape[1] != 1 or len(images) != len(labels_t):
        raise ValueError(
            f"train_feature_extractor: images {tuple(images.shape)} and {len(labels_t)} labels; pass (N, 1, H, W[, D]) images with one label each"
        )
    n_classes = int(labels_t.max()) + 1
    if n_classes < 2:
        raise ValueError(
            "train_feature_extractor: all images have one label; a scanner classifier needs at least two domains"
        )
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ScannerClassifier(n_classes, images.ndim - 2, cfg.feature_width, cfg.feature_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    log = []
    for epoch in tqdm(range(cfg.feature_epochs), desc="feature extractor", leave=False):
        order = torch.randperm(len(images), generator=gen)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(images), batch_size):
            idx = order[start : start + batch_size]
            logits = model(images[idx].float())
            loss = nn.functional.cross_entropy(logits, labels_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == labels_t[idx]).sum())
        log.append({"epoch": epoch + 1, "loss": loss_sum / len(images), "accuracy": correct / len(images)})
    return FeatureExtractor(model), pd.DataFrame(log)


def fid_kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    extractor: nn.Module,
    subset_size: int = 1000,
    subsets: int = 100,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, float]:
    """FID and KID (mean, SD over subsets) between ``real`` and ``fake`` images in ``extractor``'s space.

    ``extractor`` needs a ``num_features`` attribute (e.g. `FeatureExtractor`). KID's subset size is
    capped at the smaller sample; its subsets are drawn from torch's generator seeded with ``seed``.
    KID is the unbiased MMD^2 estimate with the cubic polynomial kernel, so it can be slightly negative
    when both sets come from one distribution.
    """
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(
            f"fid_kid: {len(real)} real and {len(fake)} fake images; FID needs at least 2 of each (covariances)"
        )
    feats = [
        torch.cat([extractor(imgs[i : i + batch_size]) for i in range(0, len(imgs), batch_size)])
        for imgs in (real, fake)
    ]
    ident = _Precomputed(int(extractor.num_features))  # features are extracted once, for both metrics
    fid = FrechetInceptionDistance(feature=ident, reset_real_features=True)
    with warnings.catch_warnings():  # "KID saves all features in a buffer": expected, our features are small
        warnings.filterwarnings("ignore", message=".*Kernel Inception Distance.*")
        kid = KernelInceptionDistance(
            feature=ident, subsets=subsets, subset_size=min(subset_size, len(real), len(fake))
        )
    for f, is_real in zip(feats, (True, False)):
        fid.update(f, real=is_real)
        kid.update(f, real=is_real)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


class _Precomputed(nn.Module):
    """Identity "extractor" for features computed beforehand (torchmetrics reads ``num_features``)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()
