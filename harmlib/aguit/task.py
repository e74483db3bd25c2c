"""Paper 1's semi-supervised step on (x_l, x_u) pairs, as a :class:`~harmlib.train.loop.Task`.

One iteration (Fig. 1 of the paper): encode x_u and x_l; reconstruct x_{u->u} = G(c_u, s_u);
translate x_{u->l} = G(c_u, s_r) with s_r = (n_r ~ N(0, 1), l of x_l); re-encode x_{u->l} to
(c_{u->l}, s_{u->l}) and close the cycle x_u^cc = G(c_{u->l}, s_u). One forward pass per step
(:class:`~harmlib.aguit.losses.AGUITForward`): the D step updates D^x and D^b on its detached translations,
then the G step updates E_b, E_s and G on every term of L_{G, E_b, E_s} (as DRIT++'s loop and stargan-v2's).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from harmlib.aguit.losses import (
    AGUITForward,
    aguit_discriminator_loss,
    aguit_generator_loss,
    aguit_reconstruction_loss,
    brain_mask,
)
from harmlib.aguit.model import AGUITSpec, build_aguit, style_vector
from harmlib.config import AGUITArch, Config, arch_fields, to_dict
from harmlib.data.datasets import LabeledUnlabeledPairs, Normalizer, VolumeDataset
from harmlib.data.manifest import Manifest
from harmlib.models.blocks import brain_landmarks
from harmlib.train.loop import Task, epoch_items, export_payload, fingerprint

KIND = "ssim_harmonizer"


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


def forward(
    nets: dict,
    x_l: torch.Tensor,
    label: torch.Tensor,
    x_u: torch.Tensor,
    noise_dim: int,
    masked: bool = False,
    translate: bool = True,
    landmarks_u: torch.Tensor | None = None,
    landmarks_l: torch.Tensor | None = None,
    field_u: torch.Tensor | None = None,
    region: torch.Tensor | None = None,
    field_l: torch.Tensor | None = None,
) -> AGUITForward:
    """Every image and code of one iteration, by the paper's names (``translate=False``: x_{u->u} only).
    With G's landmark curve: ``landmarks_u``, the brain landmarks of the whole x_u (x_u may be a crop), and
    ``landmarks_l``, the mean landmarks of x_l's site (L_hist's target). With G's site field: ``field_u``, the
    whole x_u's own field, ``region`` the crop's start, ``field_l`` the mean field of x_l's site (L_field's)."""
    c_u, (n_u, logit_u) = nets["E_b"](x_u), nets["E_s"](x_u)
    _, logit_l = nets["E_s"](x_l)
    s_u = style_vector(n_u, torch.tanh(logit_u))
    base = {"x_l": x_l, "label": label, "x_u": x_u, "c_u": c_u, "n_u": n_u, "logit_l": logit_l}
    base["x_uu"] = nets["G"](c_u, s_u, x_u, landmarks_u, field_u, region)
    if masked:
        base |= {"mask_u": brain_mask(x_u), "mask_l": brain_mask(x_l)}
    if not translate:
        return AGUITForward(**base)
    with torch.no_grad():  # D^b's real structure code; the encoders' game only moves c_u
        base["c_l"] = nets["E_b"](x_l)
    n_r = torch.randn(x_u.shape[0], noise_dim, device=x_u.device)
    s_r = style_vector(n_r, label.to(n_r.dtype))
    x_ul = nets["G"](c_u, s_r, x_u, landmarks_u, field_u, region)
    c_ul, (n_ul, _) = nets["E_b"](x_ul), nets["E_s"](x_ul)
    curve, field = nets["G"].curve, nets["G"].field
    lm_ul = fd_ul = None
    if curve is not None and landmarks_u is not None:  # the whole x_{u->l}'s: the curve put x_u's on s_r's
        lm_ul = curve.target(s_r)
    if field is not None and field_u is not None:  # likewise its field: the site field put x_u's on s_r's
        fd_ul = field.target(s_r)
    x_cc = nets["G"](
        c_ul,
        s_u,
        x_ul,
        None if lm_ul is None else lm_ul.detach(),
        None if fd_ul is None else fd_ul.detach(),
        region,
    )
    return AGUITForward(
        **base,
        n_r=n_r,
        x_ul=x_ul,
        c_ul=c_ul,
        n_ul=n_ul,
        x_cc=x_cc,
        landmarks_ul=lm_ul,
        landmarks_l=landmarks_l,
        field_u=field_u,
        region=region,
        field_ul=fd_ul,
        field_l=field_l,
    )


def batch_forward(nets: dict, batch: tuple[dict, dict], noise_dim: int, masked: bool, translate: bool = True):
    """:func:`forward` on a (labeled, unlabeled) batch of ``build_task`` (its landmarks when the curve is on)."""
    lab, unl = batch
    extra = (unl.get("landmarks"), lab.get("landmarks"), unl.get("field"), unl.get("region"), lab.get("field"))
    return forward(nets, lab["image"], lab["label"], unl["image"], noise_dim, masked, translate, *extra)


def cohort_landmarks(datasets: list[VolumeDataset], percentiles: torch.Tensor) -> torch.Tensor:
    """(V, L) brain landmarks of every volume of ``datasets``, as the model sees them (normalized, padded)."""
    return torch.stack(
        [brain_landmarks(ds[i]["image"][None], percentiles)[0] for ds in datasets for i in range(len(ds))]
    )


def cohort_fields(g: torch.nn.Module, datasets: list[VolumeDataset], landmarks: torch.Tensor) -> torch.Tensor:
    """(V, *grid) every volume's own field relative to the cohort's mean (which this sets in G's site field)."""
    x = torch.stack([ds[i]["image"] for ds in datasets for i in range(len(ds))])
    logs, valid = g.field.read(x, landmarks, g.curve.standard)
    g.field.set_cohort(logs, valid)
    return g.field.own(logs, valid)


def site_means(landmarks: torch.Tensor, labeled: VolumeDataset) -> torch.Tensor:
    """(K, ...) mean of each site's labeled volumes' statistic (landmarks, fields): L_hist's and L_field's
    target for x_{u->l} (a site-level statistic, Nyul's standard scale of that site, so one step sees the whole
    site, not one subject)."""
    site = torch.stack([labeled[i]["label"] for i in range(len(labeled))]).argmax(1)
    missing = [d for k, d in enumerate(labeled.domains) if not (site == k).any()]
    if missing:
        raise ValueError(
            f"harmonizer.weights.hist: site(s) {missing} have no labeled training volume; label at least one per site or set hist: 0"
        )
    return torch.stack([landmarks[site == k].mean(0) for k in range(len(labeled.domains))])


def random_crop(
    images: list[torch.Tensor], size: int, rng: np.random.Generator
) -> tuple[list[torch.Tensor], list[int]]:
    """The same random cube of ``size`` voxels from each (N, 1, *spatial) batch, and its start: x_l and x_u
    stay aligned in MNI space, which L_lum (a local-mean comparison of two subjects) needs."""
    spatial = images[0].shape[2:]  # build_task checked that the cube fits
    start = [int(rng.integers(0, s - size + 1)) for s in spatial]
    sl = (..., *[slice(a, a + size) for a in start])
    return [im[sl] for im in images], start


def build_task(cfg: Config, manifest: Manifest) -> tuple[Task, dict[str, Any]]:
    """The task and the metadata that the exported model file carries.

    Args:
        cfg: the run's config; its ``harmonizer`` section is the spec, ``ssim`` the loss's SSIM.
        manifest: the cohort; its training split's labeled and unlabeled volumes are x_l and x_u.

    Returns:
        (task for ``train.loop.fit``, metadata: domains, spec, normalizer, site scales, grid).
    """
    domains = manifest.domains("train")
    norm = Normalizer()
    spec = spec_from_config(cfg, len(domains))
    pad = spec.pad_multiple
    down = model_downsample(cfg)
    labeled = VolumeDataset(
        manifest, split="train", role="labeled", domains=domains, normalizer=norm, pad_multiple=pad, downsample=down
    )
    unlabeled = VolumeDataset(
        manifest, split="train", role="unlabeled", domains=domains, normalizer=norm, pad_multiple=pad, downsample=down
    )
    pairs = LabeledUnlabeledPairs(labeled, unlabeled, seed=cfg.seed)
    padded = [s_ + a + b for s_, (a, b) in zip(labeled.shape, labeled.pads)]
    voxel = float(abs(labeled.affine(0)[0, 0]))
    spec = replace(spec, volume=tuple(padded), voxel_size_mm=voxel) if spec.site_field_mm else spec
    torch.manual_seed(cfg.seed)
    nets = build_aguit(spec)
    curve, field = nets["G"].curve, nets["G"].field
    if curve is not None:  # step 0: every style maps to the training cohort's mean landmarks
        every = cohort_landmarks([labeled, unlabeled], curve.percentiles)
        curve.set_standard(every.mean(0))
        site_landmarks = site_means(every[: len(labeled)], labeled)
        unlabeled_landmarks = every[len(labeled) :]  # the whole x_u's, read once, not at every step
    if field is not None:  # step 0: every image put on the cohort's mean field; L_field's site means
        own = cohort_fields(nets["G"], [labeled, unlabeled], every)
        site_fields = site_means(own[: len(labeled)], labeled)
        unlabeled_fields = own[len(labeled) :]
    w, ssim_cfg, bs = cfg.harmonizer.weights, cfg.ssim, cfg.harmonizer.train.batch_size
    crop, masked = cfg.harmonizer.crop, cfg.harmonizer.mask_losses
    if crop > min(padded):
        raise ValueError(
            f"harmonizer.crop={crop} is larger than the volumes ({'x'.join(map(str, padded))} voxels after padding); use at most {min(padded) // pad * pad}"
        )
    if crop and crop % pad:
        raise ValueError(
            f"harmonizer.crop={crop} is not a multiple of {pad} (2^(n_down+1)); use e.g. {crop // pad * pad or pad}"
        )

    def batch(step: int):
        items = []
        for epoch, i in epoch_items(step, bs, len(pairs)):
            pairs.set_epoch(epoch)
            items.append(pairs[i])
        lab, unl = default_collate(items)
        if curve is not None:  # the whole x_u's (before cropping; inference maps whole volumes), x_l's site's
            unl["landmarks"] = unlabeled_landmarks[unl["index"]]
            lab["landmarks"] = site_landmarks[lab["label"].argmax(1)]
        if field is not None:
            unl["field"] = unlabeled_fields[unl["index"]]
            lab["field"] = site_fields[lab["label"].argmax(1)]
        if crop:  # a fresh cube per step, drawn from the step alone so a resumed run sees the same batches
            (lab["image"], unl["image"]), start = random_crop(
                [lab["image"], unl["image"]], crop, np.random.default_rng([cfg.seed, step])
            )
            if field is not None:
                unl["region"] = torch.tensor([start] * len(unl["image"]))
        return lab, unl

    def step_forward(b) -> AGUITForward:
        """One pass per step; the D update reads its detached translations, the G update all of it."""
        return batch_forward(nets, b, spec.noise_dim, masked)

    def d_step(f: AGUITForward):
        return aguit_discriminator_loss(f, nets, w)

    def g_step(f: AGUITForward):
        return aguit_generator_loss(f, nets, w, ssim_cfg)

    def rec_step(b):  # the warm-up: reconstruction only, no translation (the loop hands it the batch)
        return aguit_reconstruction_loss(batch_forward(nets, b, spec.noise_dim, masked, translate=False), w, ssim_cfg)

    scales = VolumeDataset(
        manifest, split="train", domains=domains, normalizer=norm, pad_multiple=pad, downsample=down
    ).intensity_scales()
    meta = {
        "domains": domains,
        "spec": asdict(spec),
        "normalizer": norm.to_dict(),
        "scales": scales,
        "pads": labeled.pads,
        "shape": list(labeled.shape),
        "voxel_mm": float(abs(labeled.affine(0)[0, 0])),
        "affine": labeled.affine(0).tolist(),
        "config": to_dict(cfg),
    }
    shaping = {
        "step": "one forward pass for D and G",  # since D read its own pass: models trained before retrain
        "spec": meta["spec"],
        "harmonizer": to_dict(cfg.harmonizer),
        "ssim": to_dict(cfg.ssim),
        "seed": cfg.seed,
        "domains": domains,
        "shape": meta["shape"],
        "data": manifest.select("train").digest(),  # another cohort (version, files) trains another model
    }
    task = Task(
        KIND,
        nets,
        g_nets=["E_b", "E_s", "G"],
        batch=batch,
        g_step=g_step,
        d_nets=["D_x", "D_b"],
        d_step=d_step,
        fingerprint=fingerprint(shaping),
        rec_step=rec_step,
        forward=step_forward,
        lr_scale={
            "D_b": cfg.harmonizer.content_d_lr,
            "G.curve": cfg.harmonizer.curve_lr,
            "G.field": cfg.harmonizer.curve_lr,
        },
    )
    return task, meta


def export_model(task: Task, meta: dict[str, Any], path: str | Path) -> Path:
    """The self-describing model file: everything ``harmlib harmonize`` needs, and nothing else.

    Args:
        task, meta: what :func:`build_task` returned (the task after ``fit``).
        path: where to write ``ssim_harmonizer.pt`` (atomically, verified).
    """
    return export_payload(task, meta, path, ["E_b", "E_s", "G"])
