"""GM-VAE (GMM-DRIT stage 1): nets, L_GMVAE terms, clustering metrics, training and its model file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import harmlib
from harmlib.checkpoint import CheckpointError, save_checkpoint
from harmlib.config import ConfigError
from harmlib.data import read_manifest
from harmlib.data.manifest import Manifest
from harmlib.data.synthetic import write_cohort
from harmlib.evaluation.clustering import cluster_accuracy, clustering_scores, histogram_kmeans, match_clusters, pca_2d
from harmlib.gmvae.losses import (
    balance_kl,
    categorical_kl,
    free_bits,
    gaussian_kl,
    gmvae_loss,
    kl_warmup_scale,
    reconstruction_bce,
    reconstruction_gaussian,
)
from harmlib.gmvae.model import GMVAE, GMVAESpec, temperature
from harmlib.gmvae.task import attribute_space, build_task, export_model, load_gmvae
from harmlib.train.loop import fit

TINY = {
    "gmvae.width": 4,
    "gmvae.hidden": 16,
    "gmvae.gaussian_size": 8,
    "gmvae.train.batch_size": 8,
    "gmvae.train.log_every": 1,
    "runtime.amp": "none",
    "synth.n_train_per_site": 2,
    "synth.n_test_per_site": 1,
    "synth.n_age_per_site": 1,
    "synth.n_ad_per_site": 1,
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    cfg = harmlib.load_config("tiny", TINY)
    return cfg, read_manifest(write_cohort(cfg, tmp_path_factory.mktemp("cohort"), raw=False))


def test_gmvae_shapes_and_attribute_encoder():
    model = GMVAE(GMVAESpec(size=(48, 48), n_components=3, gaussian_size=8, width=4, hidden=16))
    x = torch.rand(5, 1, 48, 48) * 2 - 1
    f = model(x, tau=0.7)
    assert f["x_logits"].shape == x.shape and f["z"].shape == (5, 8) and f["logits"].shape == (5, 3)
    assert torch.allclose(f["y"].sum(1), torch.ones(5), atol=1e-5)  # a Gumbel-softmax sample lies on the simplex
    z_a, y = model.attribute(x)
    assert z_a.shape == (5, 8) and torch.equal(y.sum(1), torch.ones(5)) and set(y.unique().tolist()) <= {0.0, 1.0}
    assert model.component(2, 4).shape == (4, 8)
    with pytest.raises(ValueError, match="not divisible"):
        GMVAE(GMVAESpec(size=(46, 48), n_down=3))


def test_temperature_is_annealed_from_one_to_a_half():
    assert temperature(0, 100, 1.0, 0.5) == 1.0
    assert math.isclose(temperature(99, 100, 1.0, 0.5), 0.5)
    assert 0.5 < temperature(50, 100, 1.0, 0.5) < 1.0


def test_categorical_kl_uses_log_one_over_k():
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, 3.0]])
    q = logits.softmax(1).numpy()
    by_hand = np.mean([sum(p * math.log(p) for p in row) - math.log(1 / 5) for row in q])
    assert math.isclose(categorical_kl(logits).item(), by_hand, rel_tol=1e-5)
    assert abs(categorical_kl(torch.zeros(3, 5)).item()) < 1e-6  # uniform q: no penalty with K = 5 (not 10)
    assert abs(categorical_kl(torch.zeros(3, 10)).item()) < 1e-6


def test_gaussian_and_reconstruction_terms():
    z, mu, var = torch.randn(4, 6), torch.randn(4, 6), torch.rand(4, 6) + 0.5
    assert abs(gaussian_kl(z, mu, var, mu, var).item()) < 1e-6  # q(z|x,y) = p(z|y)
    x = torch.tensor([[[[-1.0, 1.0]]]])  # -> targets 0 and 1
    assert math.isclose(reconstruction_bce(torch.tensor([[[[-30.0, 30.0]]]]), x).item(), 0.0, abs_tol=1e-6)
    assert math.isclose(reconstruction_bce(torch.zeros(1, 1, 1, 2), x).item(), 2 * math.log(2), rel_tol=1e-6)
    model = GMVAE(GMVAESpec(size=(16, 16), n_components=2, gaussian_size=4, width=2, n_down=2, hidden=8))
    xb = torch.rand(3, 1, 16, 16) * 2 - 1
    loss, terms = gmvae_loss(model(xb, 1.0), xb, harmlib.config.GMVAEWeights())
    assert torch.isfinite(loss) and set(terms) == {"rec", "gauss", "cat", "balance"}
    assert math.isclose(loss.item(), 0.7 * terms["rec"] + 2.0 * terms["gauss"] + 1.0 * terms["cat"], rel_tol=1e-4)


def test_clustering_metrics_on_known_values():
    true = np.array([0, 0, 1, 1, 2, 2])
    perm = np.array([2, 2, 0, 0, 1, 1])  # the same partition under other names
    assert clustering_scores(true, perm) == pytest.approx({"ACC": 1.0, "NMI": 1.0, "ARI": 1.0})
    assert match_clusters(true, perm) == {2: 0, 0: 1, 1: 2}
    merged = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_accuracy(true, merged) == pytest.approx(
        4 / 6
    )  # cluster 0 -> class 0 (2 right), 1 -> class 2 (2 right)
    assert cluster_accuracy(np.array([0, 1, 0, 1]), np.array([0, 0, 0, 0])) == 0.5
    xy, ratio = pca_2d(np.random.default_rng(0).normal(size=(20, 5)))
    assert xy.shape == (20, 2) and ratio[0] >= ratio[1]


def test_training_export_and_the_k_check(cohort, tmp_path):
    cfg, man = cohort
    cfg = cfg.replace({"gmvae.train.iterations": 3})
    task, meta = build_task(cfg, man)
    before = {k: v.clone() for k, v in task.nets["gmvae"].state_dict().items()}
    log = fit(task, cfg.gmvae.train, cfg.runtime, tmp_path / "run", seed=0)
    assert list(log.step) == [1, 2, 3] and np.isfinite(log[["rec", "gauss", "cat"]].to_numpy()).all()
    assert log.temperature.iloc[0] == 1.0 and log.temperature.iloc[-1] == pytest.approx(0.5)
    assert any(not torch.equal(before[k], v) for k, v in task.nets["gmvae"].state_dict().items())
    path, scores = export_model(task, meta, tmp_path / "models" / "gmvae.pt")
    assert set(scores) == {"ACC", "NMI", "ARI"} and 0 <= scores["ACC"] <= 1
    model, ck = load_gmvae(path, man.domains("train"))
    assert model.spec.n_components == 5 and sorted(ck["component"]) == man.domains("train")
    assert sorted(ck["component"].values()) == list(range(5))
    with pytest.raises(CheckpointError, match=r"K=5 components .* but the data has 4 training domains"):
        load_gmvae(path, man.domains("train")[:4])
    with pytest.raises(CheckpointError, match="a 'drit' checkpoint, but this needs one of: gmvae"):
        load_gmvae(save_checkpoint(tmp_path / "drit.pt", {"kind": "drit"}))


def test_k_follows_the_training_domains(cohort):
    cfg, man = cohort
    keep = man.df["domain"] != man.domains("train")[0]
    fewer = Manifest(man.df[keep].reset_index(drop=True), man.root)
    task, meta = build_task(cfg, fewer)
    assert task.nets["gmvae"].spec.n_components == 4 == len(meta["domains"])


def test_gaussian_likelihood_by_hand():
    logits = torch.tensor([[[[0.0, 2.0]]], [[[-1.0, 0.5]]]])  # two images of two pixels
    x = torch.tensor([[[[-1.0, 0.5]]], [[[0.0, 1.0]]]])  # -> targets (0, 0.75) and (0.5, 1)
    sigma = 0.2
    per_image = []
    for lg, t in (((0.0, 2.0), (0.0, 0.75)), ((-1.0, 0.5), (0.5, 1.0))):
        per_image.append(
            sum(
                0.5 * math.log(2 * math.pi * sigma**2) + (1 / (1 + math.exp(-a)) - b) ** 2 / (2 * sigma**2)
                for a, b in zip(lg, t)
            )
        )
    assert math.isclose(reconstruction_gaussian(logits, x, sigma).item(), np.mean(per_image), rel_tol=1e-5)
    model = GMVAE(GMVAESpec(size=(16, 16), n_components=2, gaussian_size=4, width=2, n_down=2, hidden=8))
    xb = torch.rand(3, 1, 16, 16) * 2 - 1
    f = model(xb, 1.0)
    loss, terms = gmvae_loss(f, xb, harmlib.config.GMVAEWeights(), likelihood="gaussian", sigma=0.3)
    assert math.isclose(terms["rec"], reconstruction_gaussian(f["x_logits"], xb, 0.3).item(), rel_tol=1e-5)
    assert terms["rec"] != pytest.approx(reconstruction_bce(f["x_logits"], xb).item())


def test_free_bits_clamps_a_small_kl_and_leaves_a_large_one():
    small, large = torch.tensor(0.1, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    fs, fl = free_bits(small, 0.5), free_bits(large, 0.5)
    assert fs.item() == pytest.approx(0.5) and fl.item() == pytest.approx(2.0)
    (fs + fl).backward()
    assert small.grad.item() == 0.0 and large.grad.item() == 1.0  # below the floor, no push towards uniform
    assert free_bits(small, 0.0) is small
    # through L_GMVAE: a near-uniform q(y|x) (KL ~ 0) costs exactly the floor; a confident one its own KL
    model = GMVAE(GMVAESpec(size=(16, 16), n_components=3, gaussian_size=4, width=2, n_down=2, hidden=8))
    xb = torch.rand(4, 1, 16, 16) * 2 - 1
    f = model(xb, 1.0)
    w = harmlib.config.GMVAEWeights()
    for logits in (torch.zeros(4, 3), torch.tensor([[20.0, 0.0, 0.0]] * 4)):
        f = {**f, "logits": logits}
        base, t = gmvae_loss(f, xb, w)
        floored, _ = gmvae_loss(f, xb, w, free_bits_floor=0.5)
        assert floored.item() == pytest.approx(base.item() + w.cat * max(0.0, 0.5 - t["cat"]), rel=1e-5)
    assert t["cat"] > 0.5  # the confident case was above the floor, so unchanged


def test_balance_costs_an_emptied_component_and_not_a_confident_assignment():
    k = 4
    confident_spread = torch.eye(k).repeat(2, 1) * 30  # every x sure of its own component, all used
    one_taken = torch.tensor([[30.0, 0, 0, 0]] * 8)  # every x sure of component 0: three left empty
    assert balance_kl(confident_spread).item() == pytest.approx(0.0, abs=1e-6)
    assert balance_kl(one_taken).item() == pytest.approx(math.log(k), rel=1e-4)
    # L_cat cannot tell the two apart (each q(y|x) is as far from uniform); L_bal can
    assert categorical_kl(confident_spread).item() == pytest.approx(categorical_kl(one_taken).item(), rel=1e-4)
    # its gradient moves mass towards the empty components, and the loss adds it only when weighted
    logits = one_taken.clone().requires_grad_(True)
    balance_kl(logits / 30).backward()
    assert (logits.grad[:, 0] > 0).all() and (logits.grad[:, 1:] < 0).all()
    model = GMVAE(GMVAESpec(size=(16, 16), n_components=k, gaussian_size=4, width=2, n_down=2, hidden=8))
    xb = torch.rand(8, 1, 16, 16) * 2 - 1
    f = {**model(xb, 1.0), "logits": one_taken}
    w = harmlib.config.GMVAEWeights()
    base, t = gmvae_loss(f, xb, w)
    weighted, _ = gmvae_loss(f, xb, w, balance=10.0)
    assert weighted.item() == pytest.approx(base.item() + 10.0 * t["balance"], rel=1e-5)


def test_kl_warmup_weight_from_the_step(cohort):
    assert kl_warmup_scale(0, 100) == 0.0 and kl_warmup_scale(50, 100) == 0.5
    assert kl_warmup_scale(100, 100) == 1.0 and kl_warmup_scale(250, 100) == 1.0
    assert kl_warmup_scale(0, 0) == 1.0  # off: the thesis's weights from the first step
    cfg, man = cohort
    cfg = cfg.replace({"gmvae.train.iterations": 4, "gmvae.kl_warmup": 2})
    task, _ = build_task(cfg, man)
    assert [task.batch(s)["kl_scale"] for s in range(4)] == [0.0, 0.5, 1.0, 1.0]
    w, bal = cfg.gmvae.weights, cfg.gmvae.balance  # L_bal is no term of the ELBO: not under the warm-up
    loss, terms = task.g_step(task.batch(0))  # step 0: the KL terms weigh nothing
    assert terms["kl_scale"] == 0.0
    assert loss.item() == pytest.approx(w.rec * terms["rec"] + bal * terms["balance"], rel=1e-5)
    loss, terms = task.g_step(task.batch(1))
    assert loss.item() == pytest.approx(
        w.rec * terms["rec"] + 0.5 * (w.gauss * terms["gauss"] + w.cat * terms["cat"]) + bal * terms["balance"],
        rel=1e-4,
    )


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"gmvae.free_bits": -0.1}, "gmvae.free_bits"),
        ({"gmvae.kl_warmup": 5, "gmvae.train.iterations": 5}, "gmvae.kl_warmup"),
        ({"gmvae.kl_warmup": -1}, "gmvae.kl_warmup"),
        ({"gmvae.likelihood": "l2"}, "gmvae.likelihood"),
        ({"gmvae.sigma": 0.0}, "gmvae.sigma"),
        ({"gmvae.init_kmeans": "yes"}, "gmvae.init_kmeans"),
        ({"gmvae.view": "volume"}, "gmvae.view"),
        ({"gmvae.view_size": 36}, "gmvae.view_size"),  # not a multiple of 2**n_down = 8
        ({"gmvae.view_scale": 0.0}, "gmvae.view_scale"),
        ({"gmvae.scale_weight": -0.5}, "gmvae.scale_weight"),
        ({"gmvae.view": "field", "drit.site_field_mm": 0, "drit.weights.field": 0}, "gmvae.view"),
    ],
)
def test_gmvae_lever_errors_are_one_line_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"'{field}'") as err:
        harmlib.load_config("tiny", overrides)
    assert "\n" not in str(err.value)


def test_gmvae_lever_defaults_are_the_thesis_objective():
    g = harmlib.config.GMVAEConfig()
    assert (g.likelihood, g.free_bits, g.kl_warmup, g.init_kmeans, g.view) == ("bce", 0.0, 0, False, "slice")
    assert harmlib.load_config("paper").gmvae.view == "slice"
    assert harmlib.load_config("tiny", {"gmvae.kl_warmup": 4, "gmvae.train.iterations": 5}).gmvae.kl_warmup == 4


def test_kmeans_init_seeds_the_mixture_from_k_means_of_the_inputs(cohort):
    """gmvae.init_kmeans, as EM for a Gaussian mixture is seeded: q(y|x) fitted to k-means clusters of the inputs and
    the means of p(z|y) at each cluster's mean code; no true labels are read."""
    from harmlib.gmvae.task import kmeans_prior_means

    cfg, man = cohort
    plain, meta = build_task(cfg, man)
    task, _ = build_task(cfg.replace({"gmvae.init_kmeans": True}), man)
    a, b = plain.nets["gmvae"], task.nets["gmvae"]
    k = b.spec.n_components
    assert not torch.allclose(a.p_z_mean.weight, b.p_z_mean.weight)
    assert plain.fingerprint != task.fingerprint
    x = meta["inputs"]
    centers, clusters = kmeans_prior_means(a, x, cfg.seed)  # the same seeding on the plain model, to read its clusters
    assert len(set(clusters.tolist())) == k
    space = attribute_space(a, x, clusters)
    assert (space["cluster"] == clusters).mean() >= 0.9  # q(y|x) learned the clusters
    np.testing.assert_allclose(a.prior(torch.eye(k))[0].detach().numpy(), centers, rtol=1e-5, atol=1e-6)
    for c in range(k):  # each mean is its cluster's mean code
        np.testing.assert_allclose(centers[c], space["z"][clusters == c].mean(0), rtol=1e-4, atol=1e-5)


def test_levers_resume_to_the_same_weights(cohort, tmp_path):
    cfg, man = cohort
    cfg = cfg.replace(
        {
            "gmvae.train.iterations": 4,
            "gmvae.train.checkpoint_every": 2,
            "gmvae.kl_warmup": 3,
            "gmvae.init_kmeans": True,
            "gmvae.free_bits": 0.2,
            "gmvae.likelihood": "gaussian",
        }
    )
    full, _ = build_task(cfg, man)
    fit(full, cfg.gmvae.train, cfg.runtime, tmp_path / "full", seed=0)
    part, _ = build_task(cfg, man)
    fit(part, cfg.gmvae.train, cfg.runtime, tmp_path / "part", seed=0, stop_after=2)
    resumed, _ = build_task(cfg, man)
    log = fit(resumed, cfg.gmvae.train, cfg.runtime, tmp_path / "part", seed=0)
    assert list(log.kl_scale) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    for k, v in full.nets["gmvae"].state_dict().items():
        assert torch.allclose(v, resumed.nets["gmvae"].state_dict()[k]), k


def test_histogram_kmeans_separates_two_contrasts():
    rng = np.random.default_rng(0)
    slices = np.full((20, 1, 16, 16), -1.0)
    labels = np.repeat(["dark", "bright"], 10)
    for i, lab in enumerate(labels):
        centre = 0.0 if lab == "dark" else 0.6
        r = rng.integers(4, 7)  # brains of different sizes: the histogram must not follow the area
        slices[i, 0, 8 - r : 8 + r, 8 - r : 8 + r] = rng.normal(centre, 0.05, size=(2 * r, 2 * r))
    scores = histogram_kmeans(slices, labels, k=2, bins=32, seed=0)
    assert scores == pytest.approx({"ACC": 1.0, "NMI": 1.0, "ARI": 1.0})
    with pytest.raises(ValueError, match="20 slices but 19 labels"):
        histogram_kmeans(slices, labels[:19], k=2)


def test_the_field_view_reads_the_planes_stage_2s_site_field_reads(cohort):
    """gmvae.view: field: x of each training slice is its plane of its volume's own field, the plane the 2D models'
    G reads for that slice (a DRIT++ batch's), resampled to view_size and scaled into [-1, 1]; the model file
    records the field's grid; a field-view GM-VAE needs the planes."""
    from harmlib.drit.task import build_task as drit_task

    cfg, man = cohort
    cfg = cfg.replace({"gmvae.view": "field"})
    task, meta = build_task(cfg, man)
    m = task.nets["gmvae"]
    assert m.spec.view == "field" and m.spec.size == (cfg.gmvae.view_size,) * 2
    assert meta["inputs"].shape == (len(meta["dataset"]), 1, *m.spec.size)
    assert meta["inputs"].abs().max() <= 1 and meta["inputs"].std() > 0.01
    drit, dmeta = drit_task(cfg, man, "drit")
    field = drit.nets["levers"].field
    assert meta["field"] == {"sigma_mm": cfg.drit.site_field_mm, "volume": list(field.shape)}
    b = drit.batch(0)
    planes = field.plane(b.where_a.field, b.where_a.region)
    for x in m.view_input(b.x_a, planes, b.where_a.scale):  # each batch slice's view is one of the GM-VAE's inputs
        assert min(float((x - y).abs().max()) for y in meta["inputs"]) < 1e-5
    assert not torch.equal(meta["inputs"][0], meta["inputs"][-1])
    with pytest.raises(ValueError, match="pass planes"):
        m.view_input(b.x_a)
    plain, pmeta = build_task(cfg.replace({"gmvae.view": "slice"}), man)
    assert plain.fingerprint != task.fingerprint and pmeta["field"] == {}
    assert plain.nets["gmvae"].spec.scale_weight == 0  # the slice view reads the slices, whose scale is divided out


def test_the_field_view_reads_each_volumes_stored_scale_beside_its_planes(cohort):
    """gmvae.scale_weight: each volume's log stored scale (its Normalizer's high, which normalizing divides out)
    over the cohort's median, times the weight, is added to its planes: doubling a volume's scale moves its view by
    view_scale * weight * log 2 (before clipping); with weight 0 the scale is not read."""
    from harmlib.gmvae.task import volume_scales

    cfg, man = cohort
    w = 0.5
    task, meta = build_task(cfg.replace({"gmvae.view": "field", "gmvae.scale_weight": w}), man)
    m, data = task.nets["gmvae"], meta["dataset"]
    highs = [data.volumes.normalized(v)[1]["high"] for v in range(len(data.volumes))]
    assert torch.allclose(volume_scales(data), torch.tensor(highs))
    assert m.spec.scale_ref == pytest.approx(float(np.median(highs)), rel=1e-6)
    planes = torch.zeros(2, 5, 5)
    scale = torch.full((2,), m.spec.scale_ref)
    base, doubled = m.field_input(planes, scale), m.field_input(planes, 2 * scale)
    assert torch.allclose(base, torch.zeros_like(base)) and torch.allclose(
        doubled, torch.full_like(doubled, min(1.0, m.spec.view_scale * w * math.log(2)))
    )
    with pytest.raises(ValueError, match="pass scale"):
        m.field_input(planes)
    off, ometa = build_task(cfg.replace({"gmvae.view": "field", "gmvae.scale_weight": 0.0}), man)
    assert torch.equal(off.nets["gmvae"].field_input(planes), off.nets["gmvae"].field_input(planes, 2 * scale))
    assert not torch.equal(ometa["inputs"], meta["inputs"]) and off.fingerprint != task.fingerprint
