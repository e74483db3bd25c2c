"""Stage 2: GMM-DRIT, and the DRIT++ baseline, on unpaired slice pairs (x_a, x_b) from two scanners.

One iteration (thesis Fig. 1, four steps):
(1) encode z^c = E^c(x) and (z^a, c) = E^a(x) for x_a and x_b;
(2) translate x_{a->b} = G(z_a^c, z_b^a, c_b), x_{b->a} = G(z_b^c, z_a^a, c_a) and, with z_rand ~ N(0, I),
    x_a^rand = G(z_a^c, z_rand, c^rand), x_b^rand likewise;
(3) re-encode the translations for the cross-cycle x_{a->b->a}, x_{b->a->b}; self-reconstruct x_{a->a}, x_{b->b};
(4) update D_s^1, D_s^2, D_c on the detached outputs, then E^c, G (and DRIT++'s E^a) on the same forward
    pass, as DRIT++ does. GMM-DRIT's E^a is the frozen GM-VAE and c is its inferred one-hot code.

The two variants differ only where the papers do: GMM-DRIT's random branch is scanner-free
(c^rand = c_sf = 0); DRIT++'s E^a is a trained unimodal encoder on [x, c] with the true domain code c,
a KL term and latent regression, and its random branch translates into the partner's domain
(c^rand = c_b for x_a). Same data, pairs, architecture and iteration budget for both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harmlib.checkpoint import CheckpointError
from harmlib.config import Config, DRITArch, arch_fields, pad_multiple, to_dict
from harmlib.data.datasets import DomainPairs, SliceDataset, slab_shape, slice_volume_index, volume_slabs
from harmlib.data.manifest import Manifest
from harmlib.drit.losses import AttributePosterior, DRITForward, drit_discriminator_loss, drit_generator_loss
from harmlib.drit.model import DRIT, VARIANTS, DRITSpec, build_drit, generate, slice_where
from harmlib.gmvae.task import load_gmvae, slice_dataset, volume_scales
from harmlib.models.levers import Levers, Where, cat
from harmlib.train.loop import PairBatches, Task, export_payload, fingerprint


# --------------------------------------------------------------------------- one step's batch
@dataclass(frozen=True)
class DRITBatch:
    """B unpaired slices x_a and x_b from two scanners (domain indices d_a, d_b); with the cpu levers, where each
    sits in its volume (:func:`~harmlib.drit.model.slice_where`: the volume's landmarks and field, the slice's
    position)."""

    x_a: torch.Tensor
    x_b: torch.Tensor
    d_a: torch.Tensor
    d_b: torch.Tensor
    where_a: Where | None = None
    where_b: Where | None = None


@dataclass
class Batches(PairBatches):
    """``batch(step)``: the pairs of that step, a function of the step alone (a resumed run sees the same ones);
    ``volumes``: each training volume's :class:`Where` (None without the landmark curve)."""

    levers: Levers | None = None
    volumes: Where | None = None

    def __call__(self, step: int) -> DRITBatch:
        a, b = self.items(step)
        where_a = where_b = None
        if self.volumes is not None:  # inference maps a volume's slices with the volume's landmarks and field
            v_a, v_b = self.volumes[a["index"]], self.volumes[b["index"]]
            where_a = slice_where(self.levers, v_a.landmarks, v_a.field, a["slice"], v_a.scale)
            where_b = slice_where(self.levers, v_b.landmarks, v_b.field, b["slice"], v_b.scale)
        return DRITBatch(a["image"], b["image"], a["domain_index"], b["domain_index"], where_a, where_b)


# --------------------------------------------------------------------------- one forward pass
def _attribute(
    nets: dict,
    x: torch.Tensor,
    c_true: torch.Tensor,
    gmm: bool,
    planes: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """(z^a, c) of a batch; DRIT++ also returns (mu, logvar) and samples z^a = mu + sigma * eps. A GM-VAE with the
    field view reads the slices' ``planes`` of their site fields (and their volumes' stored ``scale``) instead of
    the slices."""
    if gmm:
        z, c = nets["E_a"].attribute(nets["E_a"].view_input(x, planes, scale))
        return {"z": z, "c": c}
    mu, logvar = nets["E_a"](x, c_true)
    return {"z": mu + (0.5 * logvar).exp() * torch.randn_like(mu), "c": c_true, "mu": mu, "logvar": logvar}


def _planes(nets: dict, field: torch.Tensor | None, where: Where | None) -> torch.Tensor | None:
    """The slices' planes of the fields ``field`` (N, *grid) at ``where``'s positions: what a field-view E^a reads."""
    if field is None or where is None:
        return None
    return nets["levers"].field.plane(field, where.region)


@dataclass(frozen=True)
class LeverTerms:
    """L_hist's and L_field's two sides for the coded translations (x_ab, x_ba, x_a_rand, x_b_rand), and where the
    levers put x_ab and x_ba (the cycle maps them back from there)."""

    hist_pred: torch.Tensor | None
    hist_target: torch.Tensor | None
    field_pred: torch.Tensor | None
    field_target: torch.Tensor | None
    landing: Where


def lever_terms(nets: dict, z: torch.Tensor, c: torch.Tensor, where: Where, means: Where) -> LeverTerms:
    """The translations coded (z, c) (x_ab, x_ba, x_a_rand, x_b_rand, at ``where`` repeated twice): their landmarks
    and fields as the levers set them, and their codes' means (``means``, (K, ...)). GMM-DRIT's scanner-free
    c_sf = 0 has no site to match and is left out."""
    landing = nets["levers"].landing(torch.cat([z, c.to(z.dtype)], 1), where.repeat(2))
    coded = c.sum(1) > 0
    code = c.float()
    if means.scale is not None:  # a translation takes its code's stored scale (scanner-free: the codes' mean)
        log = means.scale.log()
        landing = replace(landing, scale=(code @ log + (~coded).float() * log.mean()).exp())
    field_target = None
    if landing.field is not None:
        field_target = (code @ means.field.flatten(1)).view(-1, *means.field.shape[1:])[coded]
    return LeverTerms(
        landing.landmarks[coded],
        (code @ means.landmarks)[coded],
        None if landing.field is None else landing.field[coded],
        field_target,
        landing[: len(c) // 2],
    )


def forward(nets: dict, b: DRITBatch, spec: DRITSpec, gmm: bool, means: Where | None = None) -> DRITForward:
    """Steps (1)-(3) for a batch of pairs; a and b go through each net together (one call, 2B items). ``means``:
    with the levers, each code's mean landmarks and field over the training volumes (L_hist's and L_field's targets:
    DRIT++'s scanners, GMM-DRIT's GM-VAE components)."""
    n = b.x_a.shape[0]
    x = torch.cat([b.x_a, b.x_b])
    z_c = nets["E_c"](x)
    where = None if b.where_a is None else cat([b.where_a, b.where_b])
    own_planes = _planes(nets, None if where is None else where.field, where)
    c_true = F.one_hot(torch.cat([b.d_a, b.d_b]), spec.n_domains).float()
    att = _attribute(nets, x, c_true, gmm, own_planes, None if where is None else where.scale)
    z_aa, z_ab, c_a, c_b = att["z"][:n], att["z"][n:], att["c"][:n], att["c"][n:]
    z_rand = torch.randn(n, spec.nz, device=x.device)
    c_rand_a, c_rand_b = (torch.zeros_like(c_a), torch.zeros_like(c_b)) if gmm else (c_b, c_a)
    # (2) x_ab, x_ba, x_aa, x_bb, x_a_rand, x_b_rand in one call of G
    z_out = torch.cat([z_ab, z_aa, z_aa, z_ab, z_rand, z_rand])
    c_out = torch.cat([c_b, c_a, c_a, c_b, c_rand_a, c_rand_b])
    out = generate(
        nets, torch.cat([z_c] * 3), z_out, c_out, torch.cat([x] * 3), None if where is None else where.repeat(3)
    )
    terms = None
    if where is not None and where.landmarks is not None:
        pick = torch.cat([torch.arange(2 * n), torch.arange(4 * n, 6 * n)])  # the coded translations
        terms = lever_terms(nets, z_out[pick], c_out[pick], where, means)
    cyc, att_re = cycle(nets, out.split(n), c_a, c_b, gmm, where, terms)
    x_ab, x_ba, x_aa, x_bb, x_a_rand, x_b_rand = out.split(n)
    images = {"x_ab": x_ab, "x_ba": x_ba, "x_aa": x_aa, "x_bb": x_bb, "x_a_rand": x_a_rand, "x_b_rand": x_b_rand}
    lever = (
        {}
        if terms is None
        else {k: getattr(terms, k) for k in ("hist_pred", "hist_target", "field_pred", "field_target")}
    )
    return DRITForward(
        **images,
        x_a=b.x_a,
        x_b=b.x_b,
        c_a=c_a,
        c_b=c_b,
        z_c_a=z_c[:n],
        z_c_b=z_c[n:],
        c_rand_a=c_rand_a,
        c_rand_b=c_rand_b,
        x_aba=cyc[:n],
        x_bab=cyc[n:],
        z_rand=z_rand,
        posterior=None if gmm else posterior(att, att_re, n),
        **lever,
    )


def cycle(
    nets: dict,
    out: tuple[torch.Tensor, ...],
    c_a: torch.Tensor,
    c_b: torch.Tensor,
    gmm: bool,
    where: Where | None,
    terms: LeverTerms | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Step (3): re-encode the translations (x_{a->b} holds a's content and b's attribute, x_{b->a} the converse;
    DRIT++ also re-encodes its random ones for the latent regression) and translate back: (x_aba, x_bab), E^a's."""
    x_ab, x_ba, _, _, x_a_rand, x_b_rand = out
    n = len(x_ab)
    z_c_re = nets["E_c"](torch.cat([x_ab, x_ba]))
    re_in = torch.cat([x_ab, x_ba]) if gmm else torch.cat([x_ab, x_ba, x_a_rand, x_b_rand])
    re_planes = _planes(nets, None if terms is None else terms.landing.field, where)
    re_scale = None if terms is None else terms.landing.scale
    att_re = _attribute(nets, re_in, torch.cat([c_b, c_a] if gmm else [c_b, c_a, c_b, c_a]), gmm, re_planes, re_scale)
    z_a = torch.cat([att_re["z"][n : 2 * n], att_re["z"][:n]])
    back = None if terms is None else terms.landing.detach()
    return generate(nets, z_c_re, z_a, torch.cat([c_a, c_b]), torch.cat([x_ab, x_ba]), back), att_re


def posterior(att: dict[str, torch.Tensor], att_re: dict[str, torch.Tensor], n: int) -> AttributePosterior:
    """DRIT++'s attribute terms: q(z^a|x) of a and b, and the latent regression's re-encoded random attributes."""
    return AttributePosterior(
        mu_a=att["mu"][:n],
        logvar_a=att["logvar"][:n],
        mu_b=att["mu"][n:],
        logvar_b=att["logvar"][n:],
        mu_rand_a=att_re["mu"][2 * n : 3 * n],
        mu_rand_b=att_re["mu"][3 * n :],
    )


@torch.no_grad()
def slice_codes(
    gmvae: torch.nn.Module,
    data: SliceDataset,
    planes: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """GMM-DRIT's code of every training slice: the argmax of the frozen GM-VAE's q(y|x), as in training (a
    field-view GM-VAE reads the slices' ``planes`` of their volumes' own fields and their volumes' ``scale``)."""
    x = torch.stack([data[i]["image"] for i in range(len(data))])
    x = gmvae.view_input(x, planes, scale)
    return torch.cat([gmvae.attribute(x[i : i + 64])[1].argmax(1) for i in range(0, len(x), 64)])


def check_gmvae_view(
    gmvae_spec: dict[str, Any], grid: dict[str, Any] | None, spec: DRITSpec, padded: list[int], path: str | Path
) -> None:
    """The pretrained GM-VAE must read what stage 2 gives it: a slice-view model these ``padded`` slices; a
    field-view model the field the levers move (the same sigma on the same padded volumes: its file's ``grid``)."""
    if gmvae_spec.get("view", "slice") == "slice":
        if list(gmvae_spec["size"]) != padded:
            raise CheckpointError(
                f"{path}: the GM-VAE was trained on {tuple(gmvae_spec['size'])} slices, these are {tuple(padded)}; "
                "re-run the GM-VAE pretraining (notebook 04) at this profile's resolution"
            )
        return
    grid = grid or {}
    if (
        not spec.site_field_mm
        or grid.get("sigma_mm") != spec.site_field_mm
        or list(grid.get("volume", [])) != list(spec.volume)
    ):
        raise CheckpointError(
            f"{path}: the GM-VAE reads site-field planes (sigma {grid.get('sigma_mm')} mm on volumes {grid.get('volume')}), "
            f"but this run's site field is drit.site_field_mm={spec.site_field_mm} on {list(spec.volume)}; "
            "re-run the GM-VAE pretraining (notebook 04) with this profile"
        )


def code_means(landmarks: torch.Tensor, codes: torch.Tensor, k: int) -> torch.Tensor:
    """(K, L) L_hist's targets: the mean landmarks of the slices with each code (rows of ``landmarks``); a code
    that no training slice has (a GM-VAE component left empty) keeps the mean of all, the curve's start."""
    out = landmarks.mean(0).repeat(k, 1)
    for j in range(k):
        if (codes == j).any():
            out[j] = landmarks[codes == j].mean(0)
    return out


def _spec(cfg: Config, k: int, nz: int) -> DRITSpec:
    """The ``drit`` section's DRITArch fields for ``k`` scanners, with attribute size ``nz`` (GMM-DRIT: the GM-VAE's)."""
    return DRITSpec(n_domains=k, **{**arch_fields(cfg.drit, DRITArch), "nz": nz})


def attribute_encoder(
    variant: str, gmvae_path: str | Path | None, domains: list[str]
) -> tuple[torch.nn.Module | None, dict[str, Any]]:
    """GMM-DRIT's pretrained GM-VAE and what its model file passes on (None and {} for DRIT++, whose E^a trains)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown DRIT variant '{variant}'; use one of {', '.join(VARIANTS)}")
    if variant == DRIT:
        return None, {}
    if gmvae_path is None:
        raise ValueError(
            "GMM-DRIT needs the pretrained GM-VAE: pass gmvae_path (runs/<profile>/models/gmvae.pt from notebook 04)"
        )
    gmvae, ck = load_gmvae(gmvae_path, domains)
    extra = {
        "gmvae_spec": ck["spec"],
        "component": ck["component"],
        "gmvae_scores": ck.get("scores", {}),
        "gmvae_created": ck.get("created", ""),
        "gmvae_field": ck.get("field"),
    }
    return gmvae, extra


def lever_statistics(nets: dict, data: SliceDataset, gmm: bool, k: int) -> tuple[Where, Where]:
    """Step 0 of the levers: each training volume read once (its landmarks and own field; the curve's standard and
    the field's cohort mean set from them), and each code's mean landmarks and field (L_hist's and L_field's
    targets; GMM-DRIT's codes are the frozen GM-VAE's components of the training slices)."""
    levers = nets["levers"]
    slabs, landmarks = volume_slabs(data)
    volumes = replace(levers.fit_cohort(slabs, landmarks), scale=volume_scales(data))
    volume, coronal = slice_volume_index(data)
    slices = slice_where(
        levers,
        volumes.landmarks[volume],
        None if volumes.field is None else volumes.field[volume],
        coronal,
        volumes.scale[volume],
    )
    planes = _planes(nets, slices.field, slices)
    codes = slice_codes(nets["E_a"], data, planes, slices.scale) if gmm else torch.as_tensor(data.domain_indices)
    field = (
        None
        if slices.field is None
        else code_means(slices.field.flatten(1), codes, k).view(-1, *slices.field.shape[1:])
    )
    scale = code_means(slices.scale.log()[:, None], codes, k)[:, 0].exp()  # each code's (geometric) mean scale
    return volumes, Where(code_means(slices.landmarks, codes, k), field, None, scale)


def model_metadata(cfg: Config, variant: str, spec: DRITSpec, data: SliceDataset, extra: dict) -> dict[str, Any]:
    """What the model file carries beside the weights: variant, sites, spec, slices, grids, normalization, scales."""
    vol = data.volumes
    extra = {k: v for k, v in extra.items() if k != "gmvae_field"}
    return {
        "domains": data.domains,
        "variant": variant,
        "spec": asdict(spec),
        "slices": asdict(cfg.drit.slices),
        "pads": data.pads,
        "slice_shape": list(data.shape),
        "shape": list(vol.shape),
        "affine": vol.affine(0).tolist(),
        "voxel_mm": float(abs(vol.affine(0)[0, 0])),
        "normalizer": data.normalizer.to_dict(),
        "scales": vol.intensity_scales(),
        "config": to_dict(cfg),
        **extra,
    }


def run_fingerprint(cfg: Config, manifest: Manifest, meta: dict[str, Any]) -> str:
    """What shapes training: a checkpoint of another run is not resumed."""
    return fingerprint(
        [
            meta["variant"],
            meta["spec"],
            to_dict(cfg.drit),
            cfg.seed,
            meta["domains"],
            meta["slice_shape"],
            meta.get("component"),
            meta.get("gmvae_created"),
            manifest.select("train").digest(),  # another cohort (version, files) trains another model
            "levers composed around G",  # since the levers left G: checkpoints of G with them inside retrain
        ]
    )


def build_task(
    cfg: Config, manifest: Manifest, variant: str, gmvae_path: str | Path | None = None
) -> tuple[Task, dict[str, Any]]:
    """GMM-DRIT (``variant='gmm_drit'``, needs the pretrained ``gmvae.pt``) or DRIT++ (``'drit'``).

    Args:
        cfg: the run's config; its ``drit`` section is the spec of both variants.
        manifest: the cohort; the training split's coronal slices make the unpaired pairs.
        variant: ``gmm_drit`` or ``drit``.
        gmvae_path: GMM-DRIT's pretrained GM-VAE model file (its K and slice size must match the data).

    Returns:
        (task for ``train.loop.fit``, metadata with the slice ``dataset``).
    """
    domains = manifest.domains("train")
    gmvae, extra = attribute_encoder(variant, gmvae_path, domains)
    gmm = gmvae is not None
    data = slice_dataset(manifest, cfg.drit.slices, domains, pad_multiple(cfg.drit.n_down))
    spec = _spec(cfg, len(domains), gmvae.spec.gaussian_size if gmm else cfg.drit.nz)
    if spec.site_field_mm:  # the field spans the volumes as the slices hold them
        spec = replace(spec, volume=slab_shape(data), voxel_size_mm=float(abs(data.volumes.affine(0)[0, 0])))
    if gmm:
        padded = [s + a + b for s, (a, b) in zip(data.shape, data.pads)]
        check_gmvae_view(extra["gmvae_spec"], extra["gmvae_field"], spec, padded, gmvae_path)
    torch.manual_seed(cfg.seed)
    nets = build_drit(spec, gmvae)
    volumes = means = None
    if "levers" in nets and nets["levers"].curve is not None:
        volumes, means = lever_statistics(nets, data, gmm, spec.n_domains)
    meta = model_metadata(cfg, variant, spec, data, extra)
    w = cfg.drit.weights
    task = Task(
        variant,
        nets,
        g_nets=[k for k in ("E_c", "E_a", "G", "levers") if k in nets and not (gmm and k == "E_a")],
        batch=Batches(DomainPairs(data, seed=cfg.seed), cfg.drit.train.batch_size, nets.get("levers"), volumes),
        g_step=partial(drit_generator_loss, nets=nets, w=w),
        d_nets=["D_s1", "D_s2", "D_c"],
        d_step=partial(drit_discriminator_loss, nets=nets, w=w),
        frozen=["E_a"] if gmm else [],
        fingerprint=run_fingerprint(cfg, manifest, meta),
        forward=partial(forward, nets, spec=spec, gmm=gmm, means=means),
        lr_scale={"levers": cfg.drit.curve_lr},
    )
    return task, {**meta, "dataset": data}


def export_model(task: Task, meta: dict[str, Any], path: str | Path) -> Path:
    """``gmm_drit.pt`` / ``drit.pt``: E^c, E^a (for GMM-DRIT the whole GM-VAE, so p(z|y) travels too), G and the
    cpu levers.

    Args:
        task, meta: what :func:`build_task` returned (the task after ``fit``).
        path: where to write the model file (atomically, verified).
    """
    return export_payload(task, meta, path, [k for k in ("E_c", "E_a", "G", "levers") if k in task.nets])
