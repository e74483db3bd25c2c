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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

PROFILE_DIR = Path(__file__).parent / "profiles"
PROFILES = ("tiny", "cpu", "paper")


class ConfigError(ValueError):
    """A profile, parameter or value that cannot be used; the message names it and what is allowed."""


class InvalidValue(ConfigError):
    """A field whose value breaks its rule. ``name`` is relative to the section that checked it; the loader
    (:func:`_build`) places it at the section's dotted path, so every message names the full path
    (``drit.train.iterations``). A section built on its own names itself by its usual ``path``."""

    def __init__(self, name: str, value: Any, allowed: str, prefix: str = "", placed: bool = False) -> None:
        self.name, self.value, self.allowed, self.placed = name, value, allowed, placed
        super().__init__(f"invalid value {value!r} for parameter '{prefix}{name}': {allowed}")

    def at(self, prefix: str) -> InvalidValue:
        """The same error, named at the section's path ``prefix`` (ending in '.', or '' at the top)."""
        return InvalidValue(self.name, self.value, self.allowed, prefix, placed=True)


Check = Callable[[Any], bool]


def rule(default: Any, ok: Check, allowed: str) -> Any:
    """A field with its rule beside it: ``iterations: int = rule(1000, lambda v: v >= 1, "use at least 1")``."""
    return field(default=default, metadata={"rule": (ok, allowed)})


def positive(default: int) -> Any:
    """A count of at least 1."""
    return rule(default, lambda v: v >= 1, "use a positive integer")


def weight(default: float) -> Any:
    """A loss weight (lambda)."""
    return rule(default, lambda v: math.isfinite(v) and v >= 0, "loss weights must be finite and >= 0")


def threshold(default: float) -> Any:
    """A gate threshold."""
    return rule(default, lambda v: math.isfinite(v) and 0.0 <= v <= 1.0, "gate thresholds lie in [0, 1]")


def one_of(default: Any, values: tuple, allowed: str) -> Any:
    return rule(default, lambda v: v in values, allowed)


class Section:
    """A config section: each field's rule (:func:`rule`, in its metadata) and the section's cross-field checks
    (:meth:`checks`) run when it is built; their names are relative to the section."""

    path: ClassVar[str] = ""  # the section's usual dotted path, for a section built on its own

    def __post_init__(self) -> None:
        prefix = f"{self.path}." if self.path else ""
        for f in fields(self):  # type: ignore[arg-type]
            ok, allowed = f.metadata.get("rule", (None, ""))
            if ok is not None and not ok(getattr(self, f.name)):
                raise InvalidValue(f.name, getattr(self, f.name), allowed, prefix)
        for ok, name, value, allowed in self.checks():
            if not ok:
                raise InvalidValue(name, value, allowed, prefix)

    def checks(self) -> Iterator[tuple[bool, str, Any, str]]:
        """(ok, field, value, what is allowed) of the rules that read several fields."""
        return iter(())


def _curve_and_field(s: Any) -> Iterator[tuple[bool, str, Any, str]]:
    """The levers' switches (harmonizer and drit alike): the curve replaces x in x + delta; the field acts on the
    curve's output; L_hist and L_field need what they compare."""
    yield (
        s.residual or not s.landmark_curve,
        "landmark_curve",
        s.landmark_curve,
        "the curve replaces x in x + delta: set residual: true, or landmark_curve: false",
    )
    yield (
        s.landmark_curve or not s.weights.hist,
        "weights.hist",
        s.weights.hist,
        "L_hist compares the landmark curve's landmarks: set landmark_curve: true, or hist: 0",
    )
    yield 0 < s.curve_lr <= 1000, "curve_lr", s.curve_lr, "use a factor in (0, 1000], e.g. 3"
    yield (
        s.site_field_mm == 0 or (s.landmark_curve and 4 <= s.site_field_mm <= 200),
        "site_field_mm",
        s.site_field_mm,
        "use 0 (off) or a Gaussian sigma in [4, 200] mm with landmark_curve: true (the field acts on the curve's output)",
    )
    yield (
        s.site_field_mm > 0 or not s.weights.field,
        "weights.field",
        s.weights.field,
        "L_field compares the site field's maps: set site_field_mm > 0, or field: 0",
    )


def pad_multiple(halvings: int) -> int:
    """The multiple every spatial size is padded to: 2^halvings, so each stride-2 step of a net halves exactly
    and its upsampling path returns the input's size; at least 8. Model files store the padding they used."""
    return max(8, 2**halvings)


@dataclass(frozen=True)
class RuntimeConfig(Section):
    path: ClassVar[str] = "runtime"
    device: str = rule(
        "auto", lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"), "use auto, cpu, cuda or cuda:N"
    )
    amp: str = one_of("bf16", ("bf16", "fp16", "none"), "use bf16, fp16 or none")
    threads: int = rule(0, lambda v: v >= 0, "use 0 (all cores) or a positive count")


@dataclass(frozen=True)
class DataConfig(Section):
    path: ClassVar[str] = "data"
    voxel_mm: int = one_of(2, (1, 2, 4), "use 1, 2 or 4 (mm, on the FSL MNI grid)")


@dataclass(frozen=True)
class SynthConfig(Section):
    """Size of the synthetic cohort (``harmlib.data.synthetic``): subjects per site and cohort."""

    path: ClassVar[str] = "synth"
    # Each count is bounded: 200 subjects per site is a ~10 GB, hours-long cohort at 2 mm; more is a typo, not a study.
    n_train_per_site: int = rule(10, lambda v: 2 <= v <= 200, "use 2 (labeled and unlabeled) to 200")
    labeled_fraction: float = rule(0.5, lambda v: 0.0 < v < 1.0, "use a fraction in (0, 1)")
    n_test_per_site: int = rule(4, lambda v: 1 <= v <= 200, "use 1 to 200")
    n_age_per_site: int = rule(8, lambda v: 1 <= v <= 200, "use 1 to 200")
    n_ad_per_site: int = rule(8, lambda v: 1 <= v <= 200, "use 1 to 200")
    n_raw: int = rule(4, lambda v: 0 <= v <= 200, "use 0 to 200 raw scanner-space volumes")
    out_dir: str = ""


def _exponent(default: float) -> Any:
    return rule(default, lambda v: math.isfinite(v) and v >= 0, "exponents must be finite and >= 0")


@dataclass(frozen=True)
class SSIMConfig(Section):
    """Exponents, mixing weight and window of the SSIM loss (paper 1, Eq. 1-3)."""

    path: ClassVar[str] = "ssim"
    alpha: float = _exponent(1.0)
    beta: float = _exponent(1.0)
    gamma: float = _exponent(1.0)
    lam: float = rule(0.8, lambda v: 0.0 <= v <= 1.0, "lambda must lie in [0, 1]")
    win_size: int = rule(11, lambda v: v >= 3 and v % 2 == 1, "use an odd integer >= 3")
    sigma: float = rule(1.5, lambda v: v > 0, "use a positive float")
    k1: float = rule(0.01, lambda v: 0 < v < 1, "use a constant in (0, 1)")
    k2: float = rule(0.03, lambda v: 0 < v < 1, "use a constant in (0, 1)")

    def window(self) -> dict[str, float]:
        """Keyword arguments for the functions of ``harmlib.ssim``."""
        return {"win_size": self.win_size, "sigma": self.sigma, "k1": self.k1, "k2": self.k2}


@dataclass(frozen=True)
class AGUITWeights(Section):
    """The lambdas of paper 1's objectives (AGUIT reference values; struct and lum are ours)."""

    path: ClassVar[str] = "harmonizer.weights"
    rec: float = weight(10.0)
    cc: float = weight(10.0)
    struct: float = weight(10.0)
    lum: float = weight(10.0)
    cla_s: float = weight(10.0)
    adv_b: float = weight(1.0)
    pre_b: float = weight(1.0)
    adv_x: float = weight(1.0)
    pre_x_g: float = weight(10.0)
    pre_x_d: float = weight(10.0)
    lat: float = weight(10.0)
    kl: float = weight(1.0)
    # L_hist (ours, not in the paper): 1-D Wasserstein of x_{u->l}'s and site l's brain intensities
    hist: float = weight(0.0)
    # L_field (ours, not in the paper): x_{u->l}'s smooth intensity field vs site l's mean field
    field: float = weight(0.0)
    # L_tex (ours, not in the paper): x_{u->l}'s local texture statistics (noise level, fine detail) vs x_l's
    tex: float = weight(0.0)


@dataclass(frozen=True)
class TrainConfig(Section):
    """One training run: optimizer (Adam as in the references), length, checkpoints, logging."""

    path: ClassVar[str] = "train"
    iterations: int = rule(1000, lambda v: v >= 1, "use at least 1")
    batch_size: int = rule(2, lambda v: v >= 1, "use at least 1")
    lr: float = rule(1e-4, lambda v: math.isfinite(v) and v > 0, "use a finite, positive learning rate")
    beta1: float = rule(0.5, lambda v: 0 <= v < 1, "use a value in [0, 1)")
    beta2: float = rule(0.999, lambda v: 0 <= v < 1, "use a value in [0, 1)")
    weight_decay: float = 1e-4
    checkpoint_every: int = rule(100, lambda v: v >= 1, "use at least 1")
    log_every: int = rule(10, lambda v: v >= 1, "use at least 1")
    warmup: int = 0  # reconstruction-only steps at the start (HACA3's first epoch); 0 = none
    # clip each optimizer's gradient norm to this (DRIT++ 5, DISARM++ 1.0); 0 = off
    grad_clip: float = rule(0.0, lambda v: math.isfinite(v) and v >= 0, "use 0 (off) or a positive norm")
    # keep the trained nets every N steps for a convergence figure; 0 = off
    snapshot_every: int = rule(0, lambda v: v >= 0, "use 0 (off) or a positive step count")

    def checks(self) -> Iterator[tuple[bool, str, Any, str]]:
        yield (
            0 <= self.warmup < self.iterations,
            "warmup",
            self.warmup,
            f"use 0 <= warmup < iterations ({self.iterations})",
        )


def arch_fields(section: Any, arch: type) -> dict[str, Any]:
    """The values of the architecture fields that ``arch`` declares, read from a config ``section`` (or a spec)
    that inherits them: the one way a model's spec is made from its config section."""
    return {f.name: getattr(section, f.name) for f in fields(arch)}


@dataclass(frozen=True)
class AGUITArch(Section):
    """Paper 1's architecture, declared once: the ``harmonizer`` section and ``models.aguit.AGUITSpec`` both
    inherit these fields (AGUIT reference values; the profiles set the cpu ones)."""

    path: ClassVar[str] = "harmonizer"
    width: int = positive(64)  # E_b channels after the first conv
    # stride-2 steps of E_b (and upsamplings of G)
    n_down: int = rule(2, lambda v: v >= 0, "use 0 or more stride-2 steps")
    n_res: int = positive(4)  # residual blocks in E_b and G
    noise_dim: int = positive(8)  # n, the noise part of the style code
    mlp_hidden: int = positive(256)  # the MLP from style to AdaIN parameters
    style_width: int = positive(64)
    d_width: int = positive(64)
    d_layers: int = positive(3)
    d_scales: int = positive(2)
    # the cpu levers around G (models.levers): y = x + G(c, s), G's last layer zero at init (IGUANE)
    residual: bool = False
    landmark_curve: bool = False  # with residual: y = curve_s(x) + G(c, s), curve_s a style-given Nyul-landmark map
    site_field_mm: float = 0.0  # with the curve: the image's smooth intensity field (this Gaussian sigma, mm) moved to the style's; 0 = off


@dataclass(frozen=True)
class HarmonizerConfig(AGUITArch):
    """Paper 1's 3D model: its architecture (:class:`AGUITArch`), grid, crops, loss weights, training."""

    # the model's grid; 0: the data's. 4 with 2 mm data trains on exact 2x2x2 block means
    voxel_mm: int = one_of(0, (0, 1, 2, 4), "use 0 (the data's), 1, 2 or 4")
    # train on random cubic crops of this many voxels a side (0: whole volumes)
    crop: int = rule(0, lambda v: v == 0 or v >= 16, "use 0 (whole volumes) or at least 16 voxels")
    mask_losses: bool = False  # average L_rec, L_cc, L_struct, L_lum over the brain only (IGUANE, HACA3)
    # D^b's learning rate as a fraction of train.lr (DRIT++ / DISARM++: 1 / 2.5)
    content_d_lr: float = rule(1.0, lambda v: 0 < v <= 10, "use a factor in (0, 10], e.g. 0.4")
    curve_lr: float = 1.0  # the levers' learning rate as a multiple of train.lr
    weights: AGUITWeights = field(default_factory=AGUITWeights)
    train: TrainConfig = field(default_factory=TrainConfig)

    def checks(self) -> Iterator[tuple[bool, str, Any, str]]:
        yield from _curve_and_field(self)


@dataclass(frozen=True)
class EvaluationConfig(Section):
    """Evaluation of both papers (``harmlib.evaluation``): pair sampling, bootstrap, FID/KID feature
    extractor and the downstream 3D ResNets of paper 1's Tables 3-4 (MONAI ``ResNet``)."""

    path: ClassVar[str] = "evaluation"
    n_pairs: int = positive(5000)  # random image pairs for luminance SSIM (paper 2, E3: M = 5000)
    n_struct_pairs: int = positive(100)  # random pairs of different subjects for structural SSIM (paper 1: 100)
    bootstrap: int = positive(1000)  # bootstrap resamples for 95 % CIs of mean differences (paper 2)
    ci: float = rule(0.95, lambda v: 0.5 <= v < 1.0, "use a confidence level in [0.5, 1), e.g. 0.95")
    feature_dim: int = positive(64)  # FID/KID feature space: penultimate layer of a scanner classifier
    feature_width: int = positive(16)
    feature_epochs: int = positive(20)
    kid_subset_size: int = positive(1000)  # capped at the smaller sample size
    kid_subsets: int = positive(100)
    folds: int = rule(5, lambda v: v >= 2, "use at least 2 cross-validation folds")  # downstream k-fold CV (paper 1: 5)
    # downstream grid (block means of the data's grid)
    voxel_mm: int = one_of(4, (1, 2, 4, 8), "use 1, 2, 4 or 8 (a multiple of the data's grid)")
    depth: int = one_of(10, (10, 18, 34), "use 10, 18 or 34 (MONAI ResNet depths with basic blocks)")
    width: int = positive(64)  # block_inplanes = (w, 2w, 4w, 8w); MONAI default 64
    stem_stride: int = positive(2)  # stride of the first conv (conv1_t_stride)
    max_pool: bool = True  # max-pool after the stem (MONAI no_max_pool = not max_pool)
    epochs: int = positive(30)
    batch_size: int = positive(4)
    lr: float = rule(1e-3, lambda v: math.isfinite(v) and v > 0, "use a finite, positive learning rate")
    weight_decay: float = rule(1e-4, lambda v: v >= 0, "use a weight decay >= 0")


@dataclass(frozen=True)
class GateConfig(Section):
    """A trained model's quality gate (``harmlib.evaluation.gate``): it must pass before its tables count."""

    path: ClassVar[str] = "gate"
    reconstruction: float = threshold(0.95)  # SSIM of held-out x -> G(E_b(x), E_s(x)) over the brain
    translation: float = threshold(0.8)  # accuracy of an independent scanner classifier on outputs (x -> A read as A)
    improved: float = threshold(0.9)  # share of traveling-subject cases closer to the truth (SSIM) after harmonization
    min_gain: float = threshold(0.02)  # mean SSIM-to-truth gain over those cases
    structure: float = threshold(0.93)  # structural SSIM of harmonized vs original
    # histogram (logistic regression on brain-intensity histograms) or cnn (3D ScannerClassifier)
    classifier: str = one_of("histogram", ("histogram", "cnn"), "use histogram or cnn")
    classifier_epochs: int = rule(30, lambda v: v >= 1, "use at least 1")  # of the independent 3D scanner classifier
    # its grid (block means of the data's grid)
    classifier_mm: int = one_of(4, (1, 2, 4, 8), "use 1, 2, 4 or 8 (a multiple of the data's grid)")
    clustering_acc: float = threshold(0.75)  # the GM-VAE's gate (E1): clustering accuracy against the true scanners
    clustering_nmi: float = threshold(0.5)  # and their normalized mutual information
    slice_structure: float = threshold(0.9)  # the 2D models' structure criterion (their outputs are stacked slices)
    # The native-resolution row: a few test subjects of the synthetic cohort rendered at ``native_mm`` (finer than the
    # model's grid), harmonized there and compared with their truth at that resolution. 0: no such row.
    native_mm: int = one_of(1, (0, 1, 2), "use 1 or 2 (mm), or 0 for no row")
    native_subjects: int = rule(4, lambda v: 1 <= v <= 16, "use 1 to 16")  # one per test site, in the cohort's order
    # fine detail kept: the output's fine-scale SD over the native truth's (scale-invariant)
    detail: float = threshold(0.9)
    # What a sceptic asks (per target, on the scale-invariant SSIM to the truth; criteria of the deep models' gates):
    nyul_margin: float = rule(0.0, lambda v: -1.0 <= v <= 1.0, "use a value in [-1, 1], e.g. 0.01")  # model - Nyul
    gap_closed: float = rule(0.0, lambda v: -1.0 <= v <= 1.0, "use a share in [-1, 1], e.g. 0.5")  # of the rescan gap
    # Nyul's error - model's
    tissue_margin: float = rule(0.0, lambda v: -1.0 <= v <= 1.0, "use a value in [-1, 1], e.g. 0")
    # the lesions' contrast to WM kept, as a share of the truth's (cases with lesions)
    lesion_kept: float = threshold(0.8)


@dataclass(frozen=True)
class SliceConfig(Section):
    """Which coronal planes a 2D model trains on (``harmlib.data.datasets.SliceDataset``)."""

    path: ClassVar[str] = "drit.slices"
    n_slices: int = rule(3, lambda v: v >= 1, "use at least 1")
    spacing_mm: float = rule(4.0, lambda v: v > 0, "use a positive spacing in mm")
    centre_mm: float = -18.0


@dataclass(frozen=True)
class GMVAEWeights(Section):
    """The thesis's lambdas of L_GMVAE = l_rec L_rec + l_gauss L_gauss + l_cat L_cat (Sec. 7.1)."""

    path: ClassVar[str] = "gmvae.weights"
    rec: float = weight(0.7)
    gauss: float = weight(2.0)
    cat: float = weight(1.0)


@dataclass(frozen=True)
class GMVAEArch(Section):
    """The GM-VAE's architecture, declared once: the ``gmvae`` section and ``gmvae.model.GMVAESpec`` inherit it."""

    path: ClassVar[str] = "gmvae"
    gaussian_size: int = positive(64)  # z, GMM-DRIT's attribute size
    width: int = positive(32)  # channels of the first conv (doubled per stride-2 step)
    n_down: int = positive(3)
    hidden: int = positive(256)  # fully connected features


@dataclass(frozen=True)
class GMVAEConfig(GMVAEArch):
    """Stage 1 of GMM-DRIT: the GM-VAE on 2D coronal slices; K is the number of training domains."""

    temp_init: float = 1.0
    temp_min: float = 0.5
    # p(x|z): bce (the thesis) or gaussian (Dilokthanakul's -continuous; mean sigmoid(decoder), fixed sigma)
    likelihood: str = one_of("bce", ("bce", "gaussian"), "use bce or gaussian")
    # the fixed std of the gaussian likelihood on intensities in [0, 1]; unused with bce
    sigma: float = rule(
        0.1, lambda v: math.isfinite(v) and v > 0, "use a positive standard deviation (intensities in [0, 1]), e.g. 0.1"
    )
    # L_cat = max(batch-mean KL(q(y|x) || uniform), free_bits) nats (Nat-D/GMVAE -lambda, 0.5 there); 0 = off
    free_bits: float = rule(0.0, lambda v: math.isfinite(v) and v >= 0, "use 0 (off) or a floor in nats >= 0, e.g. 0.5")
    kl_warmup: int = 0  # steps over which the weights of L_gauss and L_cat ramp linearly from 0; 0 = off
    # + balance * KL(batch-mean q(y|x) || uniform): an emptied component costs; 0 = off (the thesis)
    balance: float = rule(0.0, lambda v: math.isfinite(v) and v >= 0, "use 0 (off) or a weight >= 0, e.g. 10")
    init_kmeans: bool = False  # seed the mixture from k-means (K) of the inputs: q(y|x) fitted to the clusters, p(z|y)'s means at their codes
    # x: the slice (the thesis) or ``field``: its plane of its volume's site field (field_mm)
    view: str = one_of("slice", ("slice", "field"), "use slice or field")
    field_mm: float = 0.0  # field view: the site field's Gaussian sigma (mm), stage 2's drit.site_field_mm (checked)
    # field view: X and Z padded to this multiple, as stage 2's slices: pad_multiple(drit.n_down) (checked)
    field_pad: int = 8
    view_size: int = 32  # field view: the planes resampled to view_size^2 (divisible by 2**n_down)
    # field view: the log field (a few hundredths) times this into [-1, 1]
    view_scale: float = rule(10.0, lambda v: math.isfinite(v) and v > 0, "use a positive multiplier, e.g. 10")
    # field view: the weight of the volume's log stored scale (its Normalizer's high over the cohort's median),
    # added to its planes; normalizing divides the scale out, and it is what tells cohort v2's sites apart most
    scale_weight: float = rule(
        0.0, lambda v: math.isfinite(v) and v >= 0, "use 0 (off) or a weight >= 0 of the log scale, e.g. 0.5"
    )
    slices: SliceConfig = field(default_factory=SliceConfig)
    weights: GMVAEWeights = field(default_factory=GMVAEWeights)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=64, lr=1e-3, beta1=0.9, weight_decay=0.0))

    def checks(self) -> Iterator[tuple[bool, str, Any, str]]:
        yield (
            0 < self.temp_min <= self.temp_init,
            "temp_min",
            self.temp_min,
            f"use 0 < temp_min <= temp_init ({self.temp_init})",
        )
        yield (
            0 <= self.kl_warmup < self.train.iterations,
            "kl_warmup",
            self.kl_warmup,
            f"use 0 (off) <= kl_warmup < train.iterations ({self.train.iterations})",
        )
        step = 2**self.n_down
        yield (
            self.view_size >= step and self.view_size % step == 0,
            "view_size",
            self.view_size,
            f"use a multiple of 2**n_down = {step}",
        )


@dataclass(frozen=True)
class DRITWeights(Section):
    """DRIT++'s lambdas (MDMM); GMM-DRIT uses the same ones, without lat and kl (its E^a is frozen)."""

    path: ClassVar[str] = "drit.weights"
    adv: float = weight(1.0)
    cls_g: float = weight(5.0)
    cls_d: float = weight(1.0)
    self_rec: float = weight(10.0)
    cc: float = weight(10.0)
    lat: float = weight(10.0)
    kl: float = weight(0.01)
    content_reg: float = weight(0.01)
    content_adv: float = weight(1.0)
    # L_hist (ours, as harmonizer.weights.hist): each translation's landmarks vs its code's mean
    hist: float = weight(0.0)
    # L_field (ours, as harmonizer.weights.field): each translation's field vs its code's mean
    field: float = weight(0.0)


@dataclass(frozen=True)
class DRITArch(Section):
    """The architecture of DRIT++ and GMM-DRIT, declared once: the ``drit`` section and ``models.drit.DRITSpec``
    inherit these fields (DRIT++ reference values)."""

    path: ClassVar[str] = "drit"
    width: int = positive(64)  # E^c channels after the first conv
    n_down: int = positive(2)
    n_res: int = positive(3)  # residual blocks in E^c and G
    nz: int = positive(8)  # DRIT++'s attribute size (GMM-DRIT's spec takes the GM-VAE's gaussian_size)
    attr_width: int = positive(64)
    d_width: int = positive(64)
    d_layers: int = positive(4)
    # std of DRIT++'s Gaussian noise layer on z^c (training only)
    content_noise: float = rule(1.0, lambda v: v >= 0, "use a standard deviation >= 0")
    # the cpu levers around G (models.levers): y = x + G, G's last conv zero at init (as harmonizer's)
    residual: bool = False
    landmark_curve: bool = False  # with residual: y = curve_(z^a, c)(x) + G (as harmonizer.landmark_curve)
    # with the curve: each slice's plane of its volume's smooth field moved to (z^a, c)'s (as harmonizer's)
    site_field_mm: float = 0.0


@dataclass(frozen=True)
class DRITConfig(DRITArch):
    """Stage 2 (GMM-DRIT) and the DRIT++ baseline: one architecture (:class:`DRITArch`), data and budget for both."""

    slices: SliceConfig = field(default_factory=SliceConfig)
    weights: DRITWeights = field(default_factory=DRITWeights)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=2, weight_decay=1e-4))
    curve_lr: float = 1.0  # the levers' learning rate as a multiple of train.lr

    def checks(self) -> Iterator[tuple[bool, str, Any, str]]:
        yield from _curve_and_field(self)


@dataclass(frozen=True)
class ExplorerConfig(Section):
    path: ClassVar[str] = "explorer"
    slice_axis: int = one_of(2, (0, 1, 2), "use 0 (sagittal), 1 (coronal) or 2 (axial)")
    slice_index: float = rule(0.55, lambda v: 0.0 < v < 1.0, "use a fraction of the axis in (0, 1)")
    seed: int = 7


@dataclass(frozen=True)
class Config(Section):
    """One run's settings: a section per part of the pipeline (the profile's YAML mapping, section by section)."""

    profile: str = "cpu"
    seed: int = rule(0, lambda v: 0 <= v < 2**32, "use a seed in [0, 2^32)")  # numpy's and torch's seeds
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

    def checks(self) -> Iterator[tuple[bool, str, Any, str]]:
        """Across sections: the GM-VAE's field view reads the field GMM-DRIT's levers move, on their grid."""
        if self.gmvae.view != "field":
            return
        yield (
            self.drit.site_field_mm > 0,
            "gmvae.view",
            self.gmvae.view,
            "the field view reads the 2D models' site field; set drit.site_field_mm (e.g. 24) or use view: slice",
        )
        yield (
            self.gmvae.field_mm == self.drit.site_field_mm,
            "gmvae.field_mm",
            self.gmvae.field_mm,
            f"the field view reads stage 2's site field: use drit.site_field_mm ({self.drit.site_field_mm})",
        )
        pad = pad_multiple(self.drit.n_down)
        yield (
            self.gmvae.field_pad == pad,
            "gmvae.field_pad",
            self.gmvae.field_pad,
            f"the field view pads the volumes as stage 2's slices: use {pad} (pad_multiple(drit.n_down))",
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
    try:
        return cls(**kwargs)
    except InvalidValue as err:  # a section names its fields relative to itself: place them at its path
        if err.placed:
            raise
        raise err.at(prefix) from None


def _from_dict(data: Mapping[str, Any]) -> Config:
    return _build(Config, data)


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key written twice in one mapping (a section or a field) is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(f"'{key}' is written twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def profile_path(profile: str | Path) -> Path:
    """The YAML file of a profile name (tiny, cpu, paper) or an explicit path."""
    p = Path(profile)
    if p.suffix.lower() in (".yaml", ".yml"):
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
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError:
        raise ConfigError(
            f"profile file {path} is not UTF-8 text; save it as UTF-8 (a copy of harmlib/profiles/cpu.yaml)"
        ) from None
    except _DuplicateKey as err:
        raise ConfigError(f"profile file {path}: {err}; keep one (YAML would silently take the last)") from None
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
    if name == "profile":
        raise ConfigError(
            f"--set profile={value}: the profile is chosen by --profile (e.g. --profile {value}), not --set"
        )
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
