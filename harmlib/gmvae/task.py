"""Stage 1 of GMM-DRIT: pretraining the GM-VAE on 2D coronal slices, as a :class:`~harmlib.train.loop.Task`.

One iteration: a batch of slices from every training domain (labeled and unlabeled volumes alike:
the GM-VAE needs no labels), one forward pass at the Gumbel-softmax temperature of that step
(annealed from ``temp_init`` to ``temp_min``), one Adam step on L_GMVAE with the KL warm-up factor of
that step (``gmvae.kl_warmup``). Both come from the step alone, so a resumed run is identical.
No discriminator. With ``gmvae.init_kmeans`` the mixture starts from k-means (K clusters, seeded) of the
training inputs: q(y|x) fitted to the clusters, the means of p(z|y) at their mean codes
(:func:`kmeans_prior_means`); this happens in :func:`build_task`, and a resumed run then loads its checkpoint's
weights over it.
The exported ``gmvae.pt`` carries the nets, K and the domains, and the cluster -> scanner matching
(Hungarian, on the training slices) that lets stage 2 and inference name a target scanner's component.

With ``gmvae.view: field`` x is each training slice's plane of its volume's site field (``GMVAE.view_input``),
read as stage 2's levers read it: the volumes padded as stage 2's slices (``gmvae.field_pad``), sigma
``gmvae.field_mm`` (the config checks both against the ``drit`` section), relative to the cohort's mean field;
with ``gmvae.scale_weight``, plus the weighted log of the volume's stored scale over the cohort's median (its
``scale_ref``, in the spec); the model file records that grid (``field``) and stage 2 refuses a GM-VAE read on another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harmlib.checkpoint import CheckpointError, load_checkpoint
from harmlib.config import Config, GMVAEArch, GMVAEConfig, SliceConfig, arch_fields, to_dict
from harmlib.data.datasets import Normalizer, SliceDataset, slab_shape, slice_volume_index, volume_slabs
from harmlib.data.manifest import Manifest
from harmlib.evaluation.clustering import clustering_scores, match_clusters
from harmlib.gmvae.losses import gmvae_loss, kl_warmup_scale
from harmlib.gmvae.model import GMVAE, KIND, GMVAESpec, temperature
from harmlib.models.blocks import pad_multiple
from harmlib.models.levers import SiteField
from harmlib.train.loop import Task, epoch_items, export_payload, fingerprint


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


def field_reader(cfg: Config, data: SliceDataset) -> SiteField:
    """The site field stage 2's levers read for ``data`` (sliced and padded as stage 2's slices): its grid and
    sigma. Only its reading is used here (its MLP stays untrained)."""
    voxel_mm = float(abs(data.volumes.affine(0)[0, 0]))
    return SiteField(1, 1, slab_shape(data), cfg.gmvae.field_mm / voxel_mm)


def view_inputs(
    cfg: Config, model: GMVAE, data: SliceDataset, scales: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """x of every slice of ``data`` in the model's view (N, 1, *size), and for the field view the grid it was
    read on (the model file's ``field``: sigma in mm, the padded volume's shape). The field view reads each volume
    once, for its field only (not its slices); ``scales``: the volumes' stored scales (:func:`volume_scales`), when
    the caller has them."""
    if model.spec.view == "slice":
        return torch.stack([data[i]["image"] for i in range(len(data))]), {}
    reader = field_reader(cfg, data)
    slabs, landmarks = volume_slabs(data)
    own = reader.fit_cohort(torch.cat(slabs), landmarks)
    volume, coronal = slice_volume_index(data)
    planes = reader.plane(own[volume], reader.coronal_position(coronal))
    scales = volume_scales(data) if scales is None and model.spec.scale_weight else scales
    return model.field_input(planes, None if scales is None else scales[volume]), {
        "sigma_mm": cfg.gmvae.field_mm,
        "volume": list(reader.shape),
    }


def volume_scales(data: SliceDataset) -> torch.Tensor:
    """(V,) each volume's stored intensity scale: the Normalizer's ``high``, which normalizing divides out."""
    return torch.tensor([data.volumes.normalized(v)[1]["high"] for v in range(len(data.volumes))])


def build_task(cfg: Config, manifest: Manifest) -> tuple[Task, dict[str, Any]]:
    """The GM-VAE task (K = the number of training domains) and the metadata its model file carries.

    Args:
        cfg: the run's config; its ``gmvae`` section is the spec and the objective's levers.
        manifest: the cohort; the training split's coronal slices are x (or, field view, their field planes).

    Returns:
        (task for ``train.loop.fit``, metadata with the slice ``dataset`` and the model's ``inputs``).
    """
    g = cfg.gmvae
    domains = manifest.domains("train")
    field = g.view == "field"  # the planes of stage 2's slab volumes, padded as its slices
    data = slice_dataset(manifest, g.slices, domains, g.field_pad if field else pad_multiple(g.n_down))
    size = (g.view_size,) * 2 if field else tuple(s + a + b for s, (a, b) in zip(data.shape, data.pads))
    scales = volume_scales(data) if field and g.scale_weight else None  # read once: the reference and the view
    spec = GMVAESpec(
        size=size,
        n_components=len(domains),
        view=g.view,
        view_scale=g.view_scale if field else 1.0,
        scale_weight=g.scale_weight if field else 0.0,
        scale_ref=1.0 if scales is None else float(np.median(scales.numpy())),
        **arch_fields(g, GMVAEArch),
    )
    torch.manual_seed(cfg.seed)
    nets = {"gmvae": GMVAE(spec)}
    inputs, grid = view_inputs(cfg, nets["gmvae"], data, scales)
    nets["gmvae"].init_output(inputs.mean(0)[0])
    if g.init_kmeans:
        kmeans_prior_means(nets["gmvae"], inputs, cfg.seed)
    meta = {
        "domains": domains,
        "spec": asdict(spec),
        "slices": asdict(g.slices),
        "pads": data.pads,
        "slice_shape": list(data.shape),
        "voxel_mm": float(abs(data.volumes.affine(0)[0, 0])),
        "field": grid,
        "config": to_dict(cfg),
    }
    fp = fingerprint(
        [meta["spec"], to_dict(g), cfg.seed, domains, meta["slice_shape"], grid, manifest.select("train").digest()]
    )
    batch = Batches(inputs, g.train.batch_size, cfg.seed, g.train.iterations, g.temp_init, g.temp_min, g.kl_warmup)
    task = Task(KIND, nets, g_nets=["gmvae"], batch=batch, g_step=partial(step, nets=nets, g=g), fingerprint=fp)
    return task, {**meta, "dataset": data, "inputs": inputs}


@dataclass
class Batches:
    """``batch(step)``: the slices of that step (consecutive items of per-epoch permutations), its Gumbel-softmax
    temperature and KL warm-up factor: all from the step alone, so a resumed run is identical."""

    inputs: torch.Tensor
    batch_size: int
    seed: int
    iterations: int
    temp_init: float
    temp_min: float
    kl_warmup: int

    def __call__(self, step: int) -> dict[str, Any]:
        return {
            "x": self.inputs[epoch_indices(len(self.inputs), self.batch_size, step, self.seed)],
            "tau": temperature(step, self.iterations, self.temp_init, self.temp_min),
            "kl_scale": kl_warmup_scale(step, self.kl_warmup),
        }


def step(b: dict[str, Any], nets: dict, g: GMVAEConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """One forward pass at the step's temperature and L_GMVAE with its KL warm-up factor."""
    f = nets["gmvae"](b["x"], b["tau"])
    loss, terms = gmvae_loss(
        f,
        b["x"],
        g.weights,
        likelihood=g.likelihood,
        sigma=g.sigma,
        free_bits_floor=g.free_bits,
        kl_scale=b["kl_scale"],
        balance=g.balance,
    )
    return loss, terms | {"temperature": b["tau"], "kl_scale": b["kl_scale"]}


@torch.no_grad()
def attribute_space(
    model: GMVAE, x: torch.Tensor, domains: Sequence[int], batch_size: int = 64
) -> dict[str, np.ndarray]:
    """E^a on every input ``x`` (N, 1, *size, in the model's view): z^a, the cluster (argmax q(y|x)), q(y|x), and
    the true domain index ``domains`` (N,)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    zs, probs = [], []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(dev)
        zs.append(model.attribute(xb)[0].float().cpu())
        probs.append(model.encoder.q_y(model.encoder.features(xb)).float().softmax(1).cpu())
    model.train(was_training)
    prob = torch.cat(probs).numpy()
    return {"z": torch.cat(zs).numpy(), "prob": prob, "cluster": prob.argmax(1), "domain": np.asarray(domains)}


def kmeans_prior_means(model: GMVAE, x: torch.Tensor, seed: int, steps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Seed the mixture from k-means of the inputs, as EM for a Gaussian mixture is seeded (scikit-learn's
    ``init_params='kmeans'``): K clusters (``seed``) of the inputs ``x`` (N, 1, *size) projected on their first 10
    principal components; q(y|x) fitted to those clusters (``steps`` Adam steps of cross-entropy on the encoder,
    no true labels), then the means of p(z|y) set to each cluster's mean code z^a. Returns the means
    (K, gaussian_size) and the clusters (N,).
    Which cluster becomes which component is arbitrary."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    flat = x.flatten(1).double().numpy()
    pcs = PCA(n_components=min(10, *flat.shape), random_state=seed).fit_transform(flat)
    k = model.spec.n_components
    clusters = torch.as_tensor(KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(pcs)).long()
    enc = model.encoder
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = F.cross_entropy(enc.q_y(enc.features(x)), clusters)
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = torch.from_numpy(attribute_space(model, x, clusters.numpy())["z"])
    centers = torch.stack([z[clusters == c].mean(0) if (clusters == c).any() else z.mean(0) for c in range(k)])
    model.set_prior_means(centers)
    return centers.numpy(), clusters.numpy()


def export_model(task: Task, meta: dict[str, Any], path: str | Path) -> tuple[Path, dict[str, float]]:
    """``gmvae.pt``: the GM-VAE, its K domains, the cluster <-> domain matching and E1's scores."""
    model = getattr(task.nets["gmvae"], "module", task.nets["gmvae"])
    space = attribute_space(model, meta["inputs"], meta["dataset"].domain_indices)
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
