"""Bad input is one clear line naming the file or parameter and the fix (issue: reliability)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import harmlib
from harmlib.cli import main
from harmlib.config import ConfigError, check_notebook_parameter, parse_overrides
from harmlib.pipeline import PipelineError, build_book


@pytest.mark.parametrize(
    "text, match", [("", "is empty"), ("- a\n- b\n", "holds a YAML list"), (b"\xff\xfe\x00bad", "not UTF-8")]
)
def test_broken_profile_files_name_the_file(tmp_path, text, match):
    path = tmp_path / "mine.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=match) as err:
        harmlib.load_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_malformed_override_value_is_one_line():
    with pytest.raises(ConfigError, match=r"seed=\[1.*not valid YAML"):
        parse_overrides("seed=[1")


def test_reproduce_set_is_checked_against_the_notebooks_and_the_config():
    cfg = harmlib.load_config("tiny")
    known = {"profile", "gamma", "iterations"}
    with pytest.raises(ConfigError, match="unknown parameter 'nosuch'"):
        check_notebook_parameter("nosuch", 1, known, cfg)
    with pytest.raises(ConfigError, match=r"--set: invalid value 'abc' for parameter 'ssim.gamma'"):
        check_notebook_parameter("gamma", "abc", known, cfg)
    check_notebook_parameter("gamma", 2.0, known, cfg)
    check_notebook_parameter("iterations", 10, known, cfg)


def test_cli_reproduce_rejects_an_unknown_set_before_running(capsys):
    root = Path(__file__).resolve().parents[1]
    assert main(["reproduce", "--profile", "tiny", "--root", str(root), "--set", "nosuch=1", "--no-book"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'nosuch'" in err and err.count("\n") == 1


def test_book_without_toc_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match="no _toc.yml"):
        build_book(tmp_path)


@pytest.mark.parametrize("device", ["gpu0", "cuda"])
def test_harmonize_device_errors(tmp_path, capsys, device):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    vol = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), vol)
    code = main(
        [
            "harmonize",
            str(vol),
            "--model",
            str(tmp_path / "m.pt"),
            "--target",
            "agnostic",
            "--out-dir",
            str(tmp_path / "o"),
            "--device",
            device,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and f"--device {device}" in err and err.count("\n") == 1


def _manifest_text(tmp_path, rows: list[str]) -> Path:
    header = "path,subject,session,dataset,scanner,site,domain,age,sex,diagnosis,split,role,truth_path"
    p = tmp_path / "manifest.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def test_manifest_row_with_extra_fields_names_the_row(tmp_path):
    from harmlib.data import read_manifest
    from harmlib.data.io import DataError

    p = _manifest_text(
        tmp_path,
        ["a.nii.gz,s1,1,d,S,A,S@A,40,F,HC,train,labeled,", "b.nii.gz,s2,1,d,S,A,S@A,40,F,HC,train,labeled,,extra"],
    )
    with pytest.raises(DataError, match=r"row 3 has 14 fields but the header has 13"):
        read_manifest(p, check_files=False)


def test_header_only_manifest_is_one_line(tmp_path):
    from harmlib.data import read_manifest
    from harmlib.data.io import DataError

    with pytest.raises(DataError, match="a header and no rows"):
        read_manifest(_manifest_text(tmp_path, []), check_files=False)


def test_preprocess_out_dir_that_is_a_file_fails_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    code = main(
        [
            "preprocess",
            "--manifest",
            str(_manifest_text(tmp_path, ["a.nii.gz,s1,1,d,S,A,S@A,40,F,HC,train,labeled,"])),
            "--out-dir",
            str(out),
        ]
    )
    assert code == 1 and "--out-dir is a file" in capsys.readouterr().err


def test_models_lists_a_file_with_unexpected_metadata_as_unreadable_and_goes_on(tmp_path, capsys):
    from harmlib.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "cpu" / "models" / "odd.pt", {"kind": "ssim_harmonizer", "domains": 5, "config": "x"})
    assert main(["models", "--runs", str(tmp_path)]) == 0
    assert "odd.pt  unreadable: unexpected model-file metadata" in capsys.readouterr().out


@pytest.mark.parametrize("writer", ["volume", "text"])
def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch, writer):
    import errno

    from harmlib.data.io import DataError, save_volume, write_text_atomic

    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib, "save", full)
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DataError, match="the disk is full") as err:
        if writer == "volume":
            save_volume(tmp_path / "v.nii.gz", np.zeros((2, 2, 2)), np.eye(4))
        else:
            write_text_atomic(tmp_path / "t.csv", "a,b\n")
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_the_loop_runs_one_forward_pass_per_step_for_both_updates(tmp_path):
    """A task's forward hook runs once per step and its result reaches the D step and the G step (DRIT++ shares
    its translations between the two updates; before the hook a closure cache relied on the call order)."""
    import torch
    from torch import nn

    from harmlib.config import RuntimeConfig, TrainConfig
    from harmlib.train.loop import Task, fit

    torch.manual_seed(0)
    nets = {"G": nn.Linear(2, 2), "D": nn.Linear(2, 1)}
    calls = {"forward": 0, "d": [], "g": []}

    def forward(batch):
        calls["forward"] += 1
        return {"fake": nets["G"](batch), "id": calls["forward"]}

    def d_step(f):
        calls["d"].append(f["id"])
        return nets["D"](f["fake"].detach()).pow(2).mean(), {"d": 0.0}

    def g_step(f):
        calls["g"].append(f["id"])
        return (1 - nets["D"](f["fake"])).pow(2).mean(), {"g": 0.0}

    task = Task(
        "toy",
        nets,
        g_nets=["G"],
        batch=lambda step: torch.ones(2, 2) * step,
        g_step=g_step,
        d_nets=["D"],
        d_step=d_step,
        forward=forward,
    )
    fit(
        task,
        TrainConfig(iterations=3, batch_size=2, checkpoint_every=3, log_every=1),
        RuntimeConfig(device="cpu", amp="none"),
        tmp_path,
    )
    assert calls["forward"] == 3 and calls["d"] == calls["g"] == [1, 2, 3]


class _RunsCode:
    """A pickle that, loaded unsafely, runs a command: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("how", ["harmonize", "models", "api"])
def test_a_model_file_that_would_run_code_is_refused_without_running_it(tmp_path, capsys, how):
    import torch

    from harmlib.checkpoint import CheckpointError, load_checkpoint

    marker = tmp_path / "ran"
    model = tmp_path / "cpu" / "models" / "evil.pt"
    model.parent.mkdir(parents=True)
    torch.save({"format": 1, "kind": "ssim_harmonizer", "state": {}, "x": _RunsCode(marker)}, model)
    vol = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), vol)
    if how == "api":
        with pytest.raises(CheckpointError, match=r"evil.pt: refused: .*posix.system.*could run code"):
            load_checkpoint(model)
    elif how == "models":
        assert main(["models", "--runs", str(tmp_path)]) == 0
        assert "evil.pt" in capsys.readouterr().out
    else:
        args = ["harmonize", str(vol), "--model", str(model), "--target", "agnostic", "--out-dir", str(tmp_path / "o")]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "refused" in err and str(model) in err and err.count("\n") == 1
    assert not marker.exists()


def test_checkpoints_hold_plain_types_only(tmp_path):
    """numpy values are stored as tensors and Python numbers, so ``weights_only`` reads them back."""
    import torch

    from harmlib.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", {"kind": "k", "affine": np.eye(4), "scale": np.float64(2.5), "pads": (1, 2)})
    ck = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(ck["affine"], torch.Tensor) and np.allclose(np.asarray(ck["affine"]), np.eye(4))
    assert type(ck["scale"]) is float and ck["pads"] == (1, 2)
    with pytest.raises(TypeError, match=r"\['obj'\]: a object cannot be stored safely"):
        save_checkpoint(tmp_path / "n.pt", {"kind": "k", "obj": object()})


# --- issue 28, second pass: outputs whole, right and their own; inputs never touched -----------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny harmonizer trained for one step (with the cpu levers, as the tiny profile has them)."""
    from harmlib.aguit.task import build_task, export_model
    from harmlib.data import read_manifest
    from harmlib.data.synthetic import write_cohort
    from harmlib.train.loop import fit

    out = tmp_path_factory.mktemp("cohort")
    small = {"synth.n_train_per_site": 2, "synth.n_test_per_site": 1, "synth.n_age_per_site": 1}
    cfg = harmlib.load_config("tiny", small | {"synth.n_ad_per_site": 1, "harmonizer.train.iterations": 1})
    task, meta = build_task(cfg, read_manifest(write_cohort(cfg, out, raw=False)))
    fit(task, cfg.harmonizer.train, cfg.runtime, out / "run", seed=0)
    return export_model(task, meta, out / "model.pt")


def _brain_file(path: Path) -> Path:
    x, aff = harmlib.data.mni_t1(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(x.astype(np.float32), aff), str(path))
    return path


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_the_mode_the_umask_gives_a_new_file(tmp_path, umask, mode):
    """Temporary files are made 0600; an output renamed from one must not stay so (volumes, tables, models)."""
    import os

    from harmlib.checkpoint import save_checkpoint
    from harmlib.data.io import save_volume, write_text_atomic

    old = os.umask(umask)
    try:
        written = [
            save_volume(tmp_path / "v.nii.gz", np.ones((4, 4, 4)), np.eye(4)),
            write_text_atomic(tmp_path / "t.csv", "a\n1\n"),
            save_checkpoint(tmp_path / "m.pt", {"kind": "x"}),
        ]
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(mode) for p in written}


def test_sigterm_ends_a_run_as_ctrl_c_and_a_rerun_clears_stale_temporaries(tiny_model, tmp_path, capsys, monkeypatch):
    """SIGTERM raises KeyboardInterrupt (cleanup runs, exit 130, the right command to resume); a temporary file a
    killed run left in the output folder is removed by the next run."""
    import signal

    import harmlib.harmonize.files as files
    from harmlib.cli import _terminate

    src = _brain_file(tmp_path / "in" / "a.nii.gz")
    out = tmp_path / "out"

    def killed(*args, **kwargs):
        _terminate(signal.SIGTERM, None)

    monkeypatch.setattr(files, "harmonize_volume", killed)
    argv = ["harmonize", str(src), "--model", str(tiny_model), "--target", "agnostic", "--out-dir", str(out)]
    assert main(argv) == 130
    assert signal.getsignal(signal.SIGTERM) is _terminate
    assert "with --overwrite" in capsys.readouterr().err
    (out).mkdir(exist_ok=True)
    (out / ".tmp-abc.nii.gz").write_bytes(b"half")  # what a kill -9 leaves
    monkeypatch.undo()
    assert main(argv) == 0
    assert (out / "a.nii.gz").is_file() and not list(out.glob(".tmp-*"))


def test_an_upper_case_nifti_name_is_harmonized(tiny_model, tmp_path):
    src = _brain_file(tmp_path / "in" / "SUB-01_T1W.NII.GZ")
    argv = ["harmonize", str(src), "--model", str(tiny_model), "--target", "agnostic", "--out-dir", str(tmp_path / "o")]
    assert main(argv) == 0
    out = tmp_path / "o" / "SUB-01_T1W.NII.GZ"
    assert nib.load(str(out)).shape == nib.load(str(src)).shape and not list((tmp_path / "o").glob(".tmp-*"))


def test_a_non_finite_output_is_refused_and_nothing_is_written(tiny_model, tmp_path, monkeypatch, capsys):
    import harmlib.harmonize.files as files

    monkeypatch.setattr(files, "harmonize_volume", lambda h, v, *a, **k: np.full(v.shape, np.nan, np.float32))
    src = _brain_file(tmp_path / "in" / "a.nii.gz")
    argv = ["harmonize", str(src), "--model", str(tiny_model), "--target", "agnostic", "--out-dir", str(tmp_path / "o")]
    assert main(argv) == 1
    assert "NaN/Inf voxels" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "o").rglob("*") if p.is_file()]


def test_a_profile_path_with_an_upper_case_suffix_is_a_path(tmp_path):
    from harmlib.config import profile_path

    mine = tmp_path / "mine.YAML"
    mine.write_text(profile_path("tiny").read_text())
    assert harmlib.load_config(mine).profile == "tiny"


@pytest.mark.parametrize("table", ["", "not,a,gate\n1,2,3\n", "\x00\x01"])
def test_models_lists_models_whatever_their_gate_table_holds(tiny_model, tmp_path, capsys, table):
    import shutil

    run = tmp_path / "runs" / "tiny"
    (run / "models").mkdir(parents=True)
    shutil.copy(tiny_model, run / "models" / "ssim_harmonizer.pt")
    (run / "tables").mkdir()
    (run / "tables" / "gate_ssim_harmonizer.csv").write_text(table)
    assert main(["models", "--runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "kind=ssim_harmonizer" in out and "no quality gate computed" in out


def test_a_model_file_written_with_the_levers_inside_g_loads_and_harmonizes_the_same(tiny_model, tmp_path):
    """Model files written before the levers left G (their weights under G.curve.*, G.field.*) load unchanged."""
    from harmlib.checkpoint import load_checkpoint, save_checkpoint
    from harmlib.harmonize import load_harmonizer

    ck = load_checkpoint(tiny_model)
    state = dict(ck["state"])
    state["G"] = {**state["G"], **state.pop("levers")}  # the old layout: curve.* and field.* inside G
    old = save_checkpoint(tmp_path / "old.pt", {**{k: v for k, v in ck.items() if k != "format"}, "state": state})
    x, _ = harmlib.data.mni_t1(4)
    a, b = load_harmonizer(tiny_model), load_harmonizer(old)
    grid = np.zeros(a.shape, np.float32)
    grid[tuple(slice(0, min(n, m)) for n, m in zip(a.shape, x.shape))] = x[tuple(slice(0, n) for n in a.shape)]
    assert np.array_equal(a.harmonize(grid, "agnostic"), b.harmonize(grid, "agnostic"))


@pytest.mark.slow
def test_sigterm_stops_preprocess_and_its_workers(tmp_path):
    """SIGTERM to `preprocess --workers 2` (a scheduler's kill) ends the run as Ctrl-C does: exit 130, the worker
    processes stopped with it (they went on processing before), nothing half-written."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from harmlib.data.synthetic import write_cohort

    small = {"synth.n_train_per_site": 2, "synth.n_test_per_site": 1, "synth.n_age_per_site": 1}
    cfg = harmlib.load_config("tiny", small | {"synth.n_ad_per_site": 1, "synth.n_raw": 2})
    write_cohort(cfg, tmp_path / "cohort", raw=True)
    out = tmp_path / "pre"
    cmd = [
        sys.executable,
        "-m",
        "harmlib.cli",
        "preprocess",
        "--manifest",
        str(tmp_path / "cohort" / "raw" / "manifest.csv"),
    ]
    proc = subprocess.Popen([*cmd, "--out-dir", str(out), "--workers", "2"], stderr=subprocess.PIPE, text=True)
    parent, workers = psutil.Process(proc.pid), []
    for _ in range(300):  # until both workers run
        workers = [c for c in parent.children(recursive=True) if "multiprocessing" in " ".join(c.cmdline())]
        if len(workers) >= 2:
            break
        time.sleep(0.1)
    assert len(workers) >= 2, "the workers did not start"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"workers left running: {[p.pid for p in alive]}"
    assert not list(out.rglob(".tmp-*"))
    assert "interrupted" in proc.stderr.read()


@pytest.mark.parametrize(
    "name, subject, session, want",
    [
        ("sub-01_ses-A_T1w.nii.gz", "", "", ("01", "A")),
        ("scan.nii.gz", "s 7", "2", ("S7", "2")),  # the manifest's subject and session columns
        ("scan.nii.gz", "", "ses-pre", ("Scan", "Pre")),
        ("___.nii.gz", "", "", None),  # no letter or digit anywhere: a label from the name's digest
        ("süb_ü.nii.gz", "", "", None),  # letters outside BIDS's alphabet are dropped
    ],
)
def test_bids_labels_are_valid_whatever_the_input_name(tmp_path, name, subject, session, want):
    import re

    from harmlib.provenance import bids_entities, bids_output

    sub, ses = bids_entities(tmp_path / name, subject, session)
    assert re.fullmatch(r"[A-Za-z0-9]+", sub) and (ses == "" or re.fullmatch(r"[A-Za-z0-9]+", ses))
    if want is not None:
        assert (sub, ses) == want
    out = bids_output(tmp_path, tmp_path / name, "Gyroscan Intera@Guys", subject, session)
    expected = f"sub-{sub}" + (f"/ses-{ses}" if ses else "") + "/anat/"
    assert expected in out.as_posix() and out.name.endswith("_desc-harmonizedGyroscanInteraGuys_T1w.nii.gz")


@pytest.mark.slow
def test_a_failing_notebook_under_a_profile_path_keeps_its_copy_under_the_runs_folder(tmp_path, capsys):
    """`reproduce --profile /abs/mine.yaml` whose notebook fails: one line naming the kept copy under
    runs/<profile>/failed/ (it was `NotADirectoryError: mine.yaml/failed`), no `.partial-*` left in the book."""
    import nbformat

    from harmlib.config import profile_path

    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "cpu"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("raise ValueError('broken on purpose')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(root / "notebooks" / "01_fail.ipynb"))
    mine = tmp_path / "mine.yaml"
    mine.write_text(profile_path("tiny").read_text())
    assert main(["reproduce", "--profile", str(mine), "--root", str(root), "--no-book"]) == 1
    err = [
        ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if ln.strip() and "Executing" not in ln
    ]
    assert len(err) == 1 and "ValueError: broken on purpose" in err[0] and "runs/tiny/failed/01_fail.ipynb" in err[0]
    assert (root / "runs" / "tiny" / "failed" / "01_fail.ipynb").is_file()
    assert not list((root / "book").rglob(".partial-*"))
