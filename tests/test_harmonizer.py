"""Paper 1's harmonizer: nets, losses, the shared loop's resume, inference and its CLI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

import harmlib
from harmlib.aguit.model import AGUITSpec, build_aguit, style_vector
from harmlib.aguit.task import build_task, export_model
from harmlib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from harmlib.cli import main
from harmlib.data import fsl_grid_affine, read_manifest
from harmlib.data.io import DataError
from harmlib.data.synthetic import write_cohort
from harmlib.harmonize import Harmonizer, Target, VolumeHarmonizer, harmonize_file, load_harmonizer, loaders
from harmlib.intensity import LANDMARK_PERCENTILES, brain_landmarks, grid_points, log_lowpass
from harmlib.models.levers import LandmarkCurve, SiteField
from harmlib.train.loop import _adam, fit

TINY_NET = {
    "harmonizer.width": 4,
    "harmonizer.style_width": 4,
    "harmonizer.d_width": 4,
    "harmonizer.n_res": 1,
    "harmonizer.mlp_hidden": 16,
    "harmonizer.d_layers": 2,
    "harmonizer.voxel_mm": 4,
    "harmonizer.train.batch_size": 2,
    "harmonizer.train.log_every": 1,
    "runtime.amp": "none",
    "synth.n_train_per_site": 2,
    "synth.n_test_per_site": 1,
    "synth.n_age_per_site": 1,
    "synth.n_ad_per_site": 1,
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    cfg = harmlib.load_config("tiny", TINY_NET)
    return cfg, read_manifest(write_cohort(cfg, out, raw=False))


@pytest.mark.parametrize("dim, shape", [(3, (2, 1, 16, 24, 16)), (2, (2, 1, 32, 32))])
def test_nets_in_2d_and_3d(dim, shape):
    nets = build_aguit(AGUITSpec(dim=dim, n_domains=3, width=4, style_width=4, d_width=4, n_res=1, mlp_hidden=8))
    x = torch.randn(shape)
    c, (n, logits) = nets["E_b"](x), nets["E_s"](x)
    y = nets["G"](c, style_vector(n, torch.tanh(logits)))
    assert y.shape == x.shape and y.abs().max() <= 1
    assert n.shape == (2, 8) and logits.shape == (2, 3)
    adv, lab = nets["D_x"](y)[0]
    assert adv.shape[1] == 1 and lab.shape == (2, 3)
    assert [t.shape for t in nets["D_b"](c)] == [(2, 1), (2, 3)]


def _weights(task) -> dict[str, torch.Tensor]:
    return {f"{k}.{n}": p.detach().clone() for k, m in task.nets.items() for n, p in m.state_dict().items()}


def test_resumed_training_reaches_the_same_weights(cohort, tmp_path):
    cfg, man = cohort
    cfg = cfg.replace({"harmonizer.train.iterations": 4, "harmonizer.train.checkpoint_every": 2})
    task, _ = build_task(cfg, man)
    log = fit(task, cfg.harmonizer.train, cfg.runtime, tmp_path / "straight", seed=cfg.seed)
    straight = _weights(task)
    assert list(log.step) == [1, 2, 3, 4]
    for k in (
        "rec",
        "cc",
        "struct",
        "lum",
        "cla_s",
        "adv_b",
        "pre_b",
        "adv_x",
        "pre_x_g",
        "lat",
        "kl",
        "d_adv_x",
        "d_pre_x",
        "d_adv_b",
        "d_pre_b",
    ):
        assert np.isfinite(log[k]).all(), k
    # A run killed after step 3 (its last checkpoint is step 2), then started again:
    task_a, _ = build_task(cfg, man)
    fit(task_a, cfg.harmonizer.train, cfg.runtime, tmp_path / "killed", seed=cfg.seed, stop_after=3)
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["step"] == 2
    task_b, _ = build_task(cfg, man)
    log_b = fit(task_b, cfg.harmonizer.train, cfg.runtime, tmp_path / "killed", seed=cfg.seed)
    assert list(log_b.step) == [1, 2, 3, 4]
    resumed = _weights(task_b)
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert not torch.equal(
        straight["G.out.conv.weight"], _weights(build_task(cfg, man)[0])["G.out.conv.weight"]
    )  # it did train


@pytest.fixture(scope="module")
def model_file(cohort, tmp_path_factory):
    cfg, man = cohort
    cfg = cfg.replace({"harmonizer.train.iterations": 1})
    task, meta = build_task(cfg, man)
    run = tmp_path_factory.mktemp("run")
    fit(task, cfg.harmonizer.train, cfg.runtime, run, seed=0)
    return export_model(task, meta, run / "models" / "ssim_harmonizer.pt")


def _nifti(path, data, affine):
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.header["descrip"] = b"test volume"
    nib.save(img, str(path))
    return path


def test_harmonize_keeps_grid_header_and_affine(model_file, tmp_path, brain_pair):
    x2, _, _ = brain_pair  # the MNI template at 2 mm, on its FSL grid: not the model's 4 mm grid
    src = _nifti(tmp_path / "sub-01_T1w.nii.gz", x2, fsl_grid_affine(2))
    before = src.read_bytes()
    h = load_harmonizer(model_file)
    assert h.domains == sorted(h.domains) and len(h.domains) == 5
    for target in ("TrioTim@SWU", "Guys", "agnostic"):
        out = harmonize_file(h, src, tmp_path / target / src.name, target)
        img = nib.load(str(out))
        assert img.shape == x2.shape and np.allclose(img.affine, fsl_grid_affine(2))
        assert img.header["descrip"].tobytes().rstrip(b"\0") == b"test volume"
        data = img.get_fdata()
        assert np.isfinite(data).all() and (data[x2 == 0] == 0).all() and data.std() > 0
    assert src.read_bytes() == before  # the input is never touched
    a = harmonize_file(h, src, tmp_path / "a1.nii.gz", "agnostic", seed=3)
    b = harmonize_file(h, src, tmp_path / "a2.nii.gz", "agnostic", seed=3)
    assert np.array_equal(nib.load(str(a)).get_fdata(), nib.load(str(b)).get_fdata())  # seeded


def test_cli_harmonize_and_its_refusals(model_file, tmp_path, capsys):
    x, aff = harmlib.data.mni_t1(4)
    src = _nifti(tmp_path / "in.nii.gz", x, aff)
    out_dir = tmp_path / "out"
    assert (
        main(["harmonize", str(src), "--model", str(model_file), "--target", "agnostic", "--out-dir", str(out_dir)])
        == 0
    )
    assert (out_dir / "in.nii.gz").is_file()
    # refuses to overwrite without --overwrite, and says so in one line
    assert (
        main(["harmonize", str(src), "--model", str(model_file), "--target", "agnostic", "--out-dir", str(out_dir)])
        == 1
    )
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "harmonize",
                str(src),
                "--model",
                str(model_file),
                "--target",
                "agnostic",
                "--out-dir",
                str(out_dir),
                "--overwrite",
            ]
        )
        == 0
    )
    # unknown site: the error lists the known ones, nothing is written
    assert (
        main(["harmonize", str(src), "--model", str(model_file), "--target", "Mars", "--out-dir", str(tmp_path / "o2")])
        == 1
    )
    err = capsys.readouterr().err
    assert "unknown target site 'Mars'; known: Gyroscan Intera@Guys" in err and not list(
        (tmp_path / "o2").glob("*.nii.gz")
    )
    # an output folder that cannot be created
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert (
        main(
            [
                "harmonize",
                str(src),
                "--model",
                str(model_file),
                "--target",
                "agnostic",
                "--out-dir",
                str(blocker / "sub"),
            ]
        )
        == 1
    )
    assert "cannot create the output folder" in capsys.readouterr().err
    assert main(["models", "--runs", str(model_file.parents[2])]) == 0
    assert "kind=ssim_harmonizer" in capsys.readouterr().out


def test_bad_inputs_and_checkpoints(model_file, tmp_path):
    h = load_harmonizer(model_file)
    x, aff = harmlib.data.mni_t1(4)
    oblique = aff.copy()
    oblique[:3, :3] = aff[:3, :3] @ np.array([[1, 0, 0], [0, 0.9, -0.44], [0, 0.44, 0.9]])
    nan = x.copy()
    nan[10, 10, 10] = np.nan
    cases = {
        _nifti(tmp_path / "oblique.nii.gz", x, oblique): "not aligned to MNI space",
        _nifti(tmp_path / "small.nii.gz", x[:20, :20, :20], aff): "not aligned to MNI space",
        _nifti(tmp_path / "nan.nii.gz", nan, aff): "NaN",
        _nifti(tmp_path / "4d.nii.gz", np.stack([x, x], -1), aff): "4D",
    }
    for path, match in cases.items():
        with pytest.raises(ValueError, match=match) as err:
            harmonize_file(h, path, tmp_path / "out" / path.name, "agnostic")
        assert path.name in str(err.value) and "\n" not in str(err.value)
        assert not (tmp_path / "out" / path.name).exists()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(model_file.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_harmonizer(corrupt)
    other = save_checkpoint(tmp_path / "gmvae.pt", {"kind": "gmvae"})
    with pytest.raises(CheckpointError, match="a 'gmvae' checkpoint, but this needs one of: ssim_harmonizer"):
        load_harmonizer(other)


def test_a_checkpoint_of_another_configuration_is_set_aside(cohort, tmp_path, capsys):
    cfg, man = cohort
    cfg = cfg.replace({"harmonizer.train.iterations": 1})
    fit(build_task(cfg, man)[0], cfg.harmonizer.train, cfg.runtime, tmp_path, seed=0)
    other = cfg.replace({"harmonizer.n_res": 2})  # another architecture: resuming would not even load
    log = fit(build_task(other, man)[0], other.harmonizer.train, other.runtime, tmp_path, seed=0)
    assert list(log.step) == [1] and (tmp_path / "checkpoint.pt.stale").is_file()
    assert "trained with another configuration" in capsys.readouterr().out


def test_an_all_negative_volume_is_refused_not_harmonized_to_zeros(model_file, tmp_path):
    x, aff = harmlib.data.mni_t1(4)
    src = _nifti(tmp_path / "neg.nii.gz", -x - 1.0, aff)
    with pytest.raises(DataError, match=r"neg.nii.gz: no voxel above 0"):
        harmonize_file(load_harmonizer(model_file), src, tmp_path / "out.nii.gz", "agnostic")
    assert not (tmp_path / "out.nii.gz").exists()


def test_snapshots_start_at_the_untrained_nets_and_feed_the_convergence_table(cohort, tmp_path):
    from harmlib.data.synthetic import TARGET_A, TARGET_B
    from harmlib.evaluation.gate import convergence
    from harmlib.evaluation.snapshots import snapshot_harmonizers, snapshot_steps

    cfg, man = cohort
    steps = {"harmonizer.train.iterations": 4, "harmonizer.train.snapshot_every": 2}
    no_field = {"harmonizer.site_field_mm": 0.0, "harmonizer.weights.field": 0.0}
    cfg = cfg.replace(steps | no_field | {"harmonizer.landmark_curve": False, "harmonizer.weights.hist": 0.0})
    task, meta = build_task(cfg, man)
    fit(task, cfg.harmonizer.train, cfg.runtime, tmp_path, seed=cfg.seed)
    assert list(snapshot_steps(tmp_path / "snapshots")) == [0, 2, 4]
    conv = convergence(
        snapshot_harmonizers(tmp_path / "snapshots", meta), man, {"A": TARGET_A.domain, "B": TARGET_B.domain}, n_test=2
    )
    assert list(conv.step) == [0, 2, 4] and conv["reconstruction SSIM"].between(0, 1).all()
    assert conv.loc[0, "reconstruction SSIM"] > 0.999  # the residual generator is the identity before training
    cfg = cfg.replace({"harmonizer.landmark_curve": True, "harmonizer.weights.hist": 10.0})
    task, meta = build_task(cfg, man)
    fit(task, cfg.harmonizer.train, cfg.runtime, tmp_path / "curve", seed=cfg.seed)
    conv = convergence(
        snapshot_harmonizers(tmp_path / "curve" / "snapshots", meta), man, {"A": TARGET_A.domain}, n_test=2
    )
    # with the landmark curve, step 0 maps every image onto the cohort's standard landmarks: close, not equal
    assert 0.98 < conv.loc[0, "reconstruction SSIM"] < 0.9999
    cfg = cfg.replace({"harmonizer.site_field_mm": 24.0, "harmonizer.weights.field": 10.0})
    task, meta = build_task(cfg, man)
    fit(task, cfg.harmonizer.train, cfg.runtime, tmp_path / "field", seed=cfg.seed)
    conv_field = convergence(
        snapshot_harmonizers(tmp_path / "field" / "snapshots", meta), man, {"A": TARGET_A.domain}, n_test=2
    )
    # and with the site field onto the cohort's mean field as well: a further change (on cohort v2, whose bias is
    # mostly each scan's own, a tiny one in either direction), not a redraw
    field0, curve0 = conv_field.loc[0, "reconstruction SSIM"], conv.loc[0, "reconstruction SSIM"]
    assert 0.95 < field0 < 0.9999 and field0 != curve0


def test_every_output_has_a_provenance_sidecar(model_file, tmp_path):
    import json

    from harmlib.data.io import file_digest

    x, aff = harmlib.data.mni_t1(4)
    src = _nifti(tmp_path / "in.nii.gz", x, aff)
    out_dir = tmp_path / "out"
    assert (
        main(
            [
                "harmonize",
                str(src),
                "--model",
                str(model_file),
                "--target",
                "Guys",
                "--out-dir",
                str(out_dir),
                "--seed",
                "2",
            ]
        )
        == 0
    )
    side = json.loads((out_dir / "in.json").read_text())
    assert side["input"] == {"path": str(src.resolve()), "sha256": file_digest(src)}
    assert side["model"]["sha256"] == file_digest(model_file) and side["model"]["path"] == str(model_file.resolve())
    assert (
        side["model"]["kind"] == "ssim_harmonizer"
        and side["model"]["profile"] == "tiny"
        and side["model"]["steps"] == 1
    )
    assert side["target"] == "Guys" and side["seed"] == 2 and side["harmlib"] == harmlib.__version__
    assert (
        side["torch"] == torch.__version__ and side["date"][:2] == "20" and side["Sources"] == [src.resolve().as_uri()]
    )


def test_bids_derivatives_layout(model_file, tmp_path):
    import json

    x, aff = harmlib.data.mni_t1(4)
    a = _nifti(tmp_path / "sub-01_ses-2_T1w.nii.gz", x, aff)
    b = _nifti(tmp_path / "scan b.nii.gz", x, aff)  # not a BIDS name: the label comes from the file name
    out_dir = tmp_path / "deriv"
    assert (
        main(
            [
                "harmonize",
                str(a),
                str(b),
                "--model",
                str(model_file),
                "--target",
                "TrioTim@SWU",
                "--out-dir",
                str(out_dir),
                "--bids",
            ]
        )
        == 0
    )
    first = out_dir / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_desc-harmonizedTrioTimSWU_T1w.nii.gz"
    second = out_dir / "sub-ScanB" / "anat" / "sub-ScanB_desc-harmonizedTrioTimSWU_T1w.nii.gz"
    for out in (first, second):
        assert out.is_file() and nib.load(str(out)).shape == x.shape
        assert json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())["target"] == "TrioTim@SWU"
    desc = json.loads((out_dir / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"] and desc["GeneratedBy"][0]["Name"] == "harmlib"
    assert desc["GeneratedBy"][0]["Version"] == harmlib.__version__
    # two inputs of one subject and session would collide: refused before anything is written
    again = tmp_path / "again"
    (tmp_path / "x").mkdir()
    c = _nifti(tmp_path / "x" / "sub-01_ses-2_T1w.nii.gz", x, aff)
    assert (
        main(
            [
                "harmonize",
                str(a),
                str(c),
                "--model",
                str(model_file),
                "--target",
                "Guys",
                "--out-dir",
                str(again),
                "--bids",
            ]
        )
        == 1
    )
    assert not again.exists()


def test_models_lists_profile_steps_and_quality_gate(model_file, capsys):
    import pandas as pd

    runs = model_file.parents[2]
    assert main(["models", "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "profile=tiny" in out and "steps=1" in out and "quality gate: no quality gate computed" in out
    tables = model_file.parents[1] / "tables"
    tables.mkdir(exist_ok=True)
    pd.DataFrame(
        [
            {
                "model": "ssim_harmonizer",
                "criterion": "reconstruction SSIM (held-out, over the brain)",
                "value": 0.5,
                "threshold": 0.95,
                "passed": False,
                "profile": "tiny",
            },
            {
                "model": "ssim_harmonizer",
                "criterion": "SSIM to truth -> A: before / after",
                "value": "0.899 / 0.800",
                "threshold": "",
                "passed": "",
                "profile": "tiny",
            },
        ]
    ).to_csv(tables / "gate_ssim_harmonizer.csv", index=False)
    assert main(["models", "--runs", str(runs)]) == 0
    assert (
        "model below its quality gate: reconstruction SSIM (held-out, over the brain) 0.500 < 0.95"
        in capsys.readouterr().out
    )


def test_a_site_named_without_scanner_is_a_valid_target(model_file):
    """Imported cohorts may name a domain by its site alone (no "scanner@site"): it is a target like any other."""
    from dataclasses import replace

    h = load_harmonizer(model_file)
    h = replace(h, domains=["SiteOne", *h.domains[1:]])
    assert h.label("SiteOne")[0, 0] == 1 and (h.label("SiteOne")[0, 1:] == -1).all()
    with pytest.raises(DataError, match="unknown target site 'Mars'"):
        h.label("Mars")


def test_targets_are_parsed_once_for_every_kind():
    """One parser and one scale rule for the 3D and the 2D models (harmlib.harmonize.targets)."""
    doms = ["Gyro@Guys", "Trio@SWU"]
    assert Target.parse("Guys", doms) == Target.parse("Gyro", doms) == Target("Gyro@Guys")
    assert Target.parse("agnostic", doms) == Target.parse("scanner-free", doms) == Target(None)
    assert Target.parse("self", doms) == Target(None, own=True)
    assert Target.parse("self:SWU", doms) == Target("Trio@SWU", own=True)
    with pytest.raises(DataError, match="unknown target site 'Mars'; known: Gyro@Guys, Trio@SWU or agnostic"):
        Target.parse("Mars", doms)
    scales = {"Gyro@Guys": 2.0, "Trio@SWU": 3.0, "*": 2.5}
    assert Target("Trio@SWU").scale(scales, 9.0) == 3.0  # the target site's units
    assert Target(None).scale(scales, 9.0) == 2.5  # site-free: all sites' median
    assert Target("Trio@SWU", own=True).scale(scales, 9.0) == 9.0  # a reconstruction keeps its own
    assert Target("Trio@SWU").scale(None, 9.0) == 9.0  # a model file without scales


def test_every_model_kind_loads_through_the_registry_as_a_harmonizer(model_file):
    assert set(loaders()) == {"ssim_harmonizer", "gmm_drit", "drit"}
    h = load_harmonizer(model_file)
    assert isinstance(h, Harmonizer) and isinstance(h, VolumeHarmonizer)
    with pytest.raises(DataError, match="unknown target site"):
        h.target("Mars")


def test_warm_up_steps_train_on_reconstruction_only(cohort):
    """train.warmup (HACA3's first epoch): L_rec^x and L_cla^s, no translation terms and no discriminator."""
    cfg, man = cohort
    task, _ = build_task(cfg, man)
    batch = task.batch(0)
    loss, terms = task.rec_step(batch)
    assert set(terms) == {"rec", "cla_s"} and torch.isfinite(loss)
    _, full = task.g_step(task.forward(batch) if task.forward else batch)
    assert {"lum", "struct", "adv_x", "cc"} <= set(full)


def test_the_landmark_curve_maps_an_image_onto_its_styles_landmarks():
    """harmonizer.landmark_curve: an image's own brain landmarks land on the style's, monotonely; at step 0
    every style's landmarks are the cohort standard; a crop mapped with its whole image's landmarks is the
    same crop of the mapped whole image."""
    torch.manual_seed(0)
    curve = LandmarkCurve(style_dim=5, hidden=8)
    standard = torch.linspace(-0.6, 0.95, len(LANDMARK_PERCENTILES))
    curve.set_standard(standard)
    x = torch.where(torch.rand(2, 1, 24, 24, 24) > 0.4, torch.rand(2, 1, 24, 24, 24) ** 2 * 1.8 - 0.8, -1.0)
    style = torch.randn(2, 5)
    assert torch.allclose(curve.style_landmarks(style), standard.expand(2, -1))
    torch.nn.init.normal_(curve.mlp.net[-1].weight, std=0.05)  # a trained curve: style-dependent landmarks
    y, want = curve(x, style), curve.style_landmarks(style)
    src = brain_landmarks(x, curve.percentiles)
    brain = [x[k] > x[k].mean() for k in range(2)]  # x's brain voxels, where its landmarks were read
    got = torch.stack([torch.quantile(y[k][brain[k]], curve.percentiles / 100) for k in range(2)])
    assert torch.allclose(got, want, atol=2e-3)
    assert (torch.diff(want, dim=1) >= 0).all()
    order = torch.argsort(x[0].flatten())
    assert (torch.diff(y[0].flatten()[order]) >= -1e-6).all()  # monotone: the curve never reorders voxels
    crop = (..., slice(4, 20), slice(0, 16), slice(8, 24))
    assert torch.allclose(curve(x[crop], style, src), y[crop])


def test_l_tex_reads_noise_and_detail_and_its_gradient_reaches_g(cohort):
    """L_tex (ours): the texture statistics grow with the noise and fall with smoothing, the term is 0 between an image
    and itself; with harmonizer.weights.tex > 0 its gradient reaches G's last conv and the G step logs it."""
    from harmlib.losses import l_tex, texture_stats

    gen = torch.Generator().manual_seed(0)
    brain = torch.zeros(2, 1, 20, 20, 20)
    brain[:, :, 3:17, 3:17, 3:17] = 0.5
    mask = (brain > 0).float()
    quiet, noisy = (brain + s * torch.randn(brain.shape, generator=gen) for s in (0.01, 0.05))
    assert (texture_stats(noisy, mask) > 3 * texture_stats(quiet, mask)).all()
    smooth = torch.nn.functional.avg_pool3d(noisy, 3, stride=1, padding=1, count_include_pad=False)
    assert (texture_stats(smooth, mask) < texture_stats(noisy, mask)).all()
    assert float(l_tex(noisy, mask, noisy, mask)) == pytest.approx(0.0, abs=1e-6)
    cfg, man = cohort
    task, _ = build_task(cfg.replace({"harmonizer.weights.tex": 1.0, "harmonizer.train.warmup": 0}), man)
    f = task.forward(task.batch(0))
    last = task.nets["G"].out.conv.weight  # zero at init (residual G): only the last conv's weights see a gradient
    (grad,) = torch.autograd.grad(l_tex(f.x_ul, f.mask_u, f.x_l, f.mask_l), last)
    assert float(grad.abs().sum()) > 0
    _, terms = task.g_step(f)
    assert terms["tex"] > 0


def test_a_landmark_curve_without_a_residual_generator_is_refused():
    with pytest.raises(ValueError, match="harmonizer.landmark_curve"):
        harmlib.load_config("tiny", {"harmonizer.residual": False, "harmonizer.landmark_curve": True})


def test_a_submodule_named_in_lr_scale_gets_its_own_learning_rate(cohort):
    cfg, man = cohort
    cfg = harmlib.load_config("tiny", TINY_NET | {"harmonizer.landmark_curve": True, "harmonizer.curve_lr": 10})
    task, _ = build_task(cfg, man)
    opt = _adam(task.nets, task.g_nets, cfg.harmonizer.train, task.lr_scale)
    curve = {id(p) for p in task.nets["levers"].parameters()}
    lrs = {g["lr"] for g in opt.param_groups if {id(p) for p in g["params"]} == curve}
    assert lrs == {10 * cfg.harmonizer.train.lr}
    n_all = sum(len(g["params"]) for g in opt.param_groups)
    assert n_all == sum(len(list(task.nets[k].parameters())) for k in task.g_nets)  # each parameter once


def test_a_crop_batch_carries_its_whole_volumes_landmarks(cohort):
    """harmonizer.landmark_curve on crops: x_u's landmarks are the whole volume's (as at inference), read
    once in build_task; x_l's are its site's mean landmarks (L_hist's target)."""
    from harmlib.aguit.task import spec_from_config
    from harmlib.data.datasets import Normalizer, VolumeDataset

    cfg, man = cohort
    cfg = cfg.replace({"harmonizer.voxel_mm": 0, "harmonizer.crop": 16})
    task, meta = build_task(cfg, man)
    pad = spec_from_config(cfg, len(meta["domains"])).pad_multiple
    kw = {"domains": meta["domains"], "normalizer": Normalizer(), "pad_multiple": pad}
    unlabeled = VolumeDataset(man, split="train", role="unlabeled", **kw)
    labeled = VolumeDataset(man, split="train", role="labeled", **kw)
    p = task.nets["levers"].curve.percentiles
    b = task.batch(1)
    assert b.x_u.shape[-1] == 16  # a crop
    lab, unl = _collated(task, 1)
    whole = torch.stack([brain_landmarks(unlabeled[int(i)]["image"][None], p)[0] for i in unl["index"]])
    assert torch.equal(b.where_u.landmarks, whole)
    site = [labeled[i] for i in range(len(labeled)) if labeled[i]["domain_index"] == int(lab["domain_index"][0])]
    mean = torch.stack([brain_landmarks(s["image"][None], p)[0] for s in site]).mean(0)
    assert torch.allclose(b.site_l.landmarks[0], mean)


def _collated(task, step: int) -> tuple[dict, dict]:
    """The (labeled, unlabeled) items behind batch ``step`` of a harmonizer task, collated (their indices)."""
    from harmlib.train.loop import step_items

    return step_items(task.batch.pairs, step, task.batch.batch_size)


def _smooth_volume(seed: int = 0) -> torch.Tensor:
    """(1, 1, 32, 36, 32): a brain-like blob of smooth tissue on a -1 background."""
    g = torch.Generator().manual_seed(seed)
    zz, yy, xx = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in (32, 36, 32)], indexing="ij")
    inside = (zz**2 + yy**2 + xx**2) < 0.7
    tissue = 0.2 + 0.5 * torch.rand(1, 1, 32, 36, 32, generator=g)
    return torch.where(inside, tissue, torch.full_like(tissue, -1.0))


def test_log_lowpass_reads_a_multiplicative_field_and_ignores_the_brains_edge():
    """A smooth multiplicative field on the brain's intensities comes back as its log on the coarse grid (the
    brain's edge does not darken it: normalized convolution), relative to the same brain without it."""
    x = _smooth_volume()
    zz = torch.linspace(-1, 1, 32)[None, None, :, None, None]
    v = (x + 1) / 2 * torch.exp(0.1 * zz)  # brighter towards the last slices
    logs0, ok = log_lowpass(x, 3.0, 2)
    logs1, ok1 = log_lowpass(2 * v - 1, 3.0, 2)
    assert torch.equal(ok, ok1) and ok.any()
    diff = (logs1 - logs0)[ok]
    grid_z = torch.linspace(-1, 1, 32)[grid_points(32, 2)]
    want = (0.1 * grid_z[None, :, None, None].expand_as(logs0))[ok]
    assert torch.corrcoef(torch.stack([diff, want]))[0, 1] > 0.99  # the field's shape, everywhere in the brain
    assert (diff.abs() <= want.abs() + 0.005).all()  # blurred by sigma 3 of 32 voxels, never exaggerated
    assert diff.std() > 0.6 * want.std()


def test_the_site_field_moves_an_images_field_to_the_styles_and_a_crop_is_the_crop_of_the_whole():
    """harmonizer.site_field_mm: at step 0 (Phi(s) = 0) an image whose field is the cohort's is unchanged; a
    trained style's field replaces the image's own; a crop mapped with its region is the crop of the whole."""
    torch.manual_seed(0)
    x = _smooth_volume().expand(2, -1, -1, -1, -1).clone()
    field = SiteField(style_dim=5, hidden=8, shape=tuple(x.shape[2:]), sigma=6.0)  # a grid of 4 voxels
    logs, ok = log_lowpass(x, field.sigma, field.step)
    field.set_cohort(logs, ok)
    own = field.own(logs, ok)
    style = torch.randn(2, 5)
    assert torch.allclose(own, torch.zeros_like(own)) and torch.allclose(field(x, style, own), x, atol=1e-6)
    gz = torch.linspace(-1, 1, field.grid[0])[:, None, None].expand(field.grid)
    with torch.no_grad():  # a trained field: brighter towards the last slices
        field.mlp.net[-1].bias.copy_((0.1 * gz).flatten())
    y = field(x, style, own)
    got, want = field.own(*log_lowpass(y, field.sigma, field.step)), field.style_field(style)
    inside = field.valid.expand_as(got)
    assert torch.corrcoef(torch.stack([got[inside], want[inside]]))[0, 1] > 0.98
    region = torch.tensor([[4, 0, 8], [4, 0, 8]])
    crop = (..., slice(4, 20), slice(0, 16), slice(8, 24))
    assert torch.allclose(field(x[crop], style, own, region), y[crop], atol=1e-6)


def test_a_site_field_needs_the_landmark_curve_and_l_field_needs_the_field():
    with pytest.raises(ValueError, match="harmonizer.site_field_mm"):
        harmlib.load_config(
            "tiny", {"harmonizer.landmark_curve": False, "harmonizer.weights.hist": 0, "harmonizer.site_field_mm": 24}
        )
    with pytest.raises(ValueError, match="harmonizer.weights.field"):
        harmlib.load_config("tiny", {"harmonizer.site_field_mm": 0, "harmonizer.weights.field": 10})


def test_a_crop_batch_carries_its_whole_volumes_field_and_inference_reads_the_same(cohort):
    """The site field on crops: x_u's own field is the whole volume's (as G reads it at inference), x_l's is
    its site's mean (L_field's target), the crop's region is in the batch; L_field is a G term."""
    cfg, man = cohort
    cfg = cfg.replace({"harmonizer.voxel_mm": 0, "harmonizer.crop": 16, "harmonizer.site_field_mm": 16})
    cfg = cfg.replace({"harmonizer.weights.field": 10.0})
    task, meta = build_task(cfg, man)
    levers = task.nets["levers"]
    b = task.batch(1)
    _, unl = _collated(task, 1)
    assert b.where_u.region.shape == (len(b.x_u), 3) and b.site_l.field.shape[1:] == levers.field.grid
    from harmlib.data.datasets import Normalizer, VolumeDataset

    ds = VolumeDataset(
        man,
        split="train",
        role="unlabeled",
        domains=meta["domains"],
        normalizer=Normalizer(),
        pad_multiple=AGUITSpec(**meta["spec"]).pad_multiple,
    )
    i = int(unl["index"][0])
    x = ds[i]["image"][None]
    whole = levers.read(x).field
    assert torch.allclose(whole, b.where_u.field[:1], atol=1e-5)
    _, terms = task.g_step(task.forward(task.batch(1)))
    assert "field" in terms and np.isfinite(terms["field"])


SCALE = 0.005  # a delta of a few hundredths: a trained model's order of magnitude


def _changed(model_file) -> VolumeHarmonizer:
    """The model with a G whose delta is far from zero (a one-step model's is nearly zero): a real low-resolution change."""
    h = load_harmonizer(model_file)
    torch.manual_seed(0)
    h.nets["G"].out.conv.weight.data.normal_(0, SCALE)
    return h


def test_a_finer_scan_keeps_its_resolution_and_detail(model_file, brain_pair):
    """A 2 mm scan through a 4 mm model: the output is a 2 mm image with the scan's fine detail; bringing the model's
    4 mm output back to 2 mm (the earlier inference) loses most of it."""
    from harmlib.evaluation.metrics import brain_mask, fine_detail
    from harmlib.harmonize import harmonize_volume, resample, to_grid

    _, y, _ = brain_pair
    aff = fsl_grid_affine(2)
    h = _changed(model_file)
    m = brain_mask(y)
    out = harmonize_volume(h, y, aff, "Guys")
    coarse = resample(h.harmonize(to_grid(y, aff, h.affine, h.shape), "Guys"), h.affine, aff, y.shape)
    assert out.shape == y.shape and np.isfinite(out).all()
    native, blurred = fine_detail(out, m) / fine_detail(y, m), fine_detail(coarse, m) / fine_detail(y, m)
    assert native >= 0.9 and blurred < 0.75, (native, blurred)
    # the same change: the native output's low frequencies are the model's output on its grid
    low = to_grid(out, aff, h.affine, h.shape)
    on_grid = h.harmonize(to_grid(y, aff, h.affine, h.shape), "Guys")
    mm = brain_mask(on_grid)
    assert np.corrcoef(low[mm], on_grid[mm])[0, 1] > 0.99


def test_on_the_models_grid_the_change_is_the_models_output(model_file):
    from harmlib.harmonize import harmonize_volume

    h = _changed(model_file)
    x, aff = harmlib.data.mni_t1(4)
    change = h.change(x, "TrioTim@SWU")
    assert change.knots is not None and change.log_field is not None and np.abs(change.delta).max() > 0.01
    assert np.array_equal(harmonize_volume(h, x, aff, "TrioTim@SWU"), change.apply(x))
    assert np.allclose(change.apply(x), h.harmonize(x, "TrioTim@SWU"))


def test_a_coarser_scan_is_harmonized_on_its_own_grid_with_a_note(model_file, tmp_path, capsys):
    from harmlib.data.mni import block_average
    from harmlib.harmonize import harmonize_volume, resolution_note

    x4, _ = harmlib.data.mni_t1(4)
    x8, aff8 = block_average(x4, 2), fsl_grid_affine(8)
    h = load_harmonizer(model_file)
    out = harmonize_volume(h, x8, aff8, "Guys")
    assert out.shape == x8.shape and np.isfinite(out).all() and out.std() > 0
    assert "8x8x8 mm are coarser than the model's 4 mm grid" in resolution_note(h, aff8, "in.nii.gz")
    assert resolution_note(h, fsl_grid_affine(2)) is None and resolution_note(h, fsl_grid_affine(4)) is None
    src = _nifti(tmp_path / "coarse.nii.gz", x8, aff8)
    args = ["harmonize", str(src), "--model", str(model_file), "--target", "Guys", "--out-dir", str(tmp_path / "o")]
    assert main(args) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "coarser" in line]
    assert len(err) == 1 and str(src) in err[0]
    assert nib.load(str(tmp_path / "o" / "coarse.nii.gz")).shape == x8.shape
