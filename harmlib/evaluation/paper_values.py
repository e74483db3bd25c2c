"""Every published number the companion compares with, written once.

Paper 1 (SSIM-guided harmonization): Tables 2-4 and the structural SSIM of its Sec. 3; paper 2 (the GMM-DRIT
thesis): E1 (clustering), E2 / Table 1 (structural SSIM of scanner-free outputs), E3 / Tables 2-3 (luminance
SSIM), E5 (FID / KID). Each value is the string as printed ("mean ± SD", a range, a percentage), keyed by
(metric, version) as `harmlib.evaluation.tables.claim_table` reads it; the notebooks import them from here.
"""

from __future__ import annotations

# Paper 1, Tables 2-4: metric -> values of the four versions, in this order.
P1_VERSIONS = ("unharmonized", "A", "B", "agnostic")
PAPER1 = {
    "table2": {
        "wasserstein": ("8.454 ± 5.347", "1.989 ± 0.703", "1.601 ± 0.492", "1.677 ± 0.559"),
        "luminance_ssim": ("0.952 ± 0.037", "0.981 ± 0.018", "0.986 ± 0.016", "0.989 ± 0.014"),
    },
    "table3": {
        "mae": ("5.36 ± 1.89", "3.30 ± 0.48", "3.39 ± 0.36", "3.31 ± 0.78"),
        "rmse": ("7.20 ± 2.38", "4.79 ± 0.46", "5.41 ± 0.80", "4.74 ± 1.05"),
        "r2": ("0.091 ± 0.571", "0.643 ± 0.051", "0.545 ± 0.094", "0.639 ± 0.140"),
    },
    "table4": {
        "accuracy": ("0.702 ± 0.062", "0.759 ± 0.095", "0.736 ± 0.052", "0.744 ± 0.065"),
        "balanced_accuracy": ("0.647 ± 0.062", "0.727 ± 0.091", "0.667 ± 0.067", "0.704 ± 0.059"),
        "auc": ("0.778 ± 0.062", "0.848 ± 0.082", "0.822 ± 0.077", "0.836 ± 0.072"),
    },
}
# Paper 1, Sec. 3: structural SSIM between different subjects (the floor) and between a volume and its harmonized self.
PAPER1_STRUCTURAL = {
    ("structural_ssim", "random pairs of subjects"): "0.68 ± 0.05",
    **{("structural_ssim", t): "0.971 ± 0.012" for t in ("A", "B", "agnostic")},
}

# Thesis E1: the GM-VAE's components against four real scanners (2650 slices).
THESIS_E1_SCORES = {"ACC": 0.833, "NMI": 0.622, "ARI": 0.603}
THESIS_E1 = {
    ("acc", "GM-VAE"): f"{100 * THESIS_E1_SCORES['ACC']:.1f} %",
    ("nmi", "GM-VAE"): f"{THESIS_E1_SCORES['NMI']:.3f}",
    ("ari", "GM-VAE"): f"{THESIS_E1_SCORES['ARI']:.3f}",
}
# Thesis E2 / Table 1: structural SSIM of each slice and its scanner-free translation (ranges over scanners; their SDs).
THESIS_TABLE1 = {("structural_ssim", "GMM-DRIT"): "0.96-0.97", ("structural_ssim", "DRIT++"): "0.21-0.32"}
THESIS_TABLE1_SD = {"GMM-DRIT": "+/- 0.01", "DRIT++": "+/- 0.07-0.11"}
THESIS_TABLE1_CI = "[0.63, 0.77]"  # 95 % CI of the difference GMM-DRIT - DRIT++
# Thesis E3 / Table 2: luminance SSIM of translations to A and to B with real scans of the target.
THESIS_TABLE2 = {
    "A": {
        ("luminance_ssim", "GMM-DRIT"): "0.99 ± 0.01",
        ("luminance_ssim", "DRIT++"): "0.98 ± 0.02",
        ("luminance_ssim", "real vs real"): "0.99 ± 0.01",
    },
    "B": {
        ("luminance_ssim", "GMM-DRIT"): "0.99 ± 0.01",
        ("luminance_ssim", "DRIT++"): "0.98 ± 0.02",
        ("luminance_ssim", "real vs real"): "0.99 ± 0.003",
    },
}
# Thesis E3 / Table 3: luminance SSIM between scanners before and after scanner-free harmonization.
THESIS_TABLE3 = {
    ("luminance_ssim", "unharmonized"): "0.97 ± 0.04",
    ("luminance_ssim", "GMM-DRIT"): "0.99 ± 0.004",
    ("luminance_ssim", "DRIT++"): "0.99 ± 0.01",
}
THESIS_TABLE3_CI = "[0.02, 0.02]"  # 95 % CI of post - pre
# Thesis E5: FID and KID of scanner-free outputs.
THESIS_E5 = {
    ("fid", "GMM-DRIT"): "0.761",
    ("kid", "GMM-DRIT"): "0.000578",
    ("fid", "DRIT++"): "11.71",
    ("kid", "DRIT++"): "0.0134",
}
