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
    "harmonize two inputs one name": lambda t, m: (
        _harmonize(t, m, inputs=[_brain(t / "i1" / "a.nii.gz"), _brain(t / "i2" / "a.nii.gz")]),
        "two inputs share a file name",
    ),
    "harmonize batch with a bad second input": lambda t, m: (
        _harmonize(t, m, inputs=[_brain(t / "in" / "a.nii.gz"), _text(t / "in" / "b.nii.gz", b"junk")]),
        "b.nii.gz",
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
    assert len(CASES) >= 40


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
    if name.startswith("harmonize") and name not in ("harmonize output exists", "harmonize output name is a folder"):
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), (
            f"{name}: an output was written"
        )
