"""GMM-DRIT and DRIT++ (paper 2): nets, losses, a few training steps, model files, slice-by-slice inference."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

import harmlib
from harmlib.checkpoint import CheckpointError, save_checkpoint
from harmlib.cli import main
from harmlib.data import DataError, fsl_grid_affine, read_manifest
from harmlib.data.manifest import Manifest
from harmlib.data.synthetic import write_cohort
from harmlib.drit import task as train_drit
from harmlib.drit.model import DRITSpec, build_drit
from harmlib.gmvae import task as train_gmvae
from harmlib.gmvae.model import GMVAE, GMVAESpec
from harmlib.harmonize import SliceHarmonizer, harmonize_array, harmonize_file, load_harmonizer, translate_slices
from harmlib.models.levers import Where
from harmlib.train.loop import fit

TINY = {
    "gmvae.width": 4,
    "gmvae.hidden": 16,
    "gmvae.gaussian_size": 8,
    "gmvae.train.batch_size": 8,
    "gmvae.train.iterations": 2,
    "drit.width": 4,
    "drit.attr_width": 4,
    "drit.d_width": 4,
    "drit.n_res": 1,
    "drit.d_layers": 2,
    "drit.train.batch_size": 2,
    "drit.train.iterations": 2,
    "drit.train.log_every": 1,
    "drit.train.snapshot_every": 1,
    "runtime.amp": "none",
    "synth.n_train_per_site": 2,
    "synth.n_test_per_site": 1,
    "synth.n_age_per_site": 1,
    "synth.n_ad_per_site": 1,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny cohort, a GM-VAE, and one GMM-DRIT and one DRIT++ model file trained for two steps."""
    root = tmp_path_factory.mktemp("drit")
    cfg = harmlib.load_config("tiny", TINY)
    man = read_manifest(write_cohort(cfg, root / "cohort", raw=False))
    task, meta = train_gmvae.build_task(cfg, man)
    fit(task, cfg.gmvae.train, cfg.runtime, root / "gmvae", seed=0)
    gmvae_path, _ = train_gmvae.export_model(task, meta, root / "models" / "gmvae.pt")
    out = {"cfg": cfg, "man": man, "gmvae": gmvae_path, "root": root}
    for variant in train_drit.VARIANTS:
        task, meta = train_drit.build_task(cfg, man, variant, gmvae_path)
        before = {k: {n: p.clone() for n, p in task.nets[k].state_dict().items()} for k in ("E_a", "E_c")}
        log = fit(task, cfg.drit.train, cfg.runtime, root / variant, seed=0)
        out[variant] = {
            "log": log,
            "task": task,
            "before": before,
            "path": train_drit.export_model(task, meta, root / "models" / f"{variant}.pt"),
        }
    return out


@pytest.mark.parametrize("gmm", [False, True])
def test_nets_and_generator_codes(gmm):
    k, nz = 3, (6 if gmm else 8)
    gmvae = GMVAE(GMVAESpec(size=(32, 32), n_components=k, gaussian_size=nz, width=4, hidden=8)) if gmm else None
    nets = build_drit(DRITSpec(n_domains=k, nz=nz, width=4, attr_width=4, d_width=4, n_res=1, d_layers=2), gmvae)
    x, c = torch.rand(2, 1, 32, 32) * 2 - 1, torch.eye(k)[:2]
    z_c = nets["E_c"](x)
    assert z_c.shape == (2, 16, 8, 8)
    z_a = nets["E_a"].attribute(x)[0] if gmm else nets["E_a"](x, c)[0]
    assert z_a.shape == (2, nz)
    y = nets["G"](z_c, z_a, c)
    assert y.shape == x.shape and y.abs().max() <= 1
    y_sf = nets["G"](z_c, torch.randn(2, nz), torch.zeros(2, k))  # scanner-free: c_sf = 0
    assert not torch.allclose(y, y_sf)
    adv, cls = nets["D_s1"](y)
    assert adv.shape[:2] == (2, 1) and cls.shape == (2, k) and nets["D_c"](z_c).shape == (2, k)
    assert all(not p.requires_grad for p in nets["E_a"].parameters()) == gmm


def test_training_steps_are_finite_and_e_a_is_frozen_only_in_gmm_drit(trained):
    for variant, g_terms in (("gmm_drit", set()), ("drit", {"kl", "lat"})):
        log = trained[variant]["log"]
        terms = {
            "d_adv1",
            "d_cls1",
            "d_adv2",
            "d_cls2",
            "d_content",
            "adv1",
            "cls1",
            "adv2",
            "cls2",
            "self_rec",
            "cc",
            "content_adv",
            "content_reg",
        } | g_terms
        assert terms <= set(log.columns) and np.isfinite(log[sorted(terms)].to_numpy()).all()
        task, before = trained[variant]["task"], trained[variant]["before"]
        e_a_same = all(torch.equal(before["E_a"][n], p) for n, p in task.nets["E_a"].state_dict().items())
        assert e_a_same == (variant == "gmm_drit")
        assert not all(torch.equal(before["E_c"][n], p) for n, p in task.nets["E_c"].state_dict().items())
    assert "kl" not in trained["gmm_drit"]["log"].columns


def _nifti(path, data, affine):
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.header["descrip"] = b"test volume"
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("variant", ["gmm_drit", "drit"])
def test_volume_harmonized_slice_by_slice_keeps_grid_and_header(trained, variant, tmp_path, brain_pair):
    x2, _, _ = brain_pair  # the template at 2 mm on the FSL grid: not the model's 4 mm grid
    src = _nifti(tmp_path / "sub-01_T1w.nii.gz", x2, fsl_grid_affine(2))
    h = load_harmonizer(trained[variant]["path"])
    assert isinstance(h, SliceHarmonizer) and h.kind == variant and len(h.domains) == 5
    for target in ("scanner-free", "Guys", "TrioTim@SWU"):
        img = nib.load(str(harmonize_file(h, src, tmp_path / target / src.name, target, seed=1)))
        assert img.shape == x2.shape and np.allclose(img.affine, fsl_grid_affine(2))
        assert img.header["descrip"].tobytes().rstrip(b"\0") == b"test volume"
        data = img.get_fdata()
        assert np.isfinite(data).all() and (data[x2 == 0] == 0).all() and data.std() > 0
    a = harmonize_array(h, np.ones(h.shape, np.float32), "scanner-free", seed=3)
    assert np.array_equal(a, harmonize_array(h, np.ones(h.shape, np.float32), "scanner-free", seed=3))  # seeded
    with pytest.raises(DataError, match="trained on .* slices; resample it to the model's grid"):
        harmonize_array(h, np.ones((h.shape[0] + 2, h.shape[1], h.shape[2]), np.float32), "scanner-free")
    ref = torch.rand(1, 1, *[s + a + b for s, (a, b) in zip(h.slice_shape, h.pads)]) * 2 - 1
    if variant == "drit":  # a field-view GMM-DRIT refuses a reference slice (the field-view test)
        assert translate_slices(h, ref.repeat(2, 1, 1, 1), "Guys", reference=ref).shape == (2, 1, *ref.shape[2:])


@pytest.mark.parametrize("variant", ["gmm_drit", "drit"])
def test_self_reconstruction_uses_each_slices_own_attribute(trained, variant):
    h = load_harmonizer(trained[variant]["path"])
    shape = [s + a + b for s, (a, b) in zip(h.slice_shape, h.pads)]
    x = torch.rand(3, 1, *shape) * 2 - 1
    g = h.nets["levers"].field  # a model with the site field reads each slice's plane of its volume's field
    where = None if g is None else Where(None, torch.randn(3, *g.grid) * 0.05, torch.zeros(3), torch.ones(3))
    own = translate_slices(h, x, "self:Guys", where=where)
    assert own.shape == x.shape and torch.isfinite(own).all()
    assert not torch.allclose(own, translate_slices(h, x, "Guys", seed=0, where=where))  # not the site's sampled z^a
    with pytest.raises(DataError, match="unknown target site 'Mars'"):
        translate_slices(h, x, "self:Mars", where=where)


def test_a_field_view_gmm_drit_reads_each_slices_field_plane_not_the_slice(trained, tmp_path):
    """GMM-DRIT on a field-view GM-VAE (the tiny and cpu profiles): a slice's own z^a comes from its plane of its
    volume's field and the volume's stored scale, whatever the slice's intensities; one reference slice carries no field, so it is refused; a
    GM-VAE that read another field than stage 2's G moves is refused with the fix."""
    from harmlib.drit.harmonizer import own_attribute

    cfg = trained["cfg"]
    assert cfg.gmvae.view == "field"
    h = load_harmonizer(trained["gmm_drit"]["path"])
    shape = [s + a + b for s, (a, b) in zip(h.slice_shape, h.pads)]
    g = h.nets["levers"].field
    x = torch.rand(3, 1, *shape) * 2 - 1
    planes = torch.randn(3, g.grid[0], g.grid[2]) * 0.05
    c = h.code("Guys", 3)
    scale = torch.full((3,), h.nets["E_a"].spec.scale_ref)
    z = own_attribute(h, x, c, planes, scale)
    assert torch.allclose(z, own_attribute(h, torch.rand_like(x), c, planes, scale))
    assert not torch.allclose(z, own_attribute(h, x, c, -planes, scale))
    assert not torch.allclose(z, own_attribute(h, x, c, planes, scale * 1.2))  # and its volume's stored scale
    with pytest.raises(DataError, match="one reference slice does not carry"):
        translate_slices(h, x, "Guys", reference=x[0])
    with pytest.raises(CheckpointError, match=r"reads site-field planes .* re-run the GM-VAE pretraining"):
        other = cfg.replace({"drit.site_field_mm": 30, "gmvae.field_mm": 30})  # a profile consistent in itself
        train_drit.build_task(other, trained["man"], "gmm_drit", trained["gmvae"])  # and a GM-VAE read at 24 mm


@pytest.mark.parametrize("variant", ["gmm_drit", "drit"])
def test_snapshots_of_a_2d_model_feed_the_convergence_table(trained, variant):
    from harmlib.data.synthetic import TARGET_A, TARGET_B
    from harmlib.evaluation.gate import convergence
    from harmlib.evaluation.snapshots import snapshot_slice_harmonizers

    snaps = snapshot_slice_harmonizers(trained["root"] / variant / "snapshots", trained[variant]["path"])
    assert sorted(snaps) == [0, 1, 2]
    targets = {"A": TARGET_A.domain, "B": TARGET_B.domain}
    conv = convergence({k: snaps[k] for k in (0, 2)}, trained["man"], targets, n_test=1, reconstruction_sites=targets)
    assert list(conv.step) == [0, 2] and conv["reconstruction SSIM"].between(-1, 1).all()
    # each point is its snapshot's nets (E^c, G from the snapshot, the rest from the model file), not the final model
    assert conv.loc[0, "SSIM to truth -> A"] != conv.loc[1, "SSIM to truth -> A"]
    reads_a = lambda vols: [TARGET_A.domain] * len(vols)  # noqa: E731 - a classifier that always says A
    conv = convergence(
        {0: snaps[0]}, trained["man"], targets, n_test=1, reconstruction_sites=targets, classifier=reads_a
    )
    assert conv.loc[0, "translation accuracy"] == 0.5  # right for every output harmonized to A, wrong for B


def test_cli_refusals_and_listing(trained, tmp_path, capsys):
    path = trained["gmm_drit"]["path"]
    x, aff = harmlib.data.mni_t1(4)
    src = _nifti(tmp_path / "in.nii.gz", x, aff)
    assert (
        main(
            ["harmonize", str(src), "--model", str(path), "--target", "scanner-free", "--out-dir", str(tmp_path / "o")]
        )
        == 0
    )
    assert (
        main(["harmonize", str(src), "--model", str(path), "--target", "Mars", "--out-dir", str(tmp_path / "o2")]) == 1
    )
    err = capsys.readouterr().err
    assert "unknown target site 'Mars'; known: Gyroscan Intera@Guys" in err and "scanner-free" in err
    assert not list((tmp_path / "o2").glob("*.nii.gz"))
    nan = x.copy()
    nan[10, 10, 10] = np.nan
    bad = _nifti(tmp_path / "nan.nii.gz", nan, aff)
    assert (
        main(
            ["harmonize", str(bad), "--model", str(path), "--target", "scanner-free", "--out-dir", str(tmp_path / "o3")]
        )
        == 1
    )
    assert "NaN" in capsys.readouterr().err and not (tmp_path / "o3" / "nan.nii.gz").exists()
    assert main(["models", "--runs", str(path.parents[2])]) == 0
    out = capsys.readouterr().out
    assert "kind=gmm_drit" in out and "kind=drit" in out and "kind=gmvae" in out


def test_bad_checkpoints_and_k_mismatch(trained, tmp_path):
    cfg, man = trained["cfg"], trained["man"]
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(trained["drit"]["path"].read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_harmonizer(corrupt)
    with pytest.raises(
        CheckpointError, match="a 'gmvae' checkpoint, but this needs one of: ssim_harmonizer, gmm_drit, drit"
    ):
        load_harmonizer(trained["gmvae"])
    with pytest.raises(CheckpointError, match="a 'drit' checkpoint, but this needs one of: gmvae"):
        train_drit.build_task(cfg, man, "gmm_drit", trained["drit"]["path"])
    fewer = Manifest(man.df[man.df["domain"] != man.domains("train")[0]].reset_index(drop=True), man.root)
    with pytest.raises(CheckpointError, match="K=5 components .* 4 training domains .* re-run the GM-VAE pretraining"):
        train_drit.build_task(cfg, fewer, "gmm_drit", trained["gmvae"])
    with pytest.raises(ValueError, match="needs the pretrained GM-VAE"):
        train_drit.build_task(cfg, man, "gmm_drit")
    with pytest.raises(ValueError, match="unknown DRIT variant"):
        train_drit.build_task(cfg, man, "munit")
    torch.save({"weights": 1}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a harmlib checkpoint"):
        load_harmonizer(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"empty.pt: a 'drit' model file without weights \('state'\)"):
        load_harmonizer(save_checkpoint(tmp_path / "empty.pt", {"kind": "drit"}))
    with pytest.raises(CheckpointError, match="partial.pt: an incomplete or inconsistent 'drit' model file"):
        load_harmonizer(save_checkpoint(tmp_path / "partial.pt", {"kind": "drit", "state": {"G": {}}}))


def test_residual_generator_is_the_identity_at_init_and_needs_x():
    """drit.residual: levers(x) + G(z^c, z^a, c) = x + delta with delta zero at step 0, for every code."""
    from harmlib.drit.model import generate

    k, nz = 3, 8
    nets = build_drit(DRITSpec(n_domains=k, nz=nz, width=4, attr_width=4, d_width=4, n_res=1, residual=True))
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    z_c = nets["E_c"](x)
    for c in (torch.eye(k)[:2], torch.zeros(2, k)):
        assert torch.equal(generate(nets, z_c, torch.randn(2, nz), c, x), x)
    with pytest.raises(ValueError, match="drit.residual"):
        generate(nets, z_c, torch.randn(2, nz), torch.eye(k)[:2])


def test_a_2d_landmark_curve_needs_a_residual_generator_and_l_hist_needs_the_curve():
    with pytest.raises(ValueError, match="drit.landmark_curve"):
        harmlib.load_config("tiny", {"drit.residual": False, "drit.landmark_curve": True})
    with pytest.raises(ValueError, match="drit.weights.hist"):
        harmlib.load_config("tiny", {"drit.landmark_curve": False, "drit.weights.hist": 1.0})
    with pytest.raises(ValueError, match="drit.curve_lr"):
        harmlib.load_config("tiny", {"drit.curve_lr": 0})


def test_2d_curve_maps_every_slice_with_its_volumes_landmarks_at_init():
    """drit.landmark_curve: at step 0 G = curve(x) + 0 puts the volume's landmarks on the cohort standard, so the
    slices of one volume, mapped with the volume's landmarks, are the slices of the whole volume mapped."""
    from harmlib.drit.model import generate
    from harmlib.intensity import brain_landmarks, piecewise_linear

    k, nz = 3, 8
    spec = DRITSpec(n_domains=k, nz=nz, width=4, attr_width=4, d_width=4, n_res=1, residual=True, landmark_curve=True)
    nets = build_drit(spec)
    curve = nets["levers"].curve
    standard = torch.linspace(-0.6, 0.8, len(curve.percentiles))
    curve.set_standard(standard)
    vol = torch.rand(1, 1, 16, 32, 32) * 2 - 1  # (1, 1, Y, X, Z): 16 coronal planes
    lm = brain_landmarks(vol, curve.percentiles)
    whole = piecewise_linear(vol, lm, standard[None])
    x = vol[0, 0, :, None]  # (16, 1, X, Z): one item per plane
    codes = torch.eye(k)[torch.arange(16) % k]
    y = generate(nets, nets["E_c"](x), torch.randn(16, nz), codes, x, Where(lm.expand(16, -1)))
    assert torch.allclose(y[:, 0], whole[0, 0], atol=1e-6)
    own = generate(nets, nets["E_c"](x[:1]), torch.randn(1, nz), torch.eye(k)[:1], x[:1])  # no where: its own
    brain = x[0] > x[0].mean()  # the slice's brain, where its own landmarks were read
    assert torch.allclose(torch.quantile(own[0][brain], curve.percentiles / 100), standard, atol=0.02)


def test_code_means_keep_the_cohort_mean_for_an_empty_code():
    lm = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    means = train_drit.code_means(lm, torch.tensor([0, 0, 2]), 3)
    assert torch.equal(means, torch.tensor([[1.0, 2.0], [2.0, 3.0], [4.0, 5.0]]))


@pytest.mark.parametrize("variant", ["gmm_drit", "drit"])
def test_a_2d_batch_carries_its_volumes_landmarks_and_l_hist_reads_coded_translations(trained, variant):
    """Each slice of a batch carries its whole volume's landmarks (read once in build_task); L_hist compares
    the encoded translations (and DRIT++'s random ones, which have the partner's code) with their code's mean
    landmarks; GMM-DRIT's scanner-free translations have no code and no L_hist term."""
    from harmlib.data.datasets import array_landmarks

    cfg = trained["cfg"]
    assert cfg.drit.landmark_curve and cfg.drit.weights.hist > 0  # the tiny profile trains the curve
    task, meta = train_drit.build_task(cfg, trained["man"], variant, trained["gmvae"])
    vols = meta["dataset"].volumes
    p = task.nets["levers"].curve.percentiles
    per_volume = torch.cat([array_landmarks(vols.normalized(i)[0], p) for i in range(len(vols))])
    b = task.batch(0)
    for rows in (b.where_a.landmarks, b.where_b.landmarks):
        assert all(any(torch.equal(r, v) for v in per_volume) for r in rows)
    f = task.forward(b)
    n = b.x_a.shape[0]
    assert f.hist_pred.shape == f.hist_target.shape == (2 * n if variant == "gmm_drit" else 4 * n, per_volume.shape[1])
    assert torch.allclose(f.hist_pred, per_volume.mean(0).expand_as(f.hist_pred))  # step 0: the cohort's standard
    assert "hist" in trained[variant]["log"].columns


def test_a_constant_image_has_landmarks():
    """A volume with no voxel above its mean (all equal) is its own foreground, not an empty quantile."""
    from harmlib.intensity import LANDMARK_PERCENTILES, brain_landmarks

    lm = brain_landmarks(torch.full((1, 1, 4, 4, 4), 0.3), torch.tensor(LANDMARK_PERCENTILES))
    assert torch.allclose(lm, torch.full((1, len(LANDMARK_PERCENTILES)), 0.3))


def test_paper2_real_slices_are_the_training_slices_without_padding_in_unit_range(trained):
    """The slices every thesis table compares: [0, 1], the pads the models were trained with cropped."""
    from harmlib.evaluation.paper2 import real_slices
    from harmlib.models.blocks import pad_multiple

    cfg = trained["cfg"]
    data = train_gmvae.slice_dataset(trained["man"], cfg.drit.slices, trained["man"].domains("train"), pad_multiple(2))
    x, dom = real_slices(data)
    assert x.shape == (len(data), *data.shape) and x.min() >= 0 and x.max() <= 1
    first = data[0]["image"][0].numpy()
    (top, _), (left, _) = data.pads
    assert np.allclose(x[0], np.clip((first[top : top + data.shape[0], left : left + data.shape[1]] + 1) / 2, 0, 1))
    assert list(dom) == list(data.domain_indices)


def test_the_2d_site_field_on_coronal_slices_is_the_3d_field_on_the_volume():
    """drit.site_field_mm: each slice, moved with its plane of its volume's own field at its coronal position, is
    the coronal plane of the whole volume moved by the 3D field (trilinear = linear along Y, then bilinear)."""
    from harmlib.models.levers import SiteField

    torch.manual_seed(0)
    vol = torch.where(torch.rand(1, 1, 20, 26, 18) > 0.3, torch.rand(1, 1, 20, 26, 18) * 1.6 - 0.6, -1.0)
    field = SiteField(style_dim=4, hidden=8, shape=tuple(vol.shape[2:]), sigma=4.5)  # a grid of 3 voxels
    logs, ok = log_lowpass_of(vol, field)
    field.set_cohort(torch.cat([logs, logs * 0.5]), torch.cat([ok, ok]))
    own = field.own(logs, ok)
    torch.nn.init.normal_(field.mlp.net[-1].weight, std=0.05)
    style = torch.randn(1, 4)
    whole = field(vol, style, own)
    planes = torch.arange(vol.shape[3])
    at = field.coronal_position(planes)
    x = vol[0, 0].permute(1, 0, 2)[:, None]  # (Y, 1, X, Z)
    y = field.forward_slices(x, style.expand(len(planes), -1), own.expand(len(planes), -1, -1, -1), at)
    assert torch.allclose(y[:, 0], whole[0, 0].permute(1, 0, 2), atol=1e-5)


def log_lowpass_of(vol: torch.Tensor, field) -> tuple[torch.Tensor, torch.Tensor]:
    from harmlib.intensity import log_lowpass

    return log_lowpass(vol, field.sigma, field.step)


def test_a_2d_site_field_needs_the_curve_and_l_field_needs_the_field():
    with pytest.raises(ValueError, match="drit.site_field_mm"):
        harmlib.load_config("tiny", {"drit.landmark_curve": False, "drit.weights.hist": 0, "drit.site_field_mm": 24})
    with pytest.raises(ValueError, match="drit.weights.field"):
        harmlib.load_config("tiny", {"drit.site_field_mm": 0, "drit.weights.field": 1.0})


@pytest.mark.parametrize("variant", ["gmm_drit", "drit"])
def test_a_2d_batch_carries_its_slices_planes_of_their_volumes_fields(trained, variant):
    """Each slice of a batch carries its plane of its volume's own field (read once in build_task, as
    translate_dataset reads it at inference); L_field compares the coded translations' fields with their code's
    mean field, and at step 0 every style's field is the cohort's (0)."""
    from harmlib.drit.harmonizer import own_planes, volume_read, volume_where
    from harmlib.harmonize import load_harmonizer

    cfg = trained["cfg"]
    assert cfg.drit.site_field_mm and cfg.drit.weights.field > 0  # the tiny profile trains the field
    task, meta = train_drit.build_task(cfg, trained["man"], variant, trained["gmvae"])
    b = task.batch(0)
    levers = task.nets["levers"]
    own = levers.field.plane(b.where_a.field, b.where_a.region)
    assert own.shape == (len(b.x_a), levers.field.grid[0], levers.field.grid[2]) and b.where_a.region.shape == (
        len(b.x_a),
    )
    h = load_harmonizer(trained[variant]["path"])  # inference reads each slice's plane from its whole volume
    data = meta["dataset"]
    every = []
    for v in range(len(data.volumes)):
        vol, params = data.volumes.normalized(v)
        every.append(own_planes(h, volume_where(h, volume_read(h, vol, params["high"]), data.slices)))
    every = torch.cat(every)
    assert all(any(torch.allclose(o, e, atol=1e-5) for e in every) for o in own)
    highs = torch.tensor([data.volumes.normalized(v)[1]["high"] for v in range(len(data.volumes))])
    assert all(torch.isclose(highs, s).any() for s in b.where_a.scale)  # and its volume's stored scale
    f = task.forward(b)
    assert f.field_pred.shape[1:] == levers.field.grid and torch.allclose(f.field_pred, torch.zeros_like(f.field_pred))
    assert "field" in trained[variant]["log"].columns


@pytest.mark.parametrize("variant", ["gmm_drit", "drit"])
def test_slice_models_keep_a_finer_scans_resolution_and_detail(trained, brain_pair, variant):
    """A 2 mm scan through a 4 mm slice model: its change (curve, field planes, delta) is applied at 2 mm, so the
    output keeps the scan's fine detail; on the model's grid the change is exactly the slice-by-slice output."""
    from harmlib.evaluation.metrics import brain_mask, fine_detail
    from harmlib.harmonize import harmonize_volume, resample, to_grid

    h = load_harmonizer(trained[variant]["path"])
    torch.manual_seed(0)
    h.nets["G"].out.conv.weight.data.normal_(0, 0.005)  # a delta of a few hundredths, as a trained model's
    _, y, _ = brain_pair
    aff, target = fsl_grid_affine(2), h.domains[0]
    m = brain_mask(y)
    out = harmonize_volume(h, y, aff, target)
    on_grid = to_grid(y, aff, h.affine, h.shape)
    coarse = resample(h.harmonize(on_grid, target), h.affine, aff, y.shape)
    assert out.shape == y.shape and np.isfinite(out).all()
    native, blurred = fine_detail(out, m) / fine_detail(y, m), fine_detail(coarse, m) / fine_detail(y, m)
    assert native >= 0.9 and blurred < 0.75, (native, blurred)
    change = h.change(on_grid, target)
    assert change.knots is not None and change.log_field is not None and np.abs(change.delta).max() > 0.01
    assert np.allclose(change.apply(on_grid), h.harmonize(on_grid, target))


def test_a_translation_lands_on_its_codes_stored_scale(trained):
    """What a field-view GM-VAE re-encodes of a translation (the cross-cycle): the field the levers put it on and
    the stored scale of its code (the geometric mean of the training slices' with that code; scanner-free: the
    codes' mean), as a slice of the target's own volume would carry."""
    from harmlib.drit.task import lever_terms

    task, meta = train_drit.build_task(trained["cfg"], trained["man"], "gmm_drit", trained["gmvae"])
    means = task.forward.keywords["means"]
    k, nz, b = len(means.scale), meta["spec"]["nz"], task.batch(0)
    n = len(b.x_a)
    c = torch.zeros(2 * n, k)
    for i in range(1, 2 * n):
        c[i, i % k] = 1.0  # row 0 is scanner-free
    terms = lever_terms(task.nets, torch.randn(2 * n, nz), c, b.where_a, means)
    want = torch.stack([means.scale.log().mean().exp(), *[means.scale[i % k] for i in range(1, n)]])
    assert torch.allclose(terms.landing.scale, want, rtol=1e-5)
    assert (means.scale > 0).all() and means.scale.shape == (k,)
