"""Preprocessing: known scanner poses are recovered, outputs sit on the FSL grid, manifests run,
skip what is done, report bad files in one line, and never touch their inputs.

Tests use the 2 and 4 mm grids and the short ``FAST`` settings. The full-setting measurements
(1 mm, Colin27) print with ``.venv/bin/python tests/test_preprocess.py``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from harmlib.data import DataError, fsl_grid_affine, mni_t1, read_manifest
from harmlib.data.scanner_space import brain_points, pose_error_mm, rigid_matrix, to_scanner_space
from harmlib.preprocess import FAST, MissingExtraError, Settings, preprocess_manifest, preprocess_volume

COLIN = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN_HINT = f"Colin27 not found at {COLIN}: apt-get install -y mricron-data"


def _raw(path: Path, voxel_mm: int, seed: int, bias: float = 0.3):
    """Write a scanner-space rendering of the MNI template; return its ScannerVolume."""
    sv = to_scanner_space(*mni_t1(voxel_mm), seed=seed, voxel_mm=voxel_mm, bias=bias)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(sv.to_nifti(), str(path))
    return sv


def _sha(paths) -> dict:
    """SHA-256 of each file, to show inputs are left as they were."""
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    """MNI-world coordinates of every 2nd brain voxel of the 1 mm template."""
    return brain_points(*mni_t1(1), step=2)


def test_scanner_space_is_seeded_and_puts_the_head_where_the_pose_says():
    vol, aff = mni_t1(4)
    a, b, c = (to_scanner_space(vol, aff, seed=s, voxel_mm=4) for s in (5, 5, 6))
    assert np.array_equal(a.data, b.data) and np.array_equal(a.affine, b.affine)
    assert not np.allclose(a.pose, c.pose)
    assert nib.aff2axcodes(a.affine) == a.axcodes
    assert np.allclose(sorted(nib.affines.voxel_sizes(a.affine)), sorted(a.voxel_size))
    assert a.data.size > 1.5 * vol.size  # a larger field of view, background around the head
    # The intensity centroid moves with the pose (a geometric check independent of registration).
    cen = lambda d, A: nib.affines.apply_affine(A, (np.argwhere(d > 0) * d[d > 0, None]).sum(0) / d[d > 0].sum())
    assert np.linalg.norm(cen(a.data, a.affine) - nib.affines.apply_affine(a.pose, cen(vol, aff))) < 1.5


def test_pose_error_mm_measures_displacement():
    pts = np.array([[0.0, 0, 0], [50, 0, 0]])
    assert pose_error_mm(np.eye(4), rigid_matrix((0, 0, 0), (3, 4, 0)), pts) == pytest.approx((5.0, 5.0))
    mean, mx = pose_error_mm(np.eye(4), rigid_matrix((0, 0, 90), (0, 0, 0)), pts)
    assert mx == pytest.approx(50 * np.sqrt(2)) and mean == pytest.approx(mx / 2)


def test_pose_recovery_at_2mm_on_the_fsl_grid(tmp_path, points):
    sv = _raw(tmp_path / "raw.nii.gz", 2, seed=7)
    rec = preprocess_volume(
        tmp_path / "raw.nii.gz", tmp_path / "out.nii.gz", voxel_mm=2, qc_dir=tmp_path / "qc", settings=FAST
    )
    mean, mx = pose_error_mm(sv.pose, np.array(rec["transform_ras"]), points)
    assert mean < 0.8 and mx < 1.6, f"pose error {mean:.2f} / {mx:.2f} mm (voxel 2 mm)"
    out = nib.load(str(tmp_path / "out.nii.gz"))
    assert out.shape == (91, 109, 91) and np.allclose(out.affine, fsl_grid_affine(2))
    d = out.get_fdata()
    assert d.min() == 0 and 0.9 < np.percentile(d[mni_t1(2)[0] > 0], 99.5) < 1.1  # normalized
    assert rec["template_correlation"] > 0.95
    assert (tmp_path / "qc" / "out.png").stat().st_size > 5000 and (tmp_path / "qc" / "out.json").is_file()


def _manifest(root: Path, names: list[str]) -> Path:
    """A valid manifest over ``raw/<name>.nii.gz``, with a traveling-subject truth path to rebase."""
    rows = [
        dict(
            path=f"raw/{n}.nii.gz",
            subject=n,
            session="1",
            dataset="synthetic",
            scanner="S",
            site="A",
            domain="S@A",
            age="40",
            sex="F",
            diagnosis="HC",
            split="train",
            role="labeled",
            truth_path=f"truth/{n}_{{domain}}.nii.gz",
        )
        for n in names
    ]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def _bad_files(raw: Path) -> None:
    """A truncated copy of a good volume and a 4D series next to it."""
    good = (raw / "good0.nii.gz").read_bytes()
    (raw / "corrupt.nii.gz").write_bytes(good[: len(good) // 3])
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20, 3), np.float32), np.eye(4)),
        str(raw / "series.nii.gz"),
    )


def test_manifest_keep_going_skip_and_inputs_unchanged(tmp_path, capsys):
    for k in range(2):
        _raw(tmp_path / "raw" / f"good{k}.nii.gz", 4, seed=20 + k)
    _bad_files(tmp_path / "raw")
    man = _manifest(tmp_path, ["good0", "corrupt", "series", "good1"])
    before = _sha(sorted((tmp_path / "raw").iterdir()) + [man])
    out = tmp_path / "pre"
    new, qc = preprocess_manifest(man, out, voxel_mm=4, workers=2, keep_going=True, settings=FAST)
    assert list(qc["status"]) == ["ok", "failed", "failed", "ok"]
    errs = qc.loc[qc["status"] == "failed", "error"].tolist()
    assert "corrupt.nii.gz" in errs[0] and "series.nii.gz" in errs[1] and "4D" in errs[1]
    assert all("\n" not in e for e in errs)
    assert "2 of 4 volume(s) failed" in capsys.readouterr().out
    m = read_manifest(new)  # validates, and every path exists
    assert list(m.df["subject"]) == ["good0", "good1"] and list(m.df["age"]) == [40, 40]
    assert m.df.at[0, "truth_path"] == "../truth/good0_{domain}.nii.gz"  # still points at the same file
    for p in m.paths():
        img = nib.load(str(p))
        assert img.shape == (46, 55, 46) and np.allclose(img.affine, fsl_grid_affine(4))
        assert (out / "qc" / p.name.replace(".nii.gz", ".png")).is_file()
    assert (out / "qc.csv").is_file() and _sha(before) == before
    mtimes = {p: p.stat().st_mtime_ns for p in m.paths()}
    _, qc2 = preprocess_manifest(man, out, voxel_mm=4, workers=2, keep_going=True, settings=FAST)
    assert list(qc2["status"]) == ["skipped", "failed", "failed", "skipped"]
    assert {p: p.stat().st_mtime_ns for p in m.paths()} == mtimes
    assert qc2.loc[0, "transform_ras"] == qc.loc[0, "transform_ras"]  # the QC record is kept


def test_manifest_stops_at_first_failure(tmp_path):
    _raw(tmp_path / "raw" / "good0.nii.gz", 4, seed=3)
    _bad_files(tmp_path / "raw")
    man = _manifest(tmp_path, ["corrupt", "good0"])
    with pytest.raises(DataError, match="corrupt.nii.gz") as err:
        preprocess_manifest(man, tmp_path / "pre", voxel_mm=4, workers=1, settings=FAST)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "pre" / "volumes" / "good0_1_S_A.nii.gz").exists()


BAD = {
    "missing": None,
    "corrupt": b"not a nifti at all",
    "4d": (np.ones((16, 16, 16, 2)), np.eye(4)),
    "2d": (np.ones((32, 32)), np.eye(4)),
    "one slice": (np.ones((32, 32, 1)), np.eye(4)),
    "all zero": (np.zeros((16, 16, 16)), np.eye(4)),
    "nan": (np.full((16, 16, 16), np.nan), np.eye(4)),
    "singular affine": (np.ones((16, 16, 16)), np.diag([1.0, 1.0, 0.0, 1.0])),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_one_line_data_error_naming_the_file(tmp_path, case):
    src = tmp_path / f"{case.replace(' ', '_')}.nii.gz"
    content = BAD[case]
    if isinstance(content, bytes):
        src.write_bytes(content)
    elif content is not None:
        img = nib.Nifti1Image(content[0].astype(np.float32), None)
        img.header.set_sform(content[1], code=1)  # only the sform: nibabel refuses a singular qform
        nib.save(img, str(src))
    with pytest.raises(DataError) as err:
        preprocess_volume(src, tmp_path / "out.nii.gz", voxel_mm=4, settings=FAST)
    assert str(src) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out.nii.gz").exists()


def test_skull_strip_without_deepbet_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "deepbet", None)  # as if not installed, whatever is installed
    with pytest.raises(MissingExtraError, match="pip install deepbet") as err:
        preprocess_volume(tmp_path / "any.nii.gz", tmp_path / "out.nii.gz", skull_strip=True)
    assert "\n" not in str(err.value)


def test_skull_strip_applies_the_deepbet_mask(tmp_path, monkeypatch):
    """deepbet's file interface, faked: its mask (a box here) must be what the output keeps."""
    calls = []

    def run_bet(
        input_paths, brain_paths=None, mask_paths=None, tiv_paths=None, threshold=0.5, n_dilate=0, no_gpu=False
    ):
        """Writes a box mask on the input's grid, as deepbet writes its mask on the input's grid."""
        img = nib.load(input_paths[0])
        mask = np.zeros(img.shape, np.uint8)
        mask[40:140, 40:180, 40:140] = 1
        nib.save(nib.Nifti1Image(mask, img.affine), mask_paths[0])
        calls.append(img.shape)

    monkeypatch.setitem(sys.modules, "deepbet", type(sys)("deepbet"))
    monkeypatch.setattr(sys.modules["deepbet"], "run_bet", run_bet, raising=False)
    _raw(tmp_path / "raw.nii.gz", 4, seed=9)
    preprocess_volume(tmp_path / "raw.nii.gz", tmp_path / "out.nii.gz", voxel_mm=4, skull_strip=True, settings=FAST)
    out = nib.load(str(tmp_path / "out.nii.gz")).get_fdata()
    assert calls == [(182, 218, 182)]  # stripped on the 1 mm MNI grid
    assert out[:10].max() == 0 and out[35:].max() == 0 and out[12:33, 12:43, 12:33].max() > 0.5


def _colin_or_skip() -> Path:
    """Colin27's path; skipped with the install hint when absent, failed in CI (CI must install it)."""
    if not COLIN.is_file():
        if os.environ.get("CI"):
            pytest.fail(COLIN_HINT)
        pytest.skip(COLIN_HINT)
    return COLIN


def test_colin27_head_with_skull(tmp_path, points):
    """Colin27 (with skull) is about in MNI space; a known rigid perturbation is recovered, and the
    head and its skull-stripped version (ch2bet) land in the same place."""
    colin = _colin_or_skip()
    img = nib.load(str(colin))
    rec0 = preprocess_volume(colin, tmp_path / "c.nii.gz", voxel_mm=2, settings=FAST)
    t0 = np.array(rec0["transform_ras"])
    assert pose_error_mm(np.eye(4), t0, points)[0] < 4.0  # Colin27's own MNI alignment differs by ~2 mm
    sv = to_scanner_space(img.get_fdata(dtype=np.float32), img.affine, seed=4, voxel_mm=1.5)
    nib.save(sv.to_nifti(), str(tmp_path / "moved.nii.gz"))
    rec1 = preprocess_volume(tmp_path / "moved.nii.gz", tmp_path / "m.nii.gz", voxel_mm=2, settings=FAST)
    mean, mx = pose_error_mm(sv.pose @ t0, np.array(rec1["transform_ras"]), points)
    assert mean < 1.5 and mx < 3.0, f"perturbed Colin27: {mean:.2f} / {mx:.2f} mm"
    bet = colin.with_name("ch2bet.nii.gz")
    if bet.is_file():
        rec2 = preprocess_volume(bet, tmp_path / "b.nii.gz", voxel_mm=2, settings=FAST)
        mean, mx = pose_error_mm(t0, np.array(rec2["transform_ras"]), points)
        assert mean < 2.0, f"head vs skull-stripped Colin27: {mean:.2f} / {mx:.2f} mm"


def measure() -> None:
    """Print pose errors and timings with the full settings (what the report quotes)."""
    import tempfile

    pts = brain_points(*mni_t1(1), step=2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for vm in (2, 1):
            for seed in (1, 2):
                sv = _raw(tmp / "raw.nii.gz", vm, seed)
                rec = preprocess_volume(tmp / "raw.nii.gz", tmp / "out.nii.gz", voxel_mm=vm, settings=Settings())
                mean, mx = pose_error_mm(sv.pose, np.array(rec["transform_ras"]), pts)
                print(
                    f"synthetic {vm} mm seed {seed} ({sv.axcodes}, voxel {sv.voxel_size}): pose error mean {mean:.2f} max {mx:.2f} mm; "
                    f"N4 {rec['n4_seconds']:.1f} s, registration {rec['registration_seconds']:.1f} s, total {rec['seconds']:.1f} s",
                    flush=True,
                )
        if not COLIN.is_file():
            print(COLIN_HINT)
            return
        img = nib.load(str(COLIN))
        for vm in (2, 1):
            t = {}
            for name, src in (("ch2", COLIN), ("ch2bet", COLIN.with_name("ch2bet.nii.gz"))):
                rec = preprocess_volume(src, tmp / f"{name}.nii.gz", voxel_mm=vm, qc_dir=tmp / "qc")
                t[name] = np.array(rec["transform_ras"])
                print(
                    f"Colin27 {name} {vm} mm: vs identity mean {pose_error_mm(np.eye(4), t[name], pts)[0]:.2f} mm, "
                    f"scales {rec['affine_scales']}; N4 {rec['n4_seconds']:.1f} s, registration {rec['registration_seconds']:.1f} s",
                    flush=True,
                )
            print(
                f"Colin27 {vm} mm: head vs skull-stripped mean/max %.2f / %.2f mm"
                % pose_error_mm(t["ch2"], t["ch2bet"], pts)
            )
            sv = to_scanner_space(img.get_fdata(dtype=np.float32), img.affine, seed=4, voxel_mm=1)
            nib.save(sv.to_nifti(), str(tmp / "moved.nii.gz"))
            rec = preprocess_volume(tmp / "moved.nii.gz", tmp / "m.nii.gz", voxel_mm=vm)
            print(
                f"Colin27 {vm} mm perturbed by {np.round(sv.rotation_deg, 1)} deg, {np.round(sv.translation_mm, 1)} mm: "
                "recovered within mean/max %.2f / %.2f mm"
                % pose_error_mm(sv.pose @ t["ch2"], np.array(rec["transform_ras"]), pts),
                flush=True,
            )


if __name__ == "__main__":
    t = time.perf_counter()
    measure()
    print(f"measured in {time.perf_counter() - t:.0f} s", file=sys.stderr)


def test_an_output_that_is_an_input_is_refused(tmp_path):
    _raw(tmp_path / "raw" / "good0.nii.gz", 4, seed=5)
    man = _manifest(tmp_path, ["good0"])
    before = man.read_bytes()
    with pytest.raises(DataError, match=r"manifest.csv: the output would overwrite an input; choose another --out-dir"):
        preprocess_manifest(man, tmp_path, voxel_mm=4, workers=1, settings=FAST)  # --out-dir = the manifest's folder
    assert man.read_bytes() == before and not (tmp_path / "volumes").exists()


def test_cli_keep_going_exits_non_zero_when_a_volume_failed(tmp_path, capsys):
    from harmlib.cli import main

    _raw(tmp_path / "raw" / "good0.nii.gz", 4, seed=6)
    _bad_files(tmp_path / "raw")
    man = _manifest(tmp_path, ["good0", "corrupt"])
    code = main(
        [
            "preprocess",
            "--manifest",
            str(man),
            "--out-dir",
            str(tmp_path / "pre"),
            "--voxel-mm",
            "4",
            "--workers",
            "1",
            "--keep-going",
        ]
    )
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the progress bar: one line
    assert code == 1 and last.startswith("harmlib: error: 1 of 2 volume(s) failed to preprocess")
    assert (tmp_path / "pre" / "manifest.csv").is_file()  # the good one is kept


def test_a_noise_cube_fails_the_registration_quality_check(tmp_path):
    # 200 mm of 10 mm voxels: it passes the head check (size, voxel, contrast) and reaches registration
    src = tmp_path / "noise.nii.gz"
    nib.save(
        nib.Nifti1Image(
            np.random.default_rng(0).random((20, 20, 20)).astype(np.float32) * 100, np.diag([10.0, 10.0, 10.0, 1.0])
        ),
        str(src),
    )
    with pytest.raises(
        DataError, match=r"noise.nii.gz: registration to MNI failed its quality check \(template correlation"
    ) as err:
        preprocess_volume(src, tmp_path / "out.nii.gz", voxel_mm=4, settings=FAST)
    assert "\n" not in str(err.value) and not (tmp_path / "out.nii.gz").exists()


def test_only_verified_outputs_count_as_done(tmp_path):
    for k in range(2):
        _raw(tmp_path / "raw" / f"good{k}.nii.gz", 4, seed=30 + k)
    man = _manifest(tmp_path, ["good0", "good1"])
    out = tmp_path / "pre"
    preprocess_manifest(man, out, voxel_mm=4, workers=1, settings=FAST)
    vols = sorted((out / "volumes").glob("*.nii.gz"))
    data = vols[0].read_bytes()
    vols[0].write_bytes(data[: len(data) // 2])  # a half-truncated output
    _, qc = preprocess_manifest(man, out, voxel_mm=4, workers=1, settings=FAST)
    assert list(qc["status"]) == ["ok", "skipped"] and vols[0].read_bytes() != data[: len(data) // 2]
    _raw(tmp_path / "raw" / "good1.nii.gz", 4, seed=99)  # the input was replaced by another volume
    _, qc = preprocess_manifest(man, out, voxel_mm=4, workers=1, settings=FAST)
    assert list(qc["status"]) == ["skipped", "ok"]
