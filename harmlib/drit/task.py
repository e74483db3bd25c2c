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

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from harmlib.checkpoint import CheckpointError
from harmlib.config import Config, DRITArch, arch_fields, to_dict
from harmlib.data.datasets import DomainPairs, SliceDataset, cohort_fields, slab_shape, slice_planes
from harmlib.data.manifest import Manifest
from harmlib.drit.losses import AttributePosterior, DRITForward, drit_discriminator_loss, drit_generator_loss
from harmlib.drit.model import DRITSpec, build_drit, slice_fields
from harmlib.gmvae.task import load_gmvae, slice_dataset
from harmlib.models.blocks import pad_multiple
from harmlib.train.loop import Task, epoch_items, export_payload, fingerprint

VARIANTS = ("gmm_drit", "drit")


def _attribute(
    nets: dict, x: torch.Tensor, c_true: torch.Tensor, gmm: bool, planes: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """(z^a, c) of a batch; DRIT++ also returns (mu, logvar) and samples z^a = mu + sigma * eps. A GM-VAE with the
    field view reads the slices' ``planes`` of their site fields instead of the slices."""
    if gmm:
        z, c = nets["E_a"].attribute(nets["E_a"].view_input(x, planes))
        return {"z": z, "c": c}
    mu, logvar = nets["E_a"](x, c_true)
    return {"z": mu + (0.5 * logvar).exp() * torch.randn_like(mu), "c": c_true, "mu": mu, "logvar": logvar}


def forward(
    nets: dict,
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    d_a: torch.Tensor,
    d_b: torch.Tensor,
    spec: DRITSpec,
    gmm: bool,
    landmarks: tuple[torch.Tensor, torch.Tensor] | None = None,
    code_means: torch.Tensor | None = None,
    fields: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    field_means: torch.Tensor | None = None,
) -> DRITForward:
    """Steps (1)-(3) for a batch of pairs; a and b go through each net together (one call, 2B items).

    With G's landmark curve: ``landmarks``, the landmarks (B, L) of the volumes x_a's and x_b's slices come
    from, and ``code_means`` (K, L), L_hist's target for a translation coded c: the mean landmarks of the
    training volumes with that code (DRIT++: the scanner; GMM-DRIT: the GM-VAE's component). With G's site field:
    ``fields`` ((own_a, at_a), (own_b, at_b)), each slice's plane of its volume's own field and its position, and
    ``field_means`` (K, *grid), L_field's target for a code: the mean field of its training volumes."""
    n, k = x_a.shape[0], spec.n_domains
    onehot = F.one_hot(torch.cat([d_a, d_b]), k).float()
    z_c = nets["E_c"](torch.cat([x_a, x_b]))
    field = nets["G"].field if fields is not None else None
    own = at = None
    if field is not None:
        own, at = torch.cat([fields[0][0], fields[1][0]]), torch.cat([fields[0][1], fields[1][1]])
    att = _attribute(nets, torch.cat([x_a, x_b]), onehot, gmm, own)
    z_ca, z_cb, z_aa, z_ab = z_c[:n], z_c[n:], att["z"][:n], att["z"][n:]
    c_a, c_b = att["c"][:n], att["c"][n:]
    z_rand = torch.randn(n, spec.nz, device=x_a.device)
    c_rand_a, c_rand_b = (torch.zeros_like(c_a), torch.zeros_like(c_b)) if gmm else (c_b, c_a)
    z_out = torch.cat([z_ab, z_aa, z_aa, z_ab, z_rand, z_rand])
    c_out = torch.cat([c_b, c_a, c_a, c_b, c_rand_a, c_rand_b])
    curve = nets["G"].curve if landmarks is not None else None
    out = nets["G"](
        torch.cat([z_ca, z_cb, z_ca, z_cb, z_ca, z_cb]),
        z_out,
        c_out,
        torch.cat([x_a, x_b] * 3),
        None if curve is None else torch.cat([*landmarks] * 3),
        None if field is None else (torch.cat([own] * 3), torch.cat([at] * 3)),
    )
    x_ab, x_ba, x_aa, x_bb, x_a_rand, x_b_rand = out.split(n)
    hist_pred = hist_target = field_pred = field_target = cyc_field = re_planes = None
    if curve is not None:  # the translations' landmarks: the curve put their volumes' onto T(z^a, c)
        code = torch.cat([c_out[: 2 * n], c_out[4 * n :]])  # x_ab, x_ba, x_a_rand, x_b_rand
        style = torch.cat([torch.cat([z_out[: 2 * n], z_out[4 * n :]]), code.to(z_out.dtype)], 1)
        coded = code.sum(1) > 0  # GMM-DRIT's scanner-free c_sf = 0 has no site to match
        t = curve.target(style)
        hist_pred, hist_target = t[coded], (code.float() @ code_means)[coded] if code_means is not None else None
        cyc_landmarks = t[: 2 * n].detach()
    if field is not None:  # likewise their fields (the field needs the curve): the site field put theirs on Phi
        phi = field.target(style)
        field_pred = phi[coded]
        field_target = (code.float() @ field_means.flatten(1)).view(-1, *field.grid)[coded]
        re_planes = field.plane(phi[: 2 * n], at)  # x_ab's field on a's plane, x_ba's on b's: what E^a re-reads
        cyc_field = (re_planes.detach(), at)
    # (3) re-encode: x_{a->b} holds a's content and b's attribute, x_{b->a} the converse
    z_c_re = nets["E_c"](torch.cat([x_ab, x_ba]))
    re_in = torch.cat([x_ab, x_ba]) if gmm else torch.cat([x_ab, x_ba, x_a_rand, x_b_rand])
    att_re = _attribute(nets, re_in, torch.cat([c_b, c_a] if gmm else [c_b, c_a, c_b, c_a]), gmm, re_planes)
    za_re_b, za_re_a = att_re["z"][:n], att_re["z"][n : 2 * n]
    cyc = nets["G"](
        torch.cat([z_c_re[:n], z_c_re[n:]]),
        torch.cat([za_re_a, za_re_b]),
        torch.cat([c_a, c_b]),
        torch.cat([x_ab, x_ba]),
        None if curve is None else cyc_landmarks,
        cyc_field,
    )
    posterior = None
    if not gmm:
        posterior = AttributePosterior(
            mu_a=att["mu"][:n],
            logvar_a=att["logvar"][:n],
            mu_b=att["mu"][n:],
            logvar_b=att["logvar"][n:],
            mu_rand_a=att_re["mu"][2 * n : 3 * n],
            mu_rand_b=att_re["mu"][3 * n :],
        )
    return DRITForward(
        x_a=x_a,
        x_b=x_b,
        c_a=c_a,
        c_b=c_b,
        z_c_a=z_ca,
        z_c_b=z_cb,
        x_ab=x_ab,
        x_ba=x_ba,
        x_aa=x_aa,
        x_bb=x_bb,
        x_a_rand=x_a_rand,
        x_b_rand=x_b_rand,
        c_rand_a=c_rand_a,
        c_rand_b=c_rand_b,
        x_aba=cyc[:n],
        x_bab=cyc[n:],
        z_rand=z_rand,
        posterior=posterior,
        hist_pred=hist_pred,
        hist_target=hist_target,
        field_pred=field_pred,
        field_target=field_target,
    )


@torch.no_grad()
def slice_codes(gmvae: torch.nn.Module, data: SliceDataset, planes: torch.Tensor | None = None) -> torch.Tensor:
    """GMM-DRIT's code of every training slice: the argmax of the frozen GM-VAE's q(y|x), as in training (a
    field-view GM-VAE reads the slices' ``planes`` of their volumes' own fields)."""
    x = torch.stack([data[i]["image"] for i in range(len(data))])
    x = gmvae.view_input(x, planes)
    return torch.cat([gmvae.attribute(x[i : i + 64])[1].argmax(1) for i in range(0, len(x), 64)])


def check_gmvae_view(ck: dict[str, Any], spec: DRITSpec, padded: list[int], path: str | Path) -> None:
    """The pretrained GM-VAE must read what stage 2 gives it: a slice-view model these ``padded`` slices; a
    field-view model the field G moves (the same sigma on the same padded volumes)."""
    if ck["spec"].get("view", "slice") == "slice":
        if list(ck["spec"]["size"]) != padded:
            raise CheckpointError(
                f"{path}: the GM-VAE was trained on {tuple(ck['spec']['size'])} slices, these are {tuple(padded)}; "
                "re-run the GM-VAE pretraining (notebook 04) at this profile's resolution"
            )
        return
    grid = ck.get("field") or {}
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
    if variant not in VARIANTS:
        raise ValueError(f"unknown DRIT variant '{variant}'; use one of {', '.join(VARIANTS)}")
    gmm = variant == "gmm_drit"
    domains = manifest.domains("train")
    data = slice_dataset(manifest, cfg.drit.slices, domains, pad_multiple(cfg.drit.n_down))
    extra: dict[str, Any] = {}
    gmvae = None
    if gmm:
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
        }
    spec = _spec(cfg, len(domains), gmvae.spec.gaussian_size if gmm else cfg.drit.nz)
    if spec.site_field_mm:  # the field spans the volumes as the slices hold them
        spec = replace(spec, volume=slab_shape(data), voxel_size_mm=float(abs(data.volumes.affine(0)[0, 0])))
    if gmm:
        check_gmvae_view(ck, spec, [s + a + b for s, (a, b) in zip(data.shape, data.pads)], gmvae_path)
    torch.manual_seed(cfg.seed)
    nets = build_drit(spec, gmvae)
    pairs, bs = DomainPairs(data, seed=cfg.seed), cfg.drit.train.batch_size
    curve, field = nets["G"].curve, nets["G"].field
    slice_volume = torch.arange(len(data)) // data.n_slices
    means = f_means = own = None
    if curve is not None:  # each volume read once: its landmarks and own field; step 0 maps every code to the mean
        landmarks, own = cohort_fields(data, curve.percentiles, field)
        curve.set_standard(landmarks.mean(0))
        planes = None if own is None else slice_planes(field, own, data)[0]
        codes = slice_codes(nets["E_a"], data, planes) if gmm else torch.as_tensor(data.domain_indices)
        means = code_means(landmarks[slice_volume], codes, spec.n_domains)
    if field is not None:  # L_field's targets: each code's mean field
        f_means = code_means(own[slice_volume].flatten(1), codes, spec.n_domains).view(-1, *field.grid)

    def batch(step: int) -> dict[str, torch.Tensor]:
        items = []
        for epoch, i in epoch_items(step, bs, len(pairs)):
            if pairs.epoch != epoch:
                pairs.set_epoch(epoch)
            items.append(pairs[i])
        a, b = default_collate(items)
        out = {"x_a": a["image"], "x_b": b["image"], "d_a": a["domain_index"], "d_b": b["domain_index"]}
        if curve is not None:  # the volumes' landmarks (inference maps a volume's slices with the volume's)
            out |= {"l_a": landmarks[a["index"]], "l_b": landmarks[b["index"]]}
        if field is not None:  # each slice's plane of its volume's own field (inference reads the same)
            out |= {"f_a": slice_fields(nets["G"], own[a["index"]], a["slice"])}
            out |= {"f_b": slice_fields(nets["G"], own[b["index"]], b["slice"])}
        return out

    def step_forward(b: dict[str, torch.Tensor]) -> DRITForward:
        """One pass per step; the D and G updates both read it, as DRIT++ does."""
        lm = (b["l_a"], b["l_b"]) if curve is not None else None
        fd = (b["f_a"], b["f_b"]) if field is not None else None
        return forward(nets, b["x_a"], b["x_b"], b["d_a"], b["d_b"], spec, gmm, lm, means, fd, f_means)

    def d_step(f: DRITForward):
        return drit_discriminator_loss(f, nets, cfg.drit.weights)

    def g_step(f: DRITForward):
        return drit_generator_loss(f, nets, cfg.drit.weights)

    vol = data.volumes
    meta = {
        "domains": domains,
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
    fp = fingerprint(
        [
            variant,
            meta["spec"],
            to_dict(cfg.drit),
            cfg.seed,
            domains,
            meta["slice_shape"],
            extra.get("component"),
            extra.get("gmvae_created"),
            manifest.select("train").digest(),  # another cohort (version, files) trains another model
        ]
    )
    g_nets = ["E_c", "G"] if gmm else ["E_c", "E_a", "G"]
    task = Task(
        variant,
        nets,
        g_nets=g_nets,
        batch=batch,
        g_step=g_step,
        d_nets=["D_s1", "D_s2", "D_c"],
        d_step=d_step,
        frozen=["E_a"] if gmm else [],
        fingerprint=fp,
        forward=step_forward,
        lr_scale={"G.curve": cfg.drit.curve_lr, "G.field": cfg.drit.curve_lr},
    )
    return task, {**meta, "dataset": data}


def export_model(task: Task, meta: dict[str, Any], path: str | Path) -> Path:
    """``gmm_drit.pt`` / ``drit.pt``: E^c, E^a (for GMM-DRIT the whole GM-VAE, so p(z|y) travels too) and G.

    Args:
        task, meta: what :func:`build_task` returned (the task after ``fit``).
        path: where to write the model file (atomically, verified).
    """
    return export_payload(task, meta, path, ["E_c", "E_a", "G"])
