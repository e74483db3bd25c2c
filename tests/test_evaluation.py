"""harmlib.evaluation against known values: SSIM terms, Wasserstein, random pairs, bootstrap, FID/KID,
classical baselines, tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from harmlib.config import ConfigError, load_config
from harmlib.evaluation.baselines import Nyul, WhiteStripe, ZScore, fit_harmonizer, make_baseline
from harmlib.evaluation.distributions import (
    mean_sd,
    off_diagonal,
    pair_luminance,
    pair_ssim_terms,
    pairwise_wasserstein,
    sample_pairs,
    samples_by_domain,
    site_mean_intensities,
    voxel_intensity_histograms,
)
from harmlib.evaluation.features import fid_kid, train_feature_extractor
from harmlib.evaluation.metrics import brain_mask, ssim_terms
from harmlib.evaluation.stats import bootstrap_mean_difference
from harmlib.evaluation.tables import claim_table, paper1_values, tables_dir, wide, write_table


# --------------------------------------------------------------------------- SSIM
def test_ssim_of_identical_volumes_is_one(brain_pair):
    x, _, dr = brain_pair
    terms = ssim_terms(x, x.copy(), dr)
    assert terms == pytest.approx({"ssim": 1.0, "luminance": 1.0, "contrast": 1.0, "structure": 1.0}, abs=1e-5)


def test_fast_pair_luminance_equals_ssim_terms(brain_pair):
    x, y, _ = brain_pair
    lum = pair_luminance([x, y], np.array([[0, 1], [0, 0]]))
    assert lum[0] == pytest.approx(ssim_terms(x, y)["luminance"], abs=1e-5)
    assert lum[1] == pytest.approx(1.0, abs=1e-6)
    assert lum[0] < 0.999  # another scanner's brightness lowers luminance similarity
    brain = pair_luminance([x, y], np.array([[0, 1]]), brain_only=True)
    assert brain[0] == pytest.approx(ssim_terms(x, y, mask=brain_mask(x) | brain_mask(y))["luminance"], abs=1e-5)
    assert brain[0] > lum[0] + 0.3  # x's zero background vs y's noise floor scores l ~ 0 there, not the brain


def test_pair_ssim_terms_rows(brain_pair):
    x, y, _ = brain_pair
    df = pair_ssim_terms([x], np.array([[0, 0]]), vols_b=[y])
    assert list(df.columns) == ["i", "j", "ssim", "luminance", "contrast", "structure"]
    assert 0.5 < df.at[0, "structure"] <= 1.0  # same anatomy: high structure term
    same = pair_ssim_terms([x], np.array([[0, 0]]), vols_b=[x], brain_only=True)
    assert same.at[0, "structure"] == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- distributions
def test_wasserstein_of_shifted_distributions_is_the_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    mat = pairwise_wasserstein({"s1": a, "s2": a + 3.0, "s3": a - 1.0})
    assert mat.loc["s1", "s2"] == pytest.approx(3.0)
    assert mat.loc["s2", "s3"] == pytest.approx(4.0)
    assert np.allclose(mat.to_numpy(), mat.to_numpy().T) and np.all(np.diag(mat) == 0)
    assert sorted(off_diagonal(mat)) == pytest.approx([1.0, 3.0, 4.0])
    assert mean_sd(off_diagonal(mat)) == pytest.approx((8 / 3, np.std([1.0, 3.0, 4.0])))


def test_wasserstein_on_histograms_matches_samples():
    edges = np.arange(11.0)
    centres = (edges[:-1] + edges[1:]) / 2
    w = {"a": np.eye(10)[2], "b": np.eye(10)[5]}  # point masses at 2.5 and 5.5
    mat = pairwise_wasserstein(w, weights=w, support=centres)
    assert mat.loc["a", "b"] == pytest.approx(3.0)


def test_site_intensities_and_histograms(brain_pair):
    x, y, _ = brain_pair
    df = site_mean_intensities([x, y, x], ["A", "B", "A"])
    assert samples_by_domain(df)["A"].shape == (2,)
    edges, dens = voxel_intensity_histograms([x, y], ["A", "B"], bins=20)
    assert len(edges) == 21 and set(dens) == {"A", "B"}
    assert (dens["A"] * np.diff(edges)).sum() == pytest.approx(1.0)


def test_sample_pairs_exhaustive_seeded_and_restricted():
    assert len(sample_pairs(5, n_pairs=5000)) == 10  # all distinct pairs when fewer exist than asked
    a, b = sample_pairs(60, n_pairs=100, seed=3), sample_pairs(60, n_pairs=100, seed=3)
    assert len(a) == 100 and np.array_equal(a, b) and (a[:, 0] < a[:, 1]).all()
    groups = np.array([0, 0, 1, 1, 2])
    cross = sample_pairs(5, groups_a=groups, relation="different")
    assert len(cross) == 8 and (groups[cross[:, 0]] != groups[cross[:, 1]]).all()
    two = sample_pairs(3, 4, n_pairs=5000)
    assert len(two) == 12
    with pytest.raises(ValueError, match="relation"):
        sample_pairs(3, relation="cross")


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_covers_the_true_mean_difference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 400), rng.normal(0.5, 1.0, 300)
    ci = bootstrap_mean_difference(a, b, n_boot=2000, seed=0)
    assert ci.low < 0.5 < ci.high and ci.excludes_zero and ci.low < ci.delta < ci.high
    base = rng.normal(0.9, 0.05, 200)  # paired: one image scored by two methods
    paired = bootstrap_mean_difference(base + 0.02 + rng.normal(0, 0.01, 200), base, paired=True, seed=0)
    assert paired.low < 0.02 < paired.high and paired.high - paired.low < 0.01
    assert bootstrap_mean_difference(a, b, seed=5) == bootstrap_mean_difference(a, b, seed=5)
    with pytest.raises(ValueError, match="paired samples must have equal length"):
        bootstrap_mean_difference(a, b, paired=True)


# --------------------------------------------------------------------------- FID / KID
class _Identity(nn.Module):
    """Features = the inputs: FID reduces to the Frechet distance of the inputs' Gaussians."""

    num_features = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def test_fid_zero_for_identical_and_mean_shift_squared():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 3, generator=g)
    same = fid_kid(a, a.clone(), _Identity(), subset_size=500, subsets=20)
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    b = torch.randn(3000, 3, generator=g) + torch.tensor([2.0, 0.0, 0.0])
    shifted = fid_kid(a, b, _Identity(), subset_size=500, subsets=20)
    assert shifted["fid"] == pytest.approx(4.0, rel=0.05)  # |mu_a - mu_b|^2 with equal covariances
    assert shifted["kid"] > 10 * abs(same["kid"])


def test_kid_is_unbiased_for_one_distribution():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2000, 3, generator=g), torch.randn(2000, 3, generator=g)
    out = fid_kid(a, b, _Identity(), subset_size=200, subsets=200, seed=2)
    assert abs(out["kid"]) < 3 * out["kid_std"] / np.sqrt(200) + 1e-3  # mean over subsets ~ 0, may be < 0


def test_feature_extractor_learns_scanners():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(40, 1, 16, 16, generator=g)
    images = torch.cat([base[:20] * 0.5, base[20:] * 1.5])  # two "scanners": a global intensity scale
    labels = np.repeat([0, 1], 20)
    cfg = load_config("tiny").evaluation
    ext, log = train_feature_extractor(images, labels, cfg.__class__(**{**cfg.__dict__, "feature_epochs": 8}), seed=0)
    assert ext(images).shape == (40, cfg.feature_dim) and ext.num_features == cfg.feature_dim
    assert log["accuracy"].iloc[-1] > 0.8
    out = fid_kid(images[:20], images[20:], ext, subset_size=20, subsets=5)
    assert out["fid"] > 0 and np.isfinite(out["kid"])


# --------------------------------------------------------------------------- baselines
def test_zscore_gives_mean_zero_sd_one_in_the_brain(brain_pair):
    _, y, _ = brain_pair
    z = ZScore()(y)
    m = brain_mask(y)
    assert z[m].mean() == pytest.approx(0.0, abs=1e-4) and z[m].std() == pytest.approx(1.0, abs=1e-4)
    ref = ZScore().fit([y * 2.0])
    out = ref(y)
    assert out[m].mean() == pytest.approx(2.0 * y[m].mean(), rel=1e-3)  # into the reference's units


def test_nyul_maps_landmarks_to_the_standard_scale(brain_pair):
    x, y, _ = brain_pair
    nyul = Nyul().fit([x, x * 1.2])
    out = nyul(y)
    got = np.percentile(out[brain_mask(y)], nyul.landmarks)
    assert got == pytest.approx(nyul.standard_scale, rel=1e-3, abs=1e-3 * nyul.standard_scale.max())
    with pytest.raises(ValueError, match="not fitted"):
        Nyul()(y)


def test_a_baseline_fitted_per_target_is_a_harmonizer(brain_pair):
    """Nyul fitted to each target's scans behind the one Harmonizer interface: harmonize(volume, target)."""
    from harmlib.data.io import DataError
    from harmlib.harmonize import Harmonizer

    x, y, _ = brain_pair
    h = fit_harmonizer("nyul", {"Gyro@Guys": [x], "Trio@SWU": [x * 1.5]}, ["Gyro@Guys", "Trio@SWU"])
    assert isinstance(h, Harmonizer)
    np.testing.assert_allclose(h.harmonize(y, "Guys"), make_baseline("nyul", [x])(y))
    np.testing.assert_allclose(h.harmonize(y, "SWU"), make_baseline("nyul", [x * 1.5])(y))
    with pytest.raises(DataError, match="fitted for Gyro@Guys, Trio@SWU; fit it on that target's scans"):
        h.harmonize(y, "agnostic")


def test_whitestripe_matches_the_reference_white_matter(brain_pair):
    x, y, _ = brain_pair
    ws = WhiteStripe().fit([x])
    out = ws(y)
    mu_out, _ = WhiteStripe().image_stats(out)
    assert mu_out == pytest.approx(ws.reference[0], rel=0.05)
    assert out.shape == y.shape and out.min() >= 0
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("combat")


# --------------------------------------------------------------------------- tables, config
def test_write_table_and_claim_table(tmp_path):
    stats = pd.DataFrame(
        {
            "version": ["unharmonized", "A", "unharmonized", "A"],
            "metric": ["mae", "mae", "auc", "auc"],
            "mean": [5.0, 3.0, 0.8, 0.7],
            "sd": [1.0, 0.5, 0.1, 0.1],
        }
    )
    tab = claim_table(stats, paper1_values("table3"), "unharmonized", "tiny")
    assert list(tab.columns) == ["metric", "version", "paper", "ours", "claim holds", "profile"]
    assert tab["claim holds"].tolist() == ["", True, "", False]  # lower MAE holds, lower AUC does not
    assert tab.loc[1, "paper"] == "3.30 ± 0.48" and tab.loc[1, "ours"] == "3.000 ± 0.500"
    assert wide(stats).loc["mae", "A"] == "3.000 ± 0.500"
    assert tables_dir(load_config("tiny")) == Path("runs") / "tiny" / "tables"
    path = write_table(tab, tmp_path, "t3")
    assert path == tmp_path / "t3.csv" and pd.read_csv(path).shape == tab.shape
    with pytest.raises(ValueError, match="plain file name"):
        write_table(tab, tmp_path, "../t3")


def test_evaluation_config_validates():
    assert load_config("cpu").evaluation.n_pairs == 5000
    with pytest.raises(ConfigError, match="evaluation.folds"):
        load_config("tiny", {"evaluation.folds": 1})


def test_claims_page_reads_verdicts_notes_and_missing_tables(tmp_path):
    import pandas as pd

    from harmlib.evaluation.claims import CLAIMS, claims_markdown, collect_claims

    tables = tmp_path / "tables"
    tables.mkdir()
    pd.DataFrame(
        [
            {"metric": "wasserstein", "version": v, "paper": "", "ours": "0.1 ± 0.0", "claim holds": h, "profile": "x"}
            for v, h in (("unharmonized", ""), ("A", True), ("B", True), ("agnostic", False))
        ]
    ).to_csv(tables / "paper1_table2.csv", index=False)
    pd.DataFrame([{"note": "no traveling-subject truth in this manifest (real data)", "profile": "x"}]).to_csv(
        tables / "traveling_subjects_paper1.csv", index=False
    )
    claims = collect_claims(tables)
    assert len(claims) == len(CLAIMS)
    wasser = claims[claims.claim.str.contains("Wasserstein")].iloc[0]
    assert wasser.holds is False  # one of A, B, agnostic fails: the claim does not hold
    travel = claims[claims.table == "traveling_subjects_paper1"].iloc[0]
    assert travel.holds is None and "no traveling-subject truth" in travel.why
    assert claims[claims.table == "paper1_table3"].iloc[0].why.startswith("not run")
    page = claims_markdown(claims)
    assert "**does not hold**" in page and "**not measured**" in page and "**not run**" in page
    assert page.splitlines()[0].startswith("| verdict | claim | ours | compared with | paper | profile | why |")


def test_a_claim_shows_both_sides_and_a_reason_made_of_its_numbers(tmp_path):
    import pandas as pd

    from harmlib.evaluation.claims import collect_claims

    tables = tmp_path / "tables"
    tables.mkdir()
    rows = [("GMM-DRIT", "0.761", "0.0229 ± 0.0007", True), ("DRIT++", "11.71", "0.0232 ± 0.0008", "")]
    pd.DataFrame(
        [
            {"metric": "fid", "version": v, "paper": p, "ours": o, "claim holds": h, "profile": "cpu"}
            for v, p, o, h in rows
        ]
    ).to_csv(tables / "paper2_e5_fid_kid.csv", index=False)
    pd.DataFrame(
        [
            {
                "metric": "luminance_ssim",
                "version": v,
                "paper": "",
                "ours": o,
                "claim holds": h,
                "profile": "cpu",
                "target": t,
            }
            for t in ("A", "B")
            for v, o, h in (
                ("GMM-DRIT", "0.67 ± 0.03" if t == "A" else "0.90 ± 0.01", t == "B"),
                ("DRIT++", "0.84 ± 0.02", ""),
            )
        ]
    ).to_csv(tables / "paper2_table2.csv", index=False)
    claims = collect_claims(tables).set_index("table")
    fid = (
        claims.loc["paper2_e5_fid_kid"].iloc[0]
        if isinstance(claims.loc["paper2_e5_fid_kid"], pd.DataFrame)
        else claims.loc["paper2_e5_fid_kid"]
    )
    assert (
        fid.verdict == "holds" and fid.ours == "GMM-DRIT: 0.0229 ± 0.0007" and fid.compared == "DRIT++: 0.0232 ± 0.0008"
    )
    assert fid.paper == "GMM-DRIT 0.761 vs DRIT++ 11.71" and fid.profile == "cpu"
    assert "fid, lower is better: GMM-DRIT 0.0229 < DRIT++ 0.0232" in fid.why
    e3 = claims.loc["paper2_table2"]
    assert e3.verdict == "does not hold" and "DRIT++ (A): 0.84 ± 0.02" in e3.compared
    assert (
        "GMM-DRIT (A) 0.67 < DRIT++ (A) 0.84" in e3.why
        and "GMM-DRIT (B) 0.90 > DRIT++ (B) 0.84" in e3.why
        and "not higher than DRIT++: GMM-DRIT (A)" in e3.why
    )


def test_slice_flicker_counts_jumps_between_planes_not_a_smooth_change():
    from harmlib.evaluation.metrics import slice_flicker

    zz, yy, xx = np.mgrid[:24, :32, :24]
    ref = np.where((zz - 12) ** 2 + (yy - 16) ** 2 + (xx - 12) ** 2 < 10**2, 100.0, 0.0).astype(np.float32)
    ref += np.random.default_rng(0).normal(0, 1, ref.shape).astype(np.float32) * (ref > 0)
    ramp = (1 + 0.01 * np.arange(32))[None, :, None]
    alternating = (1 + 0.01 * (-1) ** np.arange(32))[None, :, None]
    assert slice_flicker(ref, ref) == 0
    assert slice_flicker(ref * 1.1, ref) < 1e-3  # one change for the whole volume (planes differ only by their noise)
    assert slice_flicker(ref * ramp, ref) < 1e-3  # a smooth trend across planes
    assert slice_flicker(ref * alternating, ref) == pytest.approx(0.02, rel=0.05)  # +-1 % from plane to plane
    assert slice_flicker(np.moveaxis(ref * alternating, 1, 0), np.moveaxis(ref, 1, 0), axis=0) == pytest.approx(
        0.02, rel=0.05
    )
    with pytest.raises(ValueError, match="differ in shape"):
        slice_flicker(ref[:-1], ref)
