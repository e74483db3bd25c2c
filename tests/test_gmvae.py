"""GM-VAE (GMM-DRIT stage 1): nets, L_GMVAE terms, clustering metrics, training and its model file."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import harmlib
from harmlib.checkpoint import CheckpointError, save_checkpoint
from harmlib.data import read_manifest
from harmlib.data.manifest import Manifest
from harmlib.data.synthetic import write_cohort
from harmlib.evaluation.clustering import cluster_accuracy, clustering_scores, match_clusters, pca_2d
from harmlib.losses.gmvae import categorical_kl, gaussian_kl, gmvae_loss, reconstruction_bce
from harmlib.models.gmvae import GMVAE, GMVAESpec, temperature
from harmlib.train.gmvae import build_task, export_model, load_gmvae
from harmlib.train.loop import fit

TINY = {"gmvae.width": 4, "gmvae.hidden": 16, "gmvae.gaussian_size": 8, "gmvae.train.batch_size": 8, "gmvae.train.log_every": 1,
        "runtime.amp": "none", "synth.n_train_per_site": 2, "synth.n_test_per_site": 1, "synth.n_age_per_site": 1, "synth.n_ad_per_site": 1}


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
    assert torch.isfinite(loss) and set(terms) == {"rec", "gauss", "cat"}
    assert math.isclose(loss.item(), 0.7 * terms["rec"] + 2.0 * terms["gauss"] + 1.0 * terms["cat"], rel_tol=1e-4)


def test_clustering_metrics_on_known_values():
    true = np.array([0, 0, 1, 1, 2, 2])
    perm = np.array([2, 2, 0, 0, 1, 1])  # the same partition under other names
    assert clustering_scores(true, perm) == pytest.approx({"ACC": 1.0, "NMI": 1.0, "ARI": 1.0})
    assert match_clusters(true, perm) == {2: 0, 0: 1, 1: 2}
    merged = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_accuracy(true, merged) == pytest.approx(4 / 6)  # cluster 0 -> class 0 (2 right), 1 -> class 2 (2 right)
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
