"""Stage 1 of GMM-DRIT: pretraining the GM-VAE on 2D coronal slices, as a :class:`~harmlib.train.loop.Task`.

One iteration: a batch of slices from every training domain (labeled and unlabeled volumes alike:
the GM-VAE needs no labels), one forward pass at the Gumbel-softmax temperature of that step
(annealed from ``temp_init`` to ``temp_min``), one Adam step on L_GMVAE with the KL warm-up factor of
that step (``gmvae.kl_warmup``). Both come from the step alone, so a resumed run is identical.
No discriminator. With ``gmvae.init_kmeans`` the means of p(z|y) start at the k-means centres (K
clusters, seeded) of the initial encoder's codes of the training slices; this happens in
:func:`build_task`, and a resumed run then loads its checkpoint's weights over it.
The exported ``gmvae.pt`` carries the nets, K and the domains, and the cluster -> scanner matching
(Hungarian, on the training slices) that lets stage 2 and inference name a target scanner's component.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harmlib.checkpoint import CheckpointError, load_checkpoint
from harmlib.config import Config, GMVAEArch, SliceConfig, arch_fields, to_dict
from harmlib.data.datasets import Normalizer, SliceDataset
from harmlib.data.manifest import Manifest
from harmlib.evaluation.clustering import clustering_scores, match_clusters
from harmlib.gmvae.losses import gmvae_loss, kl_warmup_scale
from harmlib.gmvae.model import GMVAE, GMVAESpec, temperature
from harmlib.models.blocks import pad_multiple
from harmlib.train.loop import Task, epoch_items, export_payload, fingerprint

KIND = "gmvae"


def slice_dataset(
    manifest: Manifest,
    s: SliceConfig,
    domains: Sequence[str],
    pad: int,
    split: str = "train",
    role: str | None = None,
    allow_unknown: bool = False,
) -> SliceDataset:
    """Coronal slices of a split (both roles of the training split by default), padded to ``pad``."""
    return SliceDataset(
        manifest,
        split=split,
        role=role,
        domains=domains,
        n_slices=s.n_slices,
        spacing_mm=s.spacing_mm,
        centre_mm=s.centre_mm,
        normalizer=Normalizer(),
        pad_multiple=pad,
        allow_unknown=allow_unknown,
    )


def epoch_indices(n: int, bs: int, step: int, seed: int) -> list[int]:
    """The items of batch ``step``: consecutive slices of per-epoch permutations, so each slice comes once per epoch."""
    return [int(np.random.default_rng([seed, epoch]).permutation(n)[i]) for epoch, i in epoch_items(step, bs, n)]


def build_task(cfg: Config, manifest: Manifest) -> tuple[Task, dict[str, Any]]:
    """The GM-VAE task (K = the number of training domains) and the metadata its model file carries.

    Args:
        cfg: the run's config; its ``gmvae`` section is the spec and the objective's levers.
        manifest: the cohort; the training split's coronal slices are x.

    Returns:
        (task for ``train.loop.fit``, metadata with the slice ``dataset``).
    """
    g = cfg.gmvae
    domains = manifest.domains("train")
    data = slice_dataset(manifest, g.slices, domains, pad_multiple(g.n_down))
    size = tuple(s + a + b for s, (a, b) in zip(data.shape, data.pads))
    spec = GMVAESpec(size=size, n_components=len(domains), **arch_fields(g, GMVAEArch))
    torch.manual_seed(cfg.seed)
    nets = {"gmvae": GMVAE(spec)}
    nets["gmvae"].init_output(torch.stack([data[i]["image"][0] for i in range(len(data))]).mean(0))
    if g.init_kmeans:
        kmeans_prior_means(nets["gmvae"], data, cfg.seed)
    n, bs = len(data), g.train.batch_size

    def batch(step: int) -> dict[str, Any]:
        x = torch.stack([data[i]["image"] for i in epoch_indices(n, bs, step, cfg.seed)])
        return {
            "x": x,
            "tau": temperature(step, g.train.iterations, g.temp_init, g.temp_min),
            "kl_scale": kl_warmup_scale(step, g.kl_warmup),
        }

    def g_step(b: dict[str, Any]):
        f = nets["gmvae"](b["x"], b["tau"])
        loss, terms = gmvae_loss(
            f,
            b["x"],
            g.weights,
            likelihood=g.likelihood,
            sigma=g.sigma,
            free_bits_floor=g.free_bits,
            kl_scale=b["kl_scale"],
        )
        return loss, terms | {"temperature": b["tau"], "kl_scale": b["kl_scale"]}

    meta = {
        "domains": domains,
        "spec": asdict(spec),
        "slices": asdict(g.slices),
        "pads": data.pads,
        "slice_shape": list(data.shape),
        "voxel_mm": float(abs(data.volumes.affine(0)[0, 0])),
        "config": to_dict(cfg),
    }
    fp = fingerprint([meta["spec"], to_dict(g), cfg.seed, domains, meta["slice_shape"]])
    return Task(KIND, nets, g_nets=["gmvae"], batch=batch, g_step=g_step, fingerprint=fp), {**meta, "dataset": data}


@torch.no_grad()
def attribute_space(model: GMVAE, data: SliceDataset, batch_size: int = 64) -> dict[str, np.ndarray]:
    """E^a on every slice: z^a, the cluster (argmax q(y|x)), q(y|x), and the true domain index."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    zs, probs = [], []
    for start in range(0, len(data), batch_size):
        x = torch.stack([data[i]["image"] for i in range(start, min(start + batch_size, len(data)))]).to(dev)
        h = model.encoder.features(x)
        logits = model.encoder.q_y(h).float()
        zs.append(model.attribute(x)[0].float().cpu())
        probs.append(logits.softmax(1).cpu())
    model.train(was_training)
    prob = torch.cat(probs).numpy()
    return {
        "z": torch.cat(zs).numpy(),
        "prob": prob,
        "cluster": prob.argmax(1),
        "domain": np.asarray(data.domain_indices),
    }


def kmeans_prior_means(model: GMVAE, data: SliceDataset, seed: int) -> np.ndarray:
    """Set the means of p(z|y) to the k-means centres (K = the model's components, ``seed``) of E^a's codes
    z^a of ``data``; returns the centres (K, gaussian_size). Which centre becomes which component is arbitrary."""
    from sklearn.cluster import KMeans

    z = attribute_space(model, data)["z"].astype(np.float64)
    centers = KMeans(n_clusters=model.spec.n_components, n_init=10, random_state=seed).fit(z).cluster_centers_
    model.set_prior_means(torch.from_numpy(centers).float())
    return centers


def export_model(task: Task, meta: dict[str, Any], path: str | Path) -> tuple[Path, dict[str, float]]:
    """``gmvae.pt``: the GM-VAE, its K domains, the cluster <-> domain matching and E1's scores."""
    model = getattr(task.nets["gmvae"], "module", task.nets["gmvae"])
    space = attribute_space(model, meta["dataset"])
    k = len(meta["domains"])
    cluster_to_domain = match_clusters(space["domain"], space["cluster"], k)
    component = {meta["domains"][d]: c for c, d in cluster_to_domain.items()}
    scores = clustering_scores(space["domain"], space["cluster"])
    out = export_payload(task, meta, path, [], component=component, scores=scores, state=model.state_dict())
    return out, scores


def load_gmvae(path: str | Path, domains: Sequence[str] | None = None) -> tuple[GMVAE, dict[str, Any]]:
    """A pretrained GM-VAE (eval mode) and its model file; with ``domains``, its K must match them."""
    ck = load_checkpoint(path, (KIND,))
    spec = GMVAESpec(**{**ck["spec"], "size": tuple(ck["spec"]["size"])})
    if domains is not None and (spec.n_components != len(domains) or sorted(ck["domains"]) != sorted(domains)):
        raise CheckpointError(
            f"{path}: the GM-VAE has K={spec.n_components} components for domains {', '.join(ck['domains'])}, "
            f"but the data has {len(domains)} training domains ({', '.join(domains)}); re-run the GM-VAE pretraining (notebook 04) on this data"
        )
    model = GMVAE(spec)
    model.load_state_dict(ck["state"])
    return model.eval(), ck
