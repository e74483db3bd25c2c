"""Manifest validation and NIfTI loading: every error is one line naming the file or row."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from harmlib.data import COLUMNS, DataError, load_volume, read_manifest, save_volume, write_manifest
from harmlib.data.manifest import slug


def _vol(path, shape=(8, 9, 10), value=None, affine=None):
    data = (
        np.random.default_rng(0).random(shape).astype(np.float32)
        if value is None
        else np.full(shape, value, np.float32)
    )
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


@pytest.fixture()
def good(tmp_path) -> pd.DataFrame:
    rows = []
    for i, (scanner, site) in enumerate([("Intera", "HH"), ("TrioTim", "SWU"), ("Intera", "HH")]):
        _vol(tmp_path / f"v{i}.nii.gz")
        rows.append(
            {
                "path": f"v{i}.nii.gz",
                "subject": f"s{i}",
                "session": "1",
                "dataset": "IXI",
                "scanner": scanner,
                "site": site,
                "domain": f"{scanner}@{site}",
                "age": 30 + i,
                "sex": "F",
                "diagnosis": "HC",
                "split": "train",
                "role": "labeled",
                "truth_path": "",
            }
        )
    return pd.DataFrame(rows)


def _write(tmp_path, df, name="m.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


def test_good_manifest_round_trip(tmp_path, good):
    man = write_manifest(good, tmp_path / "manifest.csv")
    again = read_manifest(tmp_path / "manifest.csv")
    assert list(again.df.columns) == COLUMNS and len(again) == 3
    assert again.domains() == ["Intera@HH", "TrioTim@SWU"]
    assert again.path(0) == tmp_path / "v0.nii.gz"
    assert man.check_domain("Intera@HH") == "Intera@HH"


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.drop(columns=["site", "role"]), "missing column\\(s\\) site, role"),
        (
            lambda d: d.assign(split=["train", "trian", "train"]),
            "row 3 \\(subject s1\\): unknown split 'trian'; allowed: train, test",
        ),
        (lambda d: d.assign(role=["labeled", "labeled", "teacher"]), "row 4 .*unknown role 'teacher'"),
        (lambda d: d.assign(sex=["F", "x", "F"]), "unknown sex 'x'"),
        (lambda d: d.assign(diagnosis=["HC", "Alzheimer", "HC"]), "unknown diagnosis 'Alzheimer'"),
        (lambda d: d.assign(age=[30, "old", 31]), "invalid age 'old'"),
        (lambda d: d.assign(age=[30, 200, 31]), "invalid age '200'"),
        (lambda d: d.assign(subject=["s0", "", "s2"]), "empty 'subject'"),
        (lambda d: d.assign(path=["v0.nii.gz", "v0.nii.gz", "v2.nii.gz"]), "duplicate path v0.nii.gz"),
        (
            lambda d: d.assign(subject=["s0", "s0", "s0"], domain=["Intera@HH", "TrioTim@SWU", "Intera@HH"]),
            "duplicate \\(subject, session, domain\\)",
        ),
        (lambda d: d.assign(domain=["HH", "TrioTim@SWU", "Intera@HH"]), "domain 'HH' is not '<scanner>@<site>'"),
        (lambda d: d.assign(path=["v0.nii.gz", "gone.nii.gz", "v2.nii.gz"]), "row 3 .*gone.nii.gz not found"),
    ],
)
def test_every_manifest_error(tmp_path, good, edit, match):
    p = _write(tmp_path, edit(good))
    with pytest.raises(DataError, match=match) as err:
        read_manifest(p)
    assert "\n" not in str(err.value) and "m.csv" in str(err.value)


def test_unreadable_or_missing_manifest(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    bad = tmp_path / "bin.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage\x00\xff")
    with pytest.raises(DataError, match="bin.csv"):
        read_manifest(bad)


def test_unknown_site_lists_the_known(tmp_path, good):
    man = write_manifest(good, tmp_path / "manifest.csv")
    with pytest.raises(DataError, match="unknown site 'GE@IOP'; known train domains: Intera@HH, TrioTim@SWU"):
        man.check_domain("GE@IOP")
    with pytest.raises(DataError, match="no traveling-subject truth"):
        man.truth(0, "Intera@HH")


def test_slug():
    assert slug("Gyroscan Intera@Guys") == "Gyroscan-Intera-Guys"


def test_load_volume_accepts_good_and_singleton_4d(tmp_path):
    img = load_volume(_vol(tmp_path / "a.nii.gz"))
    assert img.shape == (8, 9, 10) and img.get_data_dtype() == np.float32
    assert load_volume(_vol(tmp_path / "b.nii.gz", shape=(8, 9, 10, 1))).shape == (8, 9, 10)


def test_load_volume_errors(tmp_path):
    good = _vol(tmp_path / "good.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:200])
    notnifti = tmp_path / "text.nii.gz"
    notnifti.write_bytes(gzip.compress(b"hello"))
    nan = tmp_path / "nan.nii.gz"
    d = np.ones((8, 9, 10), np.float32)
    d[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(d, np.eye(4)), str(nan))
    singular = tmp_path / "singular.nii.gz"
    hdr = nib.Nifti1Header()  # a header whose sform squashes z: voxels cannot be mapped back
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]
    nib.save(nib.Nifti1Image(np.ones((8, 9, 10), np.float32), None, header=hdr), str(singular))
    cases = {
        tmp_path / "missing.nii.gz": "file not found",
        truncated: "cannot read it as NIfTI",
        notnifti: "cannot read it as NIfTI",
        _vol(tmp_path / "4d.nii.gz", shape=(8, 9, 10, 3)): "4D with shape \\(8, 9, 10, 3\\); a 3D T1 volume is needed",
        _vol(tmp_path / "2d.nii.gz", shape=(8, 9)): "2D",
        _vol(tmp_path / "zero.nii.gz", value=0.0): "every voxel is zero",
        nan: "1 NaN/Inf voxels",
        singular: "affine is not invertible",
    }
    for path, match in cases.items():
        with pytest.raises(DataError, match=match) as err:
            load_volume(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_save_volume_is_atomic_and_keeps_the_affine(tmp_path):
    aff = np.diag([-2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [90, -126, -72]
    out = save_volume(tmp_path / "sub" / "x.nii.gz", np.ones((4, 5, 6)), aff)
    assert [p.name for p in out.parent.iterdir()] == ["x.nii.gz"]  # no temporary left behind
    np.testing.assert_allclose(nib.load(str(out)).affine, aff)
