"""The catalogue of bad inputs and faults: each one is one line naming the file or option, a non-zero exit,
no traceback, the inputs unchanged and nothing half-written (the rules: README, "Bad input").

Every case builds its situation under ``tmp_path`` and returns the command line and a fragment the
message must contain. The command runs in-process through ``harmlib.cli.main``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import harmlib
from harmlib.cli import main
from harmlib.data import fsl_grid_affine

ROOT = Path(__file__).resolve().parents[1]
HEADER = "path,subject,session,dataset,scanner,site,domain,age,sex,diagnosis,split,role,truth_path"
ROW = "raw/a.nii.gz,s1,1,d,S,A,S@A,40,F,HC,train,labeled,"


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), fsl_grid_affine(4) if affine is None else affine), str(path))
    return path


def _brain(path: Path) -> Path:
    x, aff = harmlib.data.mni_t1(4)
    return _nifti(path, x, aff)


def _text(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _manifest(t: Path, rows: list[str] | None = None) -> Path:
    _brain(t / "raw" / "a.nii.gz")
    return _text(t / "manifest.csv", "\n".join([HEADER, *(rows if rows is not None else [ROW])]) + "\n")


def _truncated(t: Path) -> Path:
    man = _manifest(t)
    vol = t / "raw" / "a.nii.gz"
    vol.write_bytes(vol.read_bytes()[:300])
    return man


def _linked_out(t: Path) -> Path:
    """An output folder that is a link to the folder holding the input manifest (``ln -s raw out``)."""
    man = _manifest(t)
    (t / "out").symlink_to(man.parent, target_is_directory=True)
    return man


def _complex(path: Path) -> Path:
    x, aff = harmlib.data.mni_t1(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image((x + 1j * x).astype(np.complex64), aff), str(path))
    return path


def _rgb(path: Path) -> Path:
    x, aff = harmlib.data.mni_t1(4)
    v = np.clip(x / x.max() * 255, 0, 255).astype(np.uint8)
    rgb = np.zeros(x.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = v, v, v
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(rgb, aff), str(path))
    return path


def _coarse_box(path: Path) -> Path:
    """3x3x3 voxels of 60 mm around the MNI centre: MNI-aligned, but no brain."""
    aff = np.diag([60.0, 60.0, 60.0, 1.0])
    aff[:3, 3] = [-60.0, -78.0, -42.0]
    return _nifti(path, np.full((3, 3, 3), 100.0), aff)


def _nan_model(t: Path, model: Path) -> Path:
    from harmlib.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(model)
    ck["state"]["G"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in ck["state"]["G"].items()}
    return save_checkpoint(t / "nan.pt", {k: v for k, v in ck.items() if k != "format"})


def _stateless_model(t: Path, model: Path) -> Path:
    from harmlib.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(model)
    return save_checkpoint(t / "nostate.pt", {k: v for k, v in ck.items() if k not in ("format", "state")})


def _box_manifest(t: Path) -> Path:
    """A manifest whose volume is a uniform 80 mm box in a 120 mm field of view (no head in it)."""
    box = np.zeros((120, 120, 120), np.float32)
    box[20:100, 20:100, 20:100] = 500.0
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = -60.0
    _nifti(t / "raw" / "a.nii.gz", box, aff)
    return _text(t / "manifest.csv", "\n".join([HEADER, ROW]) + "\n")


def _unrelated_folder(t: Path) -> Path:
    _text(t / "mydata" / "manifest.csv", "my own study's table\n")
    return t / "mydata"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny harmonizer trained for one step (a real model file)."""
    from harmlib.aguit.task import build_task, export_model
    from harmlib.data import read_manifest
    from harmlib.data.synthetic import write_cohort
    from harmlib.train.loop import fit

    out = tmp_path_factory.mktemp("cohort")
    small = {
        "synth.n_train_per_site": 2,
        "synth.n_test_per_site": 1,
        "synth.n_age_per_site": 1,
        "synth.n_ad_per_site": 1,
        "harmonizer.train.iterations": 1,
        "harmonizer.train.snapshot_every": 0,
    }
    cfg = harmlib.load_config("tiny", small)
    task, meta = build_task(cfg, read_manifest(write_cohort(cfg, out, raw=False)))
    fit(task, cfg.harmonizer.train, cfg.runtime, out / "run", seed=0)
    return export_model(task, meta, out / "model.pt")


def _harmonize(t: Path, model: Path, *extra: str, inputs: list[Path] | None = None) -> list[str]:
    ins = inputs if inputs is not None else [_brain(t / "in" / "a.nii.gz")]
    return [
        "harmonize",
        *map(str, ins),
        "--model",
        str(model),
        "--target",
        "agnostic",
        "--out-dir",
        str(t / "out"),
        *extra,
    ]


Case = Callable[[Path, Path], tuple[list[str], str]]

CASES: dict[str, Case] = {
    # --- profiles and parameters (any subcommand that loads a profile) ---
    "unknown profile": lambda t, m: (["synth", "--profile", "nosuch"], "unknown profile 'nosuch'"),
    "missing profile file": lambda t, m: (["synth", "--profile", str(t / "none.yaml")], "none.yaml does not exist"),
    "empty profile": lambda t, m: (["synth", "--profile", str(_text(t / "p.yaml", ""))], "p.yaml is empty"),
    "profile is a YAML list": lambda t, m: (
        ["synth", "--profile", str(_text(t / "p.yaml", "- a\n- b\n"))],
        "p.yaml holds a YAML list",
    ),
    "profile not UTF-8": lambda t, m: (
        ["synth", "--profile", str(_text(t / "p.yaml", b"seed: \xff\xfe"))],
        "p.yaml is not UTF-8",
    ),
    "profile bad YAML": lambda t, m: (
        ["synth", "--profile", str(_text(t / "p.yaml", "seed: [1\n"))],
        "p.yaml is not valid YAML",
    ),
    "profile unknown field": lambda t, m: (
        ["synth", "--profile", str(_text(t / "p.yaml", "nosuch: 1\n"))],
        "unknown parameter 'nosuch'",
    ),
    "set malformed value": lambda t, m: (["synth", "--set", "seed=[1"], "seed=[1"),
    "set not key=value": lambda t, m: (["synth", "--set", "seed"], "override 'seed'"),
    "set unknown field": lambda t, m: (["synth", "--set", "nosuch=1"], "unknown parameter 'nosuch'"),
    "set wrong type": lambda t, m: (["synth", "--set", "ssim.gamma=abc"], "ssim.gamma"),
    "set count below 1": lambda t, m: (["synth", "--set", "synth.n_train_per_site=0"], "synth.n_train_per_site"),
    "gate threshold above 1": lambda t, m: (["synth", "--set", "gate.reconstruction=1.5"], "gate.reconstruction"),
    "crop too small": lambda t, m: (["synth", "--set", "harmonizer.crop=8"], "harmonizer.crop"),
    "warm-up longer than the run": lambda t, m: (["synth", "--set", "harmonizer.train.warmup=100000"], "train.warmup"),
    "free bits below 0": lambda t, m: (["synth", "--set", "gmvae.free_bits=-1.0"], "gmvae.free_bits"),
    "balance weight below 0": lambda t, m: (["synth", "--set", "gmvae.balance=-1.0"], "gmvae.balance"),
    "KL warm-up longer than the run": lambda t, m: (["synth", "--set", "gmvae.kl_warmup=100000"], "gmvae.kl_warmup"),
    "synth out is a file": lambda t, m: (
        ["synth", "--profile", "tiny", "--out", str(_text(t / "f", "x"))],
        str(t / "f"),
    ),
    # --- preprocess ---
    "manifest missing": lambda t, m: (
        ["preprocess", "--manifest", str(t / "none.csv"), "--out-dir", str(t / "o")],
        "none.csv: manifest not found",
    ),
    "manifest header only": lambda t, m: (
        ["preprocess", "--manifest", str(_manifest(t, [])), "--out-dir", str(t / "o")],
        "a header and no rows",
    ),
    "manifest row with extra fields": lambda t, m: (
        ["preprocess", "--manifest", str(_manifest(t, [ROW + ",x"])), "--out-dir", str(t / "o")],
        "row 2 has 14 fields",
    ),
    "manifest binary": lambda t, m: (
        ["preprocess", "--manifest", str(_text(t / "m.csv", b"\x00\xff\x00")), "--out-dir", str(t / "o")],
        "m.csv",
    ),
    "manifest empty site": lambda t, m: (
        ["preprocess", "--manifest", str(_manifest(t, [ROW.replace(",A,S@A,", ",,S@A,")])), "--out-dir", str(t / "o")],
        "manifest.csv",
    ),
    "preprocess out-dir is a file": lambda t, m: (
        ["preprocess", "--manifest", str(_manifest(t)), "--out-dir", str(_text(t / "f", "x"))],
        "--out-dir is a file",
    ),
    "preprocess output overwrites input": lambda t, m: (
        ["preprocess", "--manifest", str(_manifest(t)), "--out-dir", str(t)],
        "the output would overwrite an input",
    ),
    "workers 0": lambda t, m: (
        ["preprocess", "--manifest", "m.csv", "--out-dir", "o", "--workers", "0"],
        "--workers: 0 is out of range",
    ),
    "voxel 3 mm": lambda t, m: (
        ["preprocess", "--manifest", "m.csv", "--out-dir", "o", "--voxel-mm", "3"],
        "--voxel-mm",
    ),
    "preprocess a uniform box": lambda t, m: (
        ["preprocess", "--manifest", str(_box_manifest(t)), "--out-dir", str(t / "o")],
        "all one intensity: not a scan of a head",
    ),
    "truncated volume": lambda t, m: (
        ["preprocess", "--manifest", str(_truncated(t)), "--out-dir", str(t / "o")],
        "a.nii.gz",
    ),
    # --- harmonize ---
    "harmonize no inputs": lambda t, m: (
        ["harmonize", "--model", str(m), "--target", "agnostic", "--out-dir", str(t / "out")],
        "no input volumes",
    ),
    "harmonize input missing": lambda t, m: (_harmonize(t, m, inputs=[t / "none.nii.gz"]), "none.nii.gz"),
    "harmonize input truncated": lambda t, m: (
        _harmonize(t, m, inputs=[_text(t / "in" / "c.nii.gz", _brain(t / "b.nii.gz").read_bytes()[:300])]),
        "c.nii.gz",
    ),
    "harmonize input all negative": lambda t, m: (
        _harmonize(t, m, inputs=[_nifti(t / "in" / "n.nii.gz", -harmlib.data.mni_t1(4)[0] - 1)]),
        "n.nii.gz: no voxel above 0",
    ),
    "harmonize input 4D": lambda t, m: (
        _harmonize(t, m, inputs=[_nifti(t / "in" / "s.nii.gz", np.ones((46, 55, 46, 3)))]),
        "s.nii.gz",
    ),
    "harmonize input not MNI-aligned": lambda t, m: (
        _harmonize(t, m, inputs=[_nifti(t / "in" / "x.nii.gz", np.ones((10, 10, 10)), np.eye(4))]),
        "x.nii.gz: not aligned to MNI space",
    ),
    "harmonize unknown target": lambda t, m: (
        _harmonize(t, m)[:-4] + ["--target", "Nowhere", "--out-dir", str(t / "out")],
        "unknown target site 'Nowhere'",
    ),
    "harmonize model missing": lambda t, m: (_harmonize(t, t / "none.pt"), "none.pt"),
    "harmonize model not a model": lambda t, m: (_harmonize(t, _text(t / "m.pt", "hello")), "m.pt"),
    "harmonize device gpu0": lambda t, m: (_harmonize(t, m, "--device", "gpu0"), "--device gpu0"),
    "harmonize seed -1": lambda t, m: (_harmonize(t, m, "--seed", "-1"), "--seed: -1 is out of range"),
    "harmonize out-dir is a file": lambda t, m: (
        _harmonize(t, m)[:-2] + ["--out-dir", str(_text(t / "f", "x"))],
        "--out-dir is a file",
    ),
    "harmonize output exists": lambda t, m: (
        _harmonize(t, m) if _text(t / "out" / "a.nii.gz", "old") else None,
        "exists; pass --overwrite",
    ),
    "harmonize output name is a folder": lambda t, m: (
        _harmonize(t, m) if (t / "out" / "a.nii.gz").mkdir(parents=True) is None else None,
        "the output name is a folder",
    ),
    "harmonize output is the input": lambda t, m: (
        _harmonize(t, m)[:-2] + ["--out-dir", str(t / "in")],
        "would overwrite the input",
    ),
    "harmonize one input listed twice": lambda t, m: (
        _harmonize(t, m, inputs=[_brain(t / "in" / "a.nii.gz"), t / "in" / ".." / "in" / "a.nii.gz"]),
        "listed twice",
    ),
    "harmonize two inputs one name": lambda t, m: (
        _harmonize(t, m, inputs=[_brain(t / "i1" / "a.nii.gz"), _brain(t / "i2" / "a.nii.gz")]),
        "two inputs share a file name",
    ),
    "harmonize batch with a bad second input": lambda t, m: (
        _harmonize(t, m, inputs=[_brain(t / "in" / "a.nii.gz"), _text(t / "in" / "b.nii.gz", b"junk")]),
        "b.nii.gz",
    ),
    # --- issue 28: inputs never touched, outputs right or refused, messages that name the field ---
    "profile key written twice": lambda t, m: (
        ["synth", "--profile", str(_text(t / "p.yaml", "seed: 1\nseed: 2\n"))],
        "'seed' is written twice (line 2)",
    ),
    "set seed -1": lambda t, m: (["synth", "--set", "seed=-1"], "parameter 'seed'"),
    "set a cohort of 10^8 subjects": lambda t, m: (
        ["synth", "--set", "synth.n_train_per_site=100000000"],
        "'synth.n_train_per_site': use 2 (labeled and unlabeled) to 200",
    ),
    "set learning rate inf": lambda t, m: (["synth", "--set", "harmonizer.train.lr=.inf"], "harmonizer.train.lr"),
    "set a learning rate of one section": lambda t, m: (["synth", "--set", "drit.train.lr=0"], "drit.train.lr"),
    "synth out under /proc": lambda t, m: (
        ["synth", "--profile", "tiny", "--out", "/proc/harmlib-cohort"],
        "/proc/harmlib-cohort",
    ),
    "preprocess out under /proc, keep going": lambda t, m: (
        ["preprocess", "--manifest", str(_manifest(t)), "--out-dir", "/proc/harmlib-pre", "--keep-going"],
        "/proc/harmlib-pre",
    ),
    "synth out is an unrelated folder": lambda t, m: (
        ["synth", "--profile", "tiny", "--out", str(_unrelated_folder(t))],
        "not a harmlib cohort",
    ),
    "preprocess out-dir links to the input folder": lambda t, m: (
        ["preprocess", "--manifest", str(_linked_out(t)), "--out-dir", str(t / "out")],
        "would overwrite an input",
    ),
    "harmonize complex volume": lambda t, m: (
        _harmonize(t, m, inputs=[_complex(t / "in" / "c.nii.gz")]),
        "c.nii.gz: a complex-valued volume",
    ),
    "harmonize RGB volume": lambda t, m: (
        _harmonize(t, m, inputs=[_rgb(t / "in" / "r.nii.gz")]),
        "r.nii.gz: a RGB volume",
    ),
    "harmonize a coarse box": lambda t, m: (
        _harmonize(t, m, inputs=[_coarse_box(t / "in" / "box.nii.gz")]),
        "too small or too coarse to be a brain",
    ),
    "harmonize sidecar exists": lambda t, m: (
        _harmonize(t, m) if _text(t / "out" / "a.json", "{}") else None,
        "a.json: exists; pass --overwrite",
    ),
    "harmonize model with NaN weights": lambda t, m: (_harmonize(t, _nan_model(t, m)), "hold NaN/Inf"),
    "harmonize model without weights": lambda t, m: (_harmonize(t, _stateless_model(t, m)), "without weights"),
    "harmonize seed 2^64": lambda t, m: (_harmonize(t, m, "--seed", str(2**64)), "--seed: 18446744073709551616 is out"),
    "reproduce --set profile": lambda t, m: (
        ["reproduce", "--profile", "tiny", "--root", str(ROOT), "--no-book", "--set", "profile=cpu"],
        "chosen by --profile",
    ),
    # --- reproduce, book ---
    "reproduce unknown --set": lambda t, m: (
        ["reproduce", "--profile", "tiny", "--root", str(ROOT), "--no-book", "--set", "nosuch=1"],
        "unknown parameter 'nosuch'",
    ),
    "reproduce --set bad value": lambda t, m: (
        ["reproduce", "--profile", "tiny", "--root", str(ROOT), "--no-book", "--set", "gamma=abc"],
        "ssim.gamma",
    ),
    "reproduce stall 0": lambda t, m: (
        ["reproduce", "--profile", "tiny", "--root", str(ROOT), "--stall-minutes", "0"],
        "--stall-minutes",
    ),
    "reproduce no notebooks": lambda t, m: (["reproduce", "--profile", "tiny", "--root", str(t)], "no notebooks found"),
    "book without _toc.yml": lambda t, m: (["book", "--root", str(t)], "no _toc.yml"),
}


def _digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_catalogue_has_enough_cases():
    assert len(CASES) >= 55


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, model, capsys):
    argv, fragment = CASES[name](tmp_path, model)
    before = _digests(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "%|" not in ln]  # progress bars aside
    assert code not in (0, None), f"{name}: exit 0"
    assert "Traceback" not in err, f"{name}: a traceback\n{err}"
    assert len(lines) == 1 and lines[0].startswith("harmlib: error:"), f"{name}: not one line: {lines}"
    assert fragment in lines[0], f"{name}: '{fragment}' not in: {lines[0]}"
    after = _digests(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, f"{name}: an input changed"
    assert not [p for p in tmp_path.rglob(".tmp-*")], f"{name}: a half-written file is left"
    kept = ("harmonize output exists", "harmonize output name is a folder", "harmonize sidecar exists")
    if name.startswith("harmonize") and name not in kept:
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), (
            f"{name}: an output was written"
        )


@pytest.mark.parametrize("command", ["harmonize", "synth", "preprocess"])
def test_a_second_run_into_a_folder_being_written_is_refused(command, tmp_path, model, capsys):
    """Two runs writing one output folder at once: the second is refused in one line, nothing written by it."""
    from harmlib.data.io import folder_lock

    out = tmp_path / "out"
    argv = {
        "harmonize": _harmonize(tmp_path, model),
        "synth": ["synth", "--profile", "tiny", "--out", str(out)],
        "preprocess": ["preprocess", "--manifest", str(_manifest(tmp_path)), "--out-dir", str(out)],
    }[command]
    with folder_lock(out):  # the first run, still writing
        assert main(argv) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "%|" not in ln]
    assert len(err) == 1 and "another harmlib run is writing to this folder now" in err[0], err
    assert not out.exists()  # the lock's folder, which nothing wrote into, is gone after the first run


def _chattr(path: Path, flag: str) -> bool:
    """``chattr +i``/``-i`` (root on ext4/xfs/btrfs); False where the file system or the user cannot."""
    import shutil
    import subprocess

    exe = shutil.which("chattr")
    return bool(exe) and subprocess.run([exe, flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("command", ["harmonize", "synth", "preprocess --keep-going"])
def test_an_immutable_output_folder_is_one_line_naming_it(command, tmp_path, model, capsys):
    """An output folder marked immutable (``chattr +i``: even root cannot write into it) is refused in one line
    that names the folder and the fix, with no traceback and nothing written (issue 28, item 5)."""
    out = tmp_path / "out"
    out.mkdir()
    argv = {
        "harmonize": _harmonize(tmp_path, model),
        "synth": ["synth", "--profile", "tiny", "--out", str(out)],
        "preprocess --keep-going": [
            "preprocess",
            "--manifest",
            str(_manifest(tmp_path)),
            "--out-dir",
            str(out),
            "--keep-going",
        ],
    }[command]
    if not _chattr(out, "+i"):
        pytest.skip("chattr +i is not available to this user or on this file system")
    try:
        before = _digests(tmp_path)
        code = main(argv)
        after = _digests(tmp_path)
    finally:
        _chattr(out, "-i")
    err = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if ln.strip() and "%|" not in ln]
    assert code not in (0, None) and len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("harmlib: error:") and str(out) in err[0] and "choose" in err[0], err  # names the fix
    assert after == before and not any(out.iterdir())
