"""One typed, frozen config per run, loaded from a profile and overridden field by field.

A profile is a YAML file: one of the shipped ``tiny``, ``cpu`` (the default) and ``paper``
(``harmlib/profiles/*.yaml``), or the path of a copy a user edited. Notebooks take papermill
parameters and pass them here as dotted overrides::

    cfg = load_config("cpu", {"ssim.alpha": 0.5, "seed": 3})

The result is frozen: training reads it, never writes it (``cfg.replace(...)`` makes a new one).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = Path(__file__).parent / "profiles"
PROFILES = ("tiny", "cpu", "paper")


class ConfigError(ValueError):
    """A profile, parameter or value that cannot be used; the message names it and what is allowed."""


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid value {value!r} for parameter '{name}': {allowed}")


def _check_field(section: str, curve: bool, field_mm: float, weight: float) -> None:
    """The site field's switches (harmonizer and drit alike): it acts on the curve's output, L_field needs it."""
    _require(
        field_mm == 0 or (curve and 4 <= field_mm <= 200),
        f"{section}.site_field_mm",
        field_mm,
        "use 0 (off) or a Gaussian sigma in [4, 200] mm with landmark_curve: true (the field acts on the curve's output)",
    )
    _require(
        field_mm > 0 or not weight,
        f"{section}.weights.field",
        weight,
        f"L_field compares the site field's maps: set {section}.site_field_mm > 0, or field: 0",
    )


def _check_curve(section: str, residual: bool, curve: bool, hist: float, curve_lr: float) -> None:
    """The landmark curve's switches (harmonizer and drit alike): it needs a residual G, L_hist needs it."""
    _require(
        residual or not curve,
        f"{section}.landmark_curve",
        curve,
        f"the curve replaces x in x + delta: set {section}.residual: true, or landmark_curve: false",
    )
    _require(
        curve or not hist,
        f"{section}.weights.hist",
        hist,
        f"L_hist compares the landmark curve's landmarks: set {section}.landmark_curve: true, or hist: 0",
    )
    _require(0 < curve_lr <= 1000, f"{section}.curve_lr", curve_lr, "use a factor in (0, 1000], e.g. 3")


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    amp: str = "bf16"
    threads: int = 0

    def __post_init__(self) -> None:
        _require(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "runtime.device",
            self.device,
            "use auto, cpu, cuda or cuda:N",
        )
        _require(self.amp in ("bf16", "fp16", "none"), "runtime.amp", self.amp, "use bf16, fp16 or none")
        _require(self.threads >= 0, "runtime.threads", self.threads, "use 0 (all cores) or a positive count")


@dataclass(frozen=True)
class DataConfig:
    voxel_mm: int = 2

    def __post_init__(self) -> None:
        _require(self.voxel_mm in (1, 2, 4), "data.voxel_mm", self.voxel_mm, "use 1, 2 or 4 (mm, on the FSL MNI grid)")


@dataclass(frozen=True)
class SynthConfig:
    """Size of the synthetic cohort (``harmlib.data.synthetic``): subjects per site and cohort."""

    n_train_per_site: int = 10
    labeled_fraction: float = 0.5
    n_test_per_site: int = 4
    n_age_per_site: int = 8
    n_ad_per_site: int = 8
    n_raw: int = 4
    out_dir: str = ""

    def __post_init__(self) -> None:
        for name in ("n_train_per_site", "n_test_per_site", "n_age_per_site", "n_ad_per_site"):
            _require(getattr(self, name) >= 1, f"synth.{name}", getattr(self, name), "use at least 1")
        _require(
            self.n_train_per_site >= 2,
            "synth.n_train_per_site",
            self.n_train_per_site,
            "use at least 2 (labeled and unlabeled)",
        )
        _require(
            0.0 < self.labeled_fraction < 1.0,
            "synth.labeled_fraction",
            self.labeled_fraction,
            "use a fraction in (0, 1)",
        )
        _require(self.n_raw >= 0, "synth.n_raw", self.n_raw, "use 0 or more raw scanner-space volumes")


@dataclass(frozen=True)
class SSIMConfig:
    """Exponents, mixing weight and window of the SSIM loss (paper 1, Eq. 1-3)."""

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    lam: float = 0.8
    win_size: int = 11
    sigma: float = 1.5
    k1: float = 0.01
    k2: float = 0.03

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            v = getattr(self, name)
            _require(math.isfinite(v) and v >= 0, f"ssim.{name}", v, "exponents must be finite and >= 0")
        _require(0.0 <= self.lam <= 1.0, "ssim.lam", self.lam, "lambda must lie in [0, 1]")
        _require(
            self.win_size >= 3 and self.win_size % 2 == 1, "ssim.win_size", self.win_size, "use an odd integer >= 3"
        )
        _require(self.sigma > 0, "ssim.sigma", self.sigma, "use a positive float")
        _require(0 < self.k1 < 1 and 0 < self.k2 < 1, "ssim.k1/k2", (self.k1, self.k2), "use constants in (0, 1)")

    def window(self) -> dict[str, float]:
        """Keyword arguments for the functions of ``harmlib.ssim``."""
        return {"win_size": self.win_size, "sigma": self.sigma, "k1": self.k1, "k2": self.k2}


@dataclass(frozen=True)
class AGUITWeights:
    """The lambdas of paper 1's objectives (AGUIT reference values; struct and lum are ours)."""

    rec: float = 10.0
    cc: float = 10.0
    struct: float = 10.0
    lum: float = 10.0
    cla_s: float = 10.0
    adv_b: float = 1.0
    pre_b: float = 1.0
    adv_x: float = 1.0
    pre_x_g: float = 10.0
    pre_x_d: float = 10.0
    lat: float = 10.0
    kl: float = 1.0
    hist: float = 0.0  # L_hist (ours, not in the paper): 1-D Wasserstein of x_{u->l}'s and site l's brain intensities
    field: float = 0.0  # L_field (ours, not in the paper): x_{u->l}'s smooth intensity field vs site l's mean field

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            _require(math.isfinite(v) and v >= 0, f"weights.{f.name}", v, "loss weights must be finite and >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """One training run: optimizer (Adam as in the references), length, checkpoints, logging."""

    iterations: int = 1000
    batch_size: int = 2
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    checkpoint_every: int = 100
    log_every: int = 10
    warmup: int = 0  # reconstruction-only steps at the start (HACA3's first epoch); 0 = none
    grad_clip: float = 0.0  # clip each optimizer's gradient norm to this (DRIT++ 5, DISARM++ 1.0); 0 = off
    snapshot_every: int = 0  # keep the trained nets every N steps for a convergence figure; 0 = off

    def __post_init__(self) -> None:
        _require(self.iterations >= 1, "train.iterations", self.iterations, "use at least 1")
        _require(
            0 <= self.warmup < self.iterations,
            "train.warmup",
            self.warmup,
            f"use 0 <= warmup < iterations ({self.iterations})",
        )
        _require(
            math.isfinite(self.grad_clip) and self.grad_clip >= 0,
            "train.grad_clip",
            self.grad_clip,
            "use 0 (off) or a positive norm",
        )
        _require(
            self.snapshot_every >= 0,
            "train.snapshot_every",
            self.snapshot_every,
            "use 0 (off) or a positive step count",
        )
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, "use at least 1")
        _require(self.lr > 0, "train.lr", self.lr, "use a positive learning rate")
        _require(
            0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
            "train.beta1/beta2",
            (self.beta1, self.beta2),
            "use values in [0, 1)",
        )
        _require(
            self.checkpoint_every >= 1 and self.log_every >= 1,
            "train.checkpoint_every/log_every",
            (self.checkpoint_every, self.log_every),
            "use at least 1",
        )


def arch_fields(section: Any, arch: type) -> dict[str, Any]:
    """The values of the architecture fields that ``arch`` declares, read from a config ``section`` (or a spec)
    that inherits them: the one way a model's spec is made from its config section."""
    return {f.name: getattr(section, f.name) for f in fields(arch)}


@dataclass(frozen=True)
class AGUITArch:
    """Paper 1's architecture, declared once: the ``harmonizer`` section and ``models.aguit.AGUITSpec`` both
    inherit these fields (AGUIT reference values; the profiles set the cpu ones)."""

    width: int = 64  # E_b channels after the first conv
    n_down: int = 2  # stride-2 steps of E_b (and upsamplings of G)
    n_res: int = 4  # residual blocks in E_b and G
    noise_dim: int = 8  # n, the noise part of the style code
    mlp_hidden: int = 256  # the MLP from style to AdaIN parameters
    style_width: int = 64
    d_width: int = 64
    d_layers: int = 3
    d_scales: int = 2
    residual: bool = False  # G outputs x + delta with delta's last layer zero at init (IGUANE): identity at step 0
    landmark_curve: bool = False  # with residual: G outputs curve_s(x) + delta, curve_s a style-given Nyul-landmark map
    site_field_mm: float = 0.0  # with the curve: G also moves the image's smooth intensity field (this Gaussian sigma, mm) to the style's; 0 = off


@dataclass(frozen=True)
class HarmonizerConfig(AGUITArch):
    """Paper 1's 3D model: its architecture (:class:`AGUITArch`), grid, crops, loss weights, training."""

    voxel_mm: int = 0  # the model's grid; 0: the data's. 4 with 2 mm data trains on exact 2x2x2 block means
    crop: int = 0  # train on random cubic crops of this many voxels a side (0: whole volumes)
    mask_losses: bool = False  # average L_rec, L_cc, L_struct, L_lum over the brain only (IGUANE, HACA3)
    content_d_lr: float = 1.0  # D^b's learning rate as a fraction of train.lr (DRIT++ / DISARM++: 1 / 2.5)
    curve_lr: float = 1.0  # the landmark curve's learning rate as a multiple of train.lr
    weights: AGUITWeights = field(default_factory=AGUITWeights)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _require(self.voxel_mm in (0, 1, 2, 4), "harmonizer.voxel_mm", self.voxel_mm, "use 0 (the data's), 1, 2 or 4")
        _require(
            self.crop == 0 or self.crop >= 16,
            "harmonizer.crop",
            self.crop,
            "use 0 (whole volumes) or at least 16 voxels",
        )
        _require(
            0 < self.content_d_lr <= 10,
            "harmonizer.content_d_lr",
            self.content_d_lr,
            "use a factor in (0, 10], e.g. 0.4",
        )
        for name in ("width", "n_res", "noise_dim", "mlp_hidden", "style_width", "d_width", "d_layers", "d_scales"):
            _require(getattr(self, name) >= 1, f"harmonizer.{name}", getattr(self, name), "use a positive integer")
        _require(self.n_down >= 0, "harmonizer.n_down", self.n_down, "use 0 or more stride-2 steps")
        _check_curve("harmonizer", self.residual, self.landmark_curve, self.weights.hist, self.curve_lr)
        _check_field("harmonizer", self.landmark_curve, self.site_field_mm, self.weights.field)


@dataclass(frozen=True)
class EvaluationConfig:
    """Evaluation of both papers (``harmlib.evaluation``): pair sampling, bootstrap, FID/KID feature
    extractor and the downstream 3D ResNets of paper 1's Tables 3-4 (MONAI ``ResNet``)."""

    n_pairs: int = 5000  # random image pairs for luminance SSIM (paper 2, E3: M = 5000)
    n_struct_pairs: int = 100  # random pairs of different subjects for structural SSIM (paper 1: 100)
    bootstrap: int = 1000  # bootstrap resamples for 95 % CIs of mean differences (paper 2)
    ci: float = 0.95
    feature_dim: int = 64  # FID/KID feature space: penultimate layer of a scanner classifier
    feature_width: int = 16
    feature_epochs: int = 20
    kid_subset_size: int = 1000  # capped at the smaller sample size
    kid_subsets: int = 100
    folds: int = 5  # downstream k-fold cross-validation (paper 1: 5)
    voxel_mm: int = 4  # downstream grid (block means of the data's grid)
    depth: int = 10  # MONAI ResNet depth: 10, 18 or 34
    width: int = 64  # block_inplanes = (w, 2w, 4w, 8w); MONAI default 64
    stem_stride: int = 2  # stride of the first conv (conv1_t_stride)
    max_pool: bool = True  # max-pool after the stem (MONAI no_max_pool = not max_pool)
    epochs: int = 30
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        for name in (
            "n_pairs",
            "n_struct_pairs",
            "bootstrap",
            "feature_dim",
            "feature_width",
            "feature_epochs",
            "kid_subset_size",
            "kid_subsets",
            "width",
            "stem_stride",
            "epochs",
            "batch_size",
        ):
            _require(getattr(self, name) >= 1, f"evaluation.{name}", getattr(self, name), "use a positive integer")
        _require(0.5 <= self.ci < 1.0, "evaluation.ci", self.ci, "use a confidence level in [0.5, 1), e.g. 0.95")
        _require(self.folds >= 2, "evaluation.folds", self.folds, "use at least 2 cross-validation folds")
        _require(
            self.voxel_mm in (1, 2, 4, 8),
            "evaluation.voxel_mm",
            self.voxel_mm,
            "use 1, 2, 4 or 8 (a multiple of the data's grid)",
        )
        _require(
            self.depth in (10, 18, 34),
            "evaluation.depth",
            self.depth,
            "use 10, 18 or 34 (MONAI ResNet depths with basic blocks)",
        )
        _require(
            self.lr > 0 and self.weight_decay >= 0,
            "evaluation.lr/weight_decay",
            (self.lr, self.weight_decay),
            "use lr > 0 and weight_decay >= 0",
        )


@dataclass(frozen=True)
class GateConfig:
    """A trained model's quality gate (``harmlib.evaluation.gate``): it must pass before its tables count."""

    reconstruction: float = 0.95  # SSIM of held-out x -> G(E_b(x), E_s(x)) over the brain
    translation: float = 0.8  # accuracy of an independent scanner classifier on outputs (x -> A read as A)
    improved: float = 0.9  # share of traveling-subject cases closer to the truth (SSIM) after harmonization
    min_gain: float = 0.02  # mean SSIM-to-truth gain over those cases
    structure: float = 0.93  # structural SSIM of harmonized vs original
    classifier: str = (
        "histogram"  # histogram (logistic regression on brain-intensity histograms) or cnn (3D ScannerClassifier)
    )
    classifier_epochs: int = 30  # of the independent 3D scanner classifier
    classifier_mm: int = 4  # its grid (block means of the data's grid)
    clustering_acc: float = (
        0.75  # the GM-VAE's gate (E1): clustering accuracy of its components against the true scanners
    )
    clustering_nmi: float = 0.5  # and their normalized mutual information
    slice_structure: float = 0.9  # the 2D models' structure criterion (their outputs are stacked slices)
    # The native-resolution row: a few test subjects of the synthetic cohort rendered at ``native_mm`` (finer than the
    # model's grid), harmonized there and compared with their truth at that resolution. 0: no such row.
    native_mm: int = 1
    native_subjects: int = 4  # one per test site, in the cohort's order
    detail: float = 0.9  # fine detail kept: the output's fine-scale SD over the native truth's (scale-invariant)
    nyul_margin: float = (
        0.0  # the model's scale-invariant SSIM to the truth minus Nyul's (fitted to the target), at least
    )

    def __post_init__(self) -> None:
        for name in (
            "reconstruction",
            "translation",
            "improved",
            "min_gain",
            "structure",
            "clustering_acc",
            "clustering_nmi",
            "slice_structure",
            "detail",
        ):
            v = getattr(self, name)
            _require(math.isfinite(v) and 0.0 <= v <= 1.0, f"gate.{name}", v, "gate thresholds lie in [0, 1]")
        _require(self.classifier in ("histogram", "cnn"), "gate.classifier", self.classifier, "use histogram or cnn")
        _require(self.classifier_epochs >= 1, "gate.classifier_epochs", self.classifier_epochs, "use at least 1")
        _require(self.native_mm in (0, 1, 2), "gate.native_mm", self.native_mm, "use 1 or 2 (mm), or 0 for no row")
        _require(
            -1.0 <= self.nyul_margin <= 1.0, "gate.nyul_margin", self.nyul_margin, "use a value in [-1, 1], e.g. 0"
        )
        _require(1 <= self.native_subjects <= 16, "gate.native_subjects", self.native_subjects, "use 1 to 16")
        _require(
            self.classifier_mm in (1, 2, 4, 8),
            "gate.classifier_mm",
            self.classifier_mm,
            "use 1, 2, 4 or 8 (a multiple of the data's grid)",
        )


@dataclass(frozen=True)
class SliceConfig:
    """Which coronal planes a 2D model trains on (``harmlib.data.datasets.SliceDataset``)."""

    n_slices: int = 3
    spacing_mm: float = 4.0
    centre_mm: float = -18.0

    def __post_init__(self) -> None:
        _require(self.n_slices >= 1, "slices.n_slices", self.n_slices, "use at least 1")
        _require(self.spacing_mm > 0, "slices.spacing_mm", self.spacing_mm, "use a positive spacing in mm")


@dataclass(frozen=True)
class GMVAEWeights:
    """The thesis's lambdas of L_GMVAE = l_rec L_rec + l_gauss L_gauss + l_cat L_cat (Sec. 7.1)."""

    rec: float = 0.7
    gauss: float = 2.0
    cat: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            _require(math.isfinite(v) and v >= 0, f"gmvae.weights.{f.name}", v, "loss weights must be finite and >= 0")


@dataclass(frozen=True)
class GMVAEArch:
    """The GM-VAE's architecture, declared once: the ``gmvae`` section and ``models.gmvae.GMVAESpec`` inherit it."""

    gaussian_size: int = 64  # z, GMM-DRIT's attribute size
    width: int = 32  # channels of the first conv (doubled per stride-2 step)
    n_down: int = 3
    hidden: int = 256  # fully connected features


@dataclass(frozen=True)
class GMVAEConfig(GMVAEArch):
    """Stage 1 of GMM-DRIT: the GM-VAE on 2D coronal slices; K is the number of training domains."""

    temp_init: float = 1.0
    temp_min: float = 0.5
    likelihood: str = (
        "bce"  # p(x|z): bce (the thesis) or gaussian (Dilokthanakul's -continuous; mean sigmoid(decoder), fixed sigma)
    )
    sigma: float = 0.1  # the fixed std of the gaussian likelihood on intensities in [0, 1]; unused with bce
    free_bits: float = (
        0.0  # L_cat = max(batch-mean KL(q(y|x) || uniform), free_bits) nats (Nat-D/GMVAE -lambda, 0.5 there); 0 = off
    )
    kl_warmup: int = 0  # steps over which the weights of L_gauss and L_cat ramp linearly from 0; 0 = off
    init_kmeans: bool = False  # seed the mixture from k-means (K) of the inputs: q(y|x) fitted to the clusters, p(z|y)'s means at their codes
    view: str = (
        "slice"  # x: the slice (the thesis) or ``field``: its plane of its volume's site field (drit.site_field_mm)
    )
    view_size: int = 32  # field view: the planes resampled to view_size^2 (divisible by 2**n_down)
    view_scale: float = 10.0  # field view: the log field (a few hundredths) times this into [-1, 1]
    slices: SliceConfig = field(default_factory=SliceConfig)
    weights: GMVAEWeights = field(default_factory=GMVAEWeights)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=64, lr=1e-3, beta1=0.9, weight_decay=0.0))

    def __post_init__(self) -> None:
        for name in ("gaussian_size", "width", "n_down", "hidden"):
            _require(getattr(self, name) >= 1, f"gmvae.{name}", getattr(self, name), "use a positive integer")
        _require(
            0 < self.temp_min <= self.temp_init,
            "gmvae.temp_min/temp_init",
            (self.temp_min, self.temp_init),
            "use 0 < temp_min <= temp_init",
        )
        _require(self.likelihood in ("bce", "gaussian"), "gmvae.likelihood", self.likelihood, "use bce or gaussian")
        _require(
            math.isfinite(self.sigma) and self.sigma > 0,
            "gmvae.sigma",
            self.sigma,
            "use a positive standard deviation (intensities in [0, 1]), e.g. 0.1",
        )
        _require(
            math.isfinite(self.free_bits) and self.free_bits >= 0,
            "gmvae.free_bits",
            self.free_bits,
            "use 0 (off) or a floor in nats >= 0, e.g. 0.5",
        )
        _require(
            0 <= self.kl_warmup < self.train.iterations,
            "gmvae.kl_warmup",
            self.kl_warmup,
            f"use 0 (off) <= kl_warmup < gmvae.train.iterations ({self.train.iterations})",
        )
        _require(self.view in ("slice", "field"), "gmvae.view", self.view, "use slice or field")
        _require(
            self.view_size >= 2**self.n_down and self.view_size % 2**self.n_down == 0,
            "gmvae.view_size",
            self.view_size,
            f"use a multiple of 2**gmvae.n_down = {2**self.n_down}",
        )
        _require(
            math.isfinite(self.view_scale) and self.view_scale > 0,
            "gmvae.view_scale",
            self.view_scale,
            "use a positive multiplier, e.g. 10",
        )


@dataclass(frozen=True)
class DRITWeights:
    """DRIT++'s lambdas (MDMM); GMM-DRIT uses the same ones, without lat and kl (its E^a is frozen)."""

    adv: float = 1.0
    cls_g: float = 5.0
    cls_d: float = 1.0
    self_rec: float = 10.0
    cc: float = 10.0
    lat: float = 10.0
    kl: float = 0.01
    content_reg: float = 0.01
    content_adv: float = 1.0
    hist: float = 0.0  # L_hist (ours, as harmonizer.weights.hist): each translation's landmarks vs its code's mean
    field: float = 0.0  # L_field (ours, as harmonizer.weights.field): each translation's field vs its code's mean

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            _require(math.isfinite(v) and v >= 0, f"drit.weights.{f.name}", v, "loss weights must be finite and >= 0")


@dataclass(frozen=True)
class DRITArch:
    """The architecture of DRIT++ and GMM-DRIT, declared once: the ``drit`` section and ``models.drit.DRITSpec``
    inherit these fields (DRIT++ reference values)."""

    width: int = 64  # E^c channels after the first conv
    n_down: int = 2
    n_res: int = 3  # residual blocks in E^c and G
    nz: int = 8  # DRIT++'s attribute size (GMM-DRIT's spec takes the GM-VAE's gaussian_size)
    attr_width: int = 64
    d_width: int = 64
    d_layers: int = 4
    content_noise: float = 1.0  # std of DRIT++'s Gaussian noise layer on z^c (training only)
    residual: bool = False  # G outputs x + delta with delta's last conv zero at init (as harmonizer.residual)
    landmark_curve: bool = False  # with residual: G outputs curve_(z^a, c)(x) + delta (as harmonizer.landmark_curve)
    site_field_mm: float = (
        0.0  # with the curve: each slice's plane of its volume's smooth field moved to (z^a, c)'s (as harmonizer's)
    )


@dataclass(frozen=True)
class DRITConfig(DRITArch):
    """Stage 2 (GMM-DRIT) and the DRIT++ baseline: one architecture (:class:`DRITArch`), data and budget for both."""

    slices: SliceConfig = field(default_factory=SliceConfig)
    weights: DRITWeights = field(default_factory=DRITWeights)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=2, weight_decay=1e-4))
    curve_lr: float = 1.0  # the landmark curve's learning rate as a multiple of train.lr

    def __post_init__(self) -> None:
        for name in ("width", "n_down", "n_res", "nz", "attr_width", "d_width", "d_layers"):
            _require(getattr(self, name) >= 1, f"drit.{name}", getattr(self, name), "use a positive integer")
        _require(self.content_noise >= 0, "drit.content_noise", self.content_noise, "use a standard deviation >= 0")
        _check_curve("drit", self.residual, self.landmark_curve, self.weights.hist, self.curve_lr)
        _check_field("drit", self.landmark_curve, self.site_field_mm, self.weights.field)


@dataclass(frozen=True)
class ExplorerConfig:
    slice_axis: int = 2
    slice_index: float = 0.55
    seed: int = 7

    def __post_init__(self) -> None:
        _require(
            self.slice_axis in (0, 1, 2),
            "explorer.slice_axis",
            self.slice_axis,
            "use 0 (sagittal), 1 (coronal) or 2 (axial)",
        )
        _require(
            0.0 < self.slice_index < 1.0,
            "explorer.slice_index",
            self.slice_index,
            "use a fraction of the axis in (0, 1)",
        )


@dataclass(frozen=True)
class Config:
    profile: str = "cpu"
    seed: int = 0
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    ssim: SSIMConfig = field(default_factory=SSIMConfig)
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    harmonizer: HarmonizerConfig = field(default_factory=HarmonizerConfig)
    gmvae: GMVAEConfig = field(default_factory=GMVAEConfig)
    drit: DRITConfig = field(default_factory=DRITConfig)

    def __post_init__(self) -> None:
        _require(  # the GM-VAE's field view reads the field GMM-DRIT's G moves, on the same grid
            self.gmvae.view == "slice" or self.drit.site_field_mm > 0,
            "gmvae.view",
            self.gmvae.view,
            "the field view reads the 2D models' site field; set drit.site_field_mm (e.g. 24) or use view: slice",
        )

    @property
    def data_dir(self) -> Path:
        """Where the synthetic cohort of this profile is written: ``data/generated/<profile>/``."""
        return Path(self.synth.out_dir) if self.synth.out_dir else Path("data") / "generated" / self.profile

    @property
    def run_dir(self) -> Path:
        """Where this profile's runs write: ``runs/<profile>/``."""
        return Path("runs") / self.profile

    def replace(self, overrides: Mapping[str, Any]) -> Config:
        """A new config with dotted ``overrides`` applied (this one is left unchanged)."""
        return _from_dict(_merge(to_dict(self), _nest(overrides)))


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"ssim.alpha": 1}`` -> ``{"ssim": {"alpha": 1}}``."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        node = out
        *parents, leaf = str(key).split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _merge(base: dict[str, Any], upd: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _coerce(name: str, value: Any, typ: Any) -> Any:
    """Cast YAML/papermill values to the field's type (papermill may pass ints for floats)."""
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if typ is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if typ in (int, str) and isinstance(value, typ) and not isinstance(value, bool):
        return value
    if typ is bool and isinstance(value, bool):
        return value
    raise ConfigError(f"invalid value {value!r} for parameter '{name}': expected {typ.__name__}")


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"parameter '{prefix.rstrip('.')}' is a section; give it as a mapping of fields")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"unknown parameter '{prefix}{key}'; known fields{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(known))}"
            )
    kwargs = {}
    for key, value in data.items():
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            kwargs[key] = _build(typ, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(f"{prefix}{key}", value, typ)
    return cls(**kwargs)


def _from_dict(data: Mapping[str, Any]) -> Config:
    return _build(Config, data)


def profile_path(profile: str | Path) -> Path:
    """The YAML file of a profile name (tiny, cpu, paper) or an explicit path."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(
                f"profile file {p} does not exist; give one of {', '.join(PROFILES)} or the path of a YAML profile"
            )
        return p
    if str(profile) not in PROFILES:
        raise ConfigError(
            f"unknown profile '{profile}'; use one of {', '.join(PROFILES)} or the path of a YAML profile"
        )
    return PROFILE_DIR / f"{profile}.yaml"


def parse_overrides(text: str) -> dict[str, Any]:
    """``"ssim.alpha=0.5, seed=3"`` -> ``{"ssim.alpha": 0.5, "seed": 3}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form field=value (e.g. ssim.alpha=0.5)")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(
                f"override '{item}': the value is not valid YAML; quote it or fix it (e.g. seed=3, ssim.alpha=0.5)"
            ) from None
    return out


def load_config(profile: str | Path = "cpu", overrides: Mapping[str, Any] | str | None = None) -> Config:
    """Load a profile and apply overrides; ``None`` values in ``overrides`` are ignored.

    Raises ``ConfigError`` with one line naming the parameter and what is allowed.
    """
    path = profile_path(profile)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(
            f"profile file {path} is not UTF-8 text; save it as UTF-8 (a copy of harmlib/profiles/cpu.yaml)"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"profile file {path} is not valid YAML ({err.__class__.__name__}); fix its syntax") from None
    if raw is None:
        raise ConfigError(f"profile file {path} is empty; start from a copy of harmlib/profiles/cpu.yaml")
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"profile file {path} holds a YAML {type(raw).__name__}, not a mapping of sections (profile:, seed:, ssim:, ...); "
            "start from a copy of harmlib/profiles/cpu.yaml"
        )
    if isinstance(overrides, str):
        overrides = parse_overrides(overrides)
    upd = {k: v for k, v in (overrides or {}).items() if v is not None}
    return _from_dict(_merge(raw, _nest(upd)))


def check_notebook_parameter(name: str, value: Any, notebook_parameters: set[str], cfg: Config) -> None:
    """A papermill parameter given to every notebook (``harmlib reproduce --set``) must be a parameter of
    some notebook, and its value must fit the config fields of that name (``gamma`` -> ``ssim.gamma``)."""
    if name not in notebook_parameters:
        raise ConfigError(
            f"unknown parameter '{name}' in --set; the notebooks take: {', '.join(sorted(notebook_parameters))}"
        )
    if value is None:
        return
    candidates = [(path, typ) for path, typ in _leaf_fields(Config) if path.rsplit(".", 1)[-1] == name]
    errors = []
    for path, _ in candidates:
        try:
            cfg.replace({path: value})
            return
        except ConfigError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError(errors[0].replace("invalid value", "--set: invalid value", 1))


def _leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for f in fields(cls):
        typ = typing.get_type_hints(cls)[f.name]
        out += (
            _leaf_fields(typ, f"{prefix}{f.name}.") if dataclasses.is_dataclass(typ) else [(f"{prefix}{f.name}", typ)]
        )
    return out
