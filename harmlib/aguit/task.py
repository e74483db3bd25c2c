"""Paper 1's semi-supervised step on (x_l, x_u) pairs, as a :class:`~harmlib.train.loop.Task`.

One iteration (Fig. 1 of the paper): encode x_u and x_l; reconstruct x_{u->u} = G(c_u, s_u);
translate x_{u->l} = G(c_u, s_r) with s_r = (n_r ~ N(0, 1), l of x_l); re-encode x_{u->l} to
(c_{u->l}, s_{u->l}) and close the cycle x_u^cc = G(c_{u->l}, s_u). One forward pass per step
(:class:`~harmlib.aguit.losses.AGUITForward`): the D step updates D^x and D^b on its detached translations,
then the G step updates E_b, E_s and G on every term of L_{G, E_b, E_s} (as DRIT++'s loop and stargan-v2's).

Read top to bottom: the batch (:class:`AGUITBatch`, :class:`Batches`), the forward pass (:func:`forward`), the
step objectives (the loss functions of ``harmlib.aguit.losses``), then :func:`build_task`, which wires them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harmlib.aguit.losses import (
    AGUITForward,
    aguit_discriminator_loss,
    aguit_generator_loss,
    aguit_reconstruction_loss,
    brain_mask,
)
from harmlib.aguit.model import KIND, AGUITSpec, build_aguit, generate, style_vector
from harmlib.config import AGUITArch, AGUITWeights, Config, SSIMConfig, arch_fields, to_dict
from harmlib.data.datasets import LabeledUnlabeledPairs, Normalizer, VolumeDataset
from harmlib.data.manifest import Manifest
from harmlib.models.levers import Levers, Where
from harmlib.train.loop import PairBatches, Task, export_payload, fingerprint


def spec_from_config(cfg: Config, n_domains: int) -> AGUITSpec:
    """The 3D architecture: the ``harmonizer`` section's AGUITArch fields, for ``n_domains`` sites."""
    return AGUITSpec(dim=3, n_domains=n_domains, **arch_fields(cfg.harmonizer, AGUITArch))


def model_downsample(cfg: Config) -> int:
    """Block-averaging factor from the data's grid to the model's (``harmonizer.voxel_mm``)."""
    v = cfg.harmonizer.voxel_mm or cfg.data.voxel_mm
    if v % cfg.data.voxel_mm:
        raise ValueError(
            f"harmonizer.voxel_mm={v} is not a multiple of data.voxel_mm={cfg.data.voxel_mm}; use a coarser or equal grid"
        )
    return v // cfg.data.voxel_mm


# --------------------------------------------------------------------------- one step's batch
@dataclass(frozen=True)
class AGUITBatch:
    """A (labeled, unlabeled) batch: x_l with its site label l in {-1, 1}^K, and x_u. With the cpu levers,
    ``where_u``: where each x_u sits in its whole volume (its landmarks and field, read once, and the crop's start);
    ``site_l``: x_l's site's mean landmarks and field (L_hist's and L_field's targets)."""

    x_l: torch.Tensor
    label: torch.Tensor
    x_u: torch.Tensor
    where_u: Where | None = None
    site_l: Where | None = None


def random_crop(
    images: list[torch.Tensor], size: int, rng: np.random.Generator
) -> tuple[list[torch.Tensor], list[int]]:
    """The same random cube of ``size`` voxels from each (N, 1, *spatial) batch, and its start: x_l and x_u
    stay aligned in MNI space, which L_lum (a local-mean comparison of two subjects) needs."""
    spatial = images[0].shape[2:]  # check_crop made sure the cube fits
    start = [int(rng.integers(0, s - size + 1)) for s in spatial]
    sl = (..., *[slice(a, a + size) for a in start])
    return [im[sl] for im in images], start


@dataclass
class Batches(PairBatches):
    """``batch(step)``: the (labeled, unlabeled) pairs of that step, a function of the step alone (a resumed run sees
    the same ones).

    ``volumes``: each unlabeled volume's :class:`Where` (whole x_u's: inference maps whole volumes); ``sites``: each
    site's mean; ``crop``: a fresh cube of that many voxels per step (0: whole volumes)."""

    crop: int = 0
    seed: int = 0
    volumes: Where | None = None
    sites: Where | None = None

    def __call__(self, step: int) -> AGUITBatch:
        lab, unl = self.items(step)
        x_l, x_u, start = lab["image"], unl["image"], None
        if self.crop:
            (x_l, x_u), start = random_crop([x_l, x_u], self.crop, np.random.default_rng([self.seed, step]))
        where_u = site_l = None
        if self.volumes is not None:
            where_u = self.volumes[unl["index"]]
            if start is not None:
                where_u = replace(where_u, region=torch.tensor([start] * len(x_u)))
            site_l = self.sites[lab["label"].argmax(1)]
        return AGUITBatch(x_l, lab["label"], x_u, where_u, site_l)


# --------------------------------------------------------------------------- one forward pass
def forward(nets: dict, b: AGUITBatch, noise_dim: int, masked: bool = False, translate: bool = True) -> AGUITForward:
    """Every image and code of one iteration, by the paper's names (``translate=False``: x_{u->u} only)."""
    c_u, (n_u, logit_u) = nets["E_b"](b.x_u), nets["E_s"](b.x_u)
    _, logit_l = nets["E_s"](b.x_l)
    s_u = style_vector(n_u, torch.tanh(logit_u))
    x_uu = generate(nets, c_u, s_u, b.x_u, b.where_u)
    base = {"x_l": b.x_l, "label": b.label, "x_u": b.x_u, "c_u": c_u, "n_u": n_u, "logit_l": logit_l, "x_uu": x_uu}
    if masked:
        base |= {"mask_u": brain_mask(b.x_u), "mask_l": brain_mask(b.x_l)}
    if not translate:
        return AGUITForward(**base)
    with torch.no_grad():  # D^b's real structure code; the encoders' game only moves c_u
        base["c_l"] = nets["E_b"](b.x_l)
    n_r = torch.randn(b.x_u.shape[0], noise_dim, device=b.x_u.device)
    s_r = style_vector(n_r, b.label.to(n_r.dtype))
    x_ul = generate(nets, c_u, s_r, b.x_u, b.where_u)
    c_ul, (n_ul, _) = nets["E_b"](x_ul), nets["E_s"](x_ul)
    landing = None  # where the levers put the whole x_{u->l}: the cycle maps it back from there
    if "levers" in nets and b.where_u is not None:
        landing = nets["levers"].landing(s_r, b.where_u)
    x_cc = generate(nets, c_ul, s_u, x_ul, None if landing is None else landing.detach())
    return AGUITForward(
        **base, n_r=n_r, x_ul=x_ul, c_ul=c_ul, n_ul=n_ul, x_cc=x_cc, landing_ul=landing, site_l=b.site_l
    )


def reconstruction_step(
    b: AGUITBatch, nets: dict, noise_dim: int, masked: bool, w: AGUITWeights, ssim_cfg: SSIMConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The warm-up's G step: reconstruction only, no translation (the loop hands it the batch)."""
    return aguit_reconstruction_loss(forward(nets, b, noise_dim, masked, translate=False), w, ssim_cfg)


# --------------------------------------------------------------------------- the levers' statistics
def site_means(values: torch.Tensor, labeled: VolumeDataset) -> torch.Tensor:
    """(K, ...) mean of each site's labeled volumes' statistic (landmarks, fields): L_hist's and L_field's
    target for x_{u->l} (a site-level statistic, Nyul's standard scale of that site, so one step sees the whole
    site, not one subject)."""
    site = torch.stack([labeled[i]["label"] for i in range(len(labeled))]).argmax(1)
    missing = [d for k, d in enumerate(labeled.domains) if not (site == k).any()]
    if missing:
        raise ValueError(
            f"harmonizer.weights.hist: site(s) {missing} have no labeled training volume; label at least one per site or set hist: 0"
        )
    return torch.stack([values[site == k].mean(0) for k in range(len(labeled.domains))])


def lever_statistics(levers: Levers, labeled: VolumeDataset, unlabeled: VolumeDataset) -> tuple[Where, Where]:
    """Step 0 of the levers: every training volume read once (the curve's standard and the field's cohort mean are
    set from them); returns each unlabeled volume's :class:`Where` and each site's mean (x_l's targets)."""
    volumes = [ds[i]["image"][None] for ds in (labeled, unlabeled) for i in range(len(ds))]
    every = levers.fit_cohort(volumes)
    n = len(labeled)
    sites = Where(*[None if v is None else site_means(v[:n], labeled) for v in (every.landmarks, every.field)])
    return every[n:], sites


# --------------------------------------------------------------------------- the task
def check_crop(crop: int, padded: list[int], pad: int) -> None:
    """A crop fits the padded volumes and halves exactly through the nets."""
    if crop > min(padded):
        raise ValueError(
            f"harmonizer.crop={crop} is larger than the volumes ({'x'.join(map(str, padded))} voxels after padding); use at most {min(padded) // pad * pad}"
        )
    if crop and crop % pad:
        raise ValueError(
            f"harmonizer.crop={crop} is not a multiple of {pad} (2^(n_down+1)); use e.g. {crop // pad * pad or pad}"
        )


def training_volumes(cfg: Config, manifest: Manifest, spec: AGUITSpec) -> dict[str, VolumeDataset]:
    """The training split's volumes on the model's grid: ``labeled`` (x_l), ``unlabeled`` (x_u) and ``all``."""
    kw = {
        "split": "train",
        "domains": manifest.domains("train"),
        "normalizer": Normalizer(),
        "pad_multiple": spec.pad_multiple,
        "downsample": model_downsample(cfg),
    }
    return {
        "labeled": VolumeDataset(manifest, role="labeled", **kw),
        "unlabeled": VolumeDataset(manifest, role="unlabeled", **kw),
        "all": VolumeDataset(manifest, **kw),
    }


def model_metadata(cfg: Config, spec: AGUITSpec, data: dict[str, VolumeDataset]) -> dict[str, Any]:
    """What the model file carries beside the weights: sites, spec, normalization, scales and grid."""
    labeled = data["labeled"]
    return {
        "domains": labeled.domains,
        "spec": asdict(spec),
        "normalizer": labeled.normalizer.to_dict(),
        "scales": data["all"].intensity_scales(),
        "pads": labeled.pads,
        "shape": list(labeled.shape),
        "voxel_mm": float(abs(labeled.affine(0)[0, 0])),
        "affine": labeled.affine(0).tolist(),
        "config": to_dict(cfg),
    }


def run_fingerprint(cfg: Config, manifest: Manifest, meta: dict[str, Any]) -> str:
    """What shapes training: a checkpoint of another run is not resumed."""
    return fingerprint(
        {
            "step": "one forward pass for D and G",  # since D read its own pass: models trained before retrain
            "levers": "composed around G",  # since the levers left G: checkpoints of G with them inside retrain
            "spec": meta["spec"],
            "harmonizer": to_dict(cfg.harmonizer),
            "ssim": to_dict(cfg.ssim),
            "seed": cfg.seed,
            "domains": meta["domains"],
            "shape": meta["shape"],
            "data": manifest.select("train").digest(),  # another cohort (version, files) trains another model
        }
    )


def build_task(cfg: Config, manifest: Manifest) -> tuple[Task, dict[str, Any]]:
    """The task and the metadata that the exported model file carries.

    Args:
        cfg: the run's config; its ``harmonizer`` section is the spec, ``ssim`` the loss's SSIM.
        manifest: the cohort; its training split's labeled and unlabeled volumes are x_l and x_u.

    Returns:
        (task for ``train.loop.fit``, metadata: domains, spec, normalizer, site scales, grid).
    """
    h = cfg.harmonizer
    spec = spec_from_config(cfg, len(manifest.domains("train")))
    data = training_volumes(cfg, manifest, spec)
    labeled = data["labeled"]
    padded = [s + a + b for s, (a, b) in zip(labeled.shape, labeled.pads)]
    if spec.site_field_mm:  # the field spans the whole padded volume
        spec = replace(spec, volume=tuple(padded), voxel_size_mm=float(abs(labeled.affine(0)[0, 0])))
    check_crop(h.crop, padded, spec.pad_multiple)
    torch.manual_seed(cfg.seed)
    nets = build_aguit(spec)
    volumes = sites = None
    if "levers" in nets and nets["levers"].curve is not None:
        volumes, sites = lever_statistics(nets["levers"], labeled, data["unlabeled"])
    pairs = LabeledUnlabeledPairs(labeled, data["unlabeled"], seed=cfg.seed)
    meta = model_metadata(cfg, spec, data)
    task = Task(
        KIND,
        nets,
        g_nets=[k for k in ("E_b", "E_s", "G", "levers") if k in nets],
        batch=Batches(pairs, h.train.batch_size, h.crop, cfg.seed, volumes, sites),
        g_step=partial(aguit_generator_loss, nets=nets, w=h.weights, ssim_cfg=cfg.ssim),
        d_nets=["D_x", "D_b"],
        d_step=partial(aguit_discriminator_loss, nets=nets, w=h.weights),
        fingerprint=run_fingerprint(cfg, manifest, meta),
        rec_step=partial(
            reconstruction_step,
            nets=nets,
            noise_dim=spec.noise_dim,
            masked=h.mask_losses,
            w=h.weights,
            ssim_cfg=cfg.ssim,
        ),
        forward=partial(forward, nets, noise_dim=spec.noise_dim, masked=h.mask_losses),
        lr_scale={"D_b": h.content_d_lr, "levers": h.curve_lr},
    )
    return task, meta


def export_model(task: Task, meta: dict[str, Any], path: str | Path) -> Path:
    """The self-describing model file: everything ``harmlib harmonize`` needs, and nothing else.

    Args:
        task, meta: what :func:`build_task` returned (the task after ``fit``).
        path: where to write ``ssim_harmonizer.pt`` (atomically, verified).
    """
    return export_payload(task, meta, path, [k for k in ("E_b", "E_s", "G", "levers") if k in task.nets])
