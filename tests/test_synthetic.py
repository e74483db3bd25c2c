"""The synthetic traveling-subject cohort: determinism, pairing, cohort design, effects."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import harmlib
from harmlib.data import read_manifest
from harmlib.data.anatomy import Subject, atrophy_level, make_anatomy
from harmlib.data.synthetic import (
    AD_SITES,
    AGE_SITES,
    TARGET_A,
    TARGET_B,
    TEST_SITES,
    TRAIN_SITES,
    all_sites,
    plan_cohort,
    render,
    write_cohort,
)

SMALL = {"synth.n_train_per_site": 2, "synth.n_test_per_site": 1, "synth.n_age_per_site": 1, "synth.n_ad_per_site": 1}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    cfg = harmlib.load_config("tiny", SMALL)
    out = tmp_path_factory.mktemp("cohort")
    return cfg, read_manifest(write_cohort(cfg, out))


def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(cohort, tmp_path):
    cfg, man = cohort
    again = read_manifest(write_cohort(cfg, tmp_path / "again"))
    assert (again.root / "manifest.csv").read_bytes() == (man.root / "manifest.csv").read_bytes()
    assert _digest(again.root.rglob("*.nii.gz")) == _digest(man.root.rglob("*.nii.gz"))
    first = plan_cohort(cfg.synth, cfg.seed)[0]
    assert plan_cohort(cfg.synth, cfg.seed + 1)[0].subject != first.subject  # another seed, other subjects


def test_cohort_design(cohort):
    cfg, man = cohort
    df = man.df
    assert man.domains("train") == sorted(s.domain for s in TRAIN_SITES)
    assert len(TRAIN_SITES) >= 5 and len(TEST_SITES) >= 4
    assert not set(s.domain for s in TEST_SITES) & set(man.domains("train"))  # unseen test sites
    assert set(df.loc[df.split == "train", "role"]) == {"labeled", "unlabeled"}
    assert set(df.loc[df.role == "ad", "diagnosis"]) == {"AD", "HC"}
    assert (df.loc[df.role == "age", "age"].between(8, 90)).all()
    vol = harmlib.data.load_volume(man.path(0))
    assert vol.shape == (46, 55, 46)
    np.testing.assert_allclose(vol.affine, harmlib.data.fsl_grid_affine(4))


def test_age_ranges_differ_by_site_and_ad_fraction_by_site():
    lows = [lo for _, (lo, hi) in AGE_SITES]
    assert len(set(lows)) == len(lows) and min(lows) <= 10 and max(hi for _, (lo, hi) in AGE_SITES) >= 85
    assert len({frac for _, frac in AD_SITES}) > 1


def test_every_test_subject_has_truth_at_a_and_b_and_training_rows_do_not(cohort):
    _, man = cohort
    for i, row in man.df.iterrows():
        if row.split == "train":
            assert row.truth_path == ""
            continue
        for ref in (TARGET_A, TARGET_B):
            assert man.truth(i, ref.domain).is_file()
        assert "truth/" in row.truth_path and not any("truth/" in p for p in man.df.path)


def _t(v: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(v)[None, None]


def test_traveling_subject_pairing(cohort):
    """The truth at A shares its anatomy with the test scan, not with another subject."""
    _, man = cohort
    tests = man.df.index[man.df.role == "test"]
    i, j = tests[0], man.df.index[man.df.role == "age"][0]
    scan = harmlib.data.load_volume(man.path(i)).get_fdata(dtype=np.float32)
    truth_same = harmlib.data.load_volume(man.truth(i, TARGET_A.domain)).get_fdata(dtype=np.float32)
    truth_other = harmlib.data.load_volume(man.truth(j, TARGET_A.domain)).get_fdata(dtype=np.float32)
    dr = float(max(scan.max(), truth_same.max(), truth_other.max()))
    s_same = harmlib.structural_consistency(_t(scan), _t(truth_same), dr, win_size=7).item()
    s_other = harmlib.structural_consistency(_t(scan), _t(truth_other), dr, win_size=7).item()
    assert s_same < 0.5 * s_other  # 1 - structure: the same subject is far more similar


def test_site_changes_appearance_not_anatomy():
    anat = make_anatomy(Subject("s", 50, "F", "HC", 3), 4)
    a, b = render(anat, TARGET_A, 4, 1), render(anat, TEST_SITES[0], 4, 1)
    brain = anat["mask"] > 0.5
    assert abs(a[brain].mean() - b[brain].mean()) > 0.02  # sites differ in intensity
    assert np.corrcoef(a[brain], b[brain])[0, 1] > 0.8  # ... but show the same anatomy
    assert (a[~brain] < 0.2).all()  # skull-stripped: only noise outside the brain


def test_age_and_ad_effects_move_tissue_volumes():
    def vols(age, dx):
        m = make_anatomy(Subject("s", age, "M", dx, 9), 4)  # same seed: same warp, only age and diagnosis differ
        return m["csf"].sum(), m["gm"].sum(), (m["gm"] * m["hippo"]).sum()

    young, old, ad = vols(25, "HC"), vols(85, "HC"), vols(85, "AD")
    assert old[0] > 1.2 * young[0] and old[1] < young[1]  # ventricles and sulci grow, GM shrinks
    assert ad[0] > old[0] and ad[2] < 0.8 * old[2]  # AD: more atrophy, medial-temporal GM loss
    assert atrophy_level(30, "HC") < atrophy_level(70, "HC") < atrophy_level(70, "AD")


def test_sites_are_named_and_unique():
    sites = all_sites()
    assert TARGET_A.domain == "Gyroscan Intera@Guys" and TARGET_B.domain == "TrioTim@SWU"
    assert {"mild", "strong"} <= {s.strength for s in sites.values()}


def test_synth_resumes_only_over_verified_files(tmp_path):
    from harmlib.data.synthetic import write_cohort

    cfg = harmlib.load_config(
        "tiny",
        {"synth.n_train_per_site": 2, "synth.n_test_per_site": 1, "synth.n_age_per_site": 1, "synth.n_ad_per_site": 1},
    )
    man = write_cohort(cfg, tmp_path, raw=False)
    vols = sorted((tmp_path / "train").glob("*.nii.gz"))
    good = vols[0].read_bytes()
    vols[0].write_bytes(good[:1000])  # truncated
    vols[1].write_bytes(b"")  # empty
    mtime = vols[2].stat().st_mtime_ns
    write_cohort(cfg, tmp_path, raw=False)
    assert vols[0].read_bytes() == good and vols[1].stat().st_size > 1000
    assert vols[2].stat().st_mtime_ns == mtime  # a verified file is kept, not rewritten
    assert man.is_file()


def test_a_non_physical_site_is_refused_in_one_line_naming_the_site_and_field():
    from dataclasses import replace

    from harmlib.data.io import DataError
    from harmlib.data.physics import Sequence
    from harmlib.data.synthetic import check_sites

    for seq, field in (
        (Sequence("ir", tr=900, te=3, flip=9, ti=1000, esp=7, n_readout=100), "sequence.ti"),
        (Sequence("spgr", tr=10, te=4, flip=0), "sequence.flip"),
        (Sequence("spgr", tr=10, te=12, flip=10), "sequence.tr/te"),
    ):
        bad = replace(TARGET_A, acq=replace(TARGET_A.acq, sequence=seq))
        with pytest.raises(DataError, match=rf"site Gyroscan Intera@Guys: {field}: ") as err:
            check_sites({bad.domain: bad})
        assert "\n" not in str(err.value)
    check_sites()  # the cohort's own sites are physical


def test_sites_differ_per_tissue_not_along_one_curve():
    """Sequence and field move each tissue by its own amount: between some pairs of sites the order of the tissues'
    signals changes, which no monotone intensity curve can undo."""
    sites = list(all_sites().values())
    tissues = ("gm", "caudate", "putamen", "thalamus", "pallidum", "lesion")
    orders = {tuple(np.argsort([s.signals()[t] for t in tissues])) for s in sites}
    assert len(orders) >= 3
    ratios = [s.signals()["csf"] / s.signals()["wm"] for s in sites]
    assert max(ratios) > 2 * min(ratios)  # CSF contrast differs by sequence, far beyond a global scale


def test_kspace_truncation_blurs_and_rings_only_where_the_acquisition_is_coarser():
    from harmlib.data.physics import truncate_kspace

    step = np.zeros((8, 64, 8), np.float32)
    step[:, 32:] = 1.0
    same = truncate_kspace(step, 1.0, (1.0, 0.9, 1.0))
    assert np.array_equal(same, step)  # an acquisition finer than the grid changes nothing
    coarse = truncate_kspace(step, 1.0, (1.0, 2.5, 1.0))[4, :, 4]
    assert coarse[32] < 0.9 and coarse.max() > 1.05 and coarse.min() < -0.05  # blurred edge, Gibbs over- and undershoot


def test_a_rescan_is_the_same_anatomy_with_another_noise_and_bias(cohort):
    _, man = cohort
    i = man.df.index[man.df.role == "test"][0]
    truth = harmlib.data.load_volume(man.truth(i, TARGET_A.domain)).get_fdata(dtype=np.float32)
    again = harmlib.data.load_volume(man.rescan(i, TARGET_A.domain)).get_fdata(dtype=np.float32)
    brain = truth > np.percentile(truth, 60)
    assert not np.array_equal(truth, again)
    assert np.corrcoef(truth[brain], again[brain])[0, 1] > 0.9


def test_the_oracle_undoes_what_a_curve_and_the_fields_can_and_no_more():
    """The generating model's own curve and bias fields bring a strongly different site close to the truth, but
    not to a rescan: tissue contrasts no curve maps, resolution and noise remain."""
    from harmlib.data.synthetic import TEST_SITES, oracle
    from harmlib.evaluation.gate import scale_free_ssim
    from harmlib.evaluation.metrics import brain_mask

    anat = make_anatomy(Subject("s", 50, "F", "HC", 3), 4)
    src = TEST_SITES[0]  # GE 1.5T SPGR: strongly different from A
    scan, truth, again = render(anat, src, 4, 11), render(anat, TARGET_A, 4, 12), render(anat, TARGET_A, 4, 13)
    m = brain_mask(truth)
    before = scale_free_ssim(scan, truth, m)
    best = scale_free_ssim(oracle(scan, anat, src, TARGET_A, 4, 11), truth, m)
    ceiling = scale_free_ssim(again, truth, m)
    assert before + 0.005 < best < ceiling
