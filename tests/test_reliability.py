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


@pytest.mark.parametrize("text, match", [("", "is empty"), ("- a\n- b\n", "holds a YAML list"), (b"\xff\xfe\x00bad", "not UTF-8")])
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
    code = main(["harmonize", str(vol), "--model", str(tmp_path / "m.pt"), "--target", "agnostic", "--out-dir", str(tmp_path / "o"), "--device", device])
    err = capsys.readouterr().err
    assert code == 1 and f"--device {device}" in err and err.count("\n") == 1
