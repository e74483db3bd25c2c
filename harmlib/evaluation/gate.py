"""The quality gate: every trained model passes it before its tables count (ARCHITECTURE.md, "The quality gate").

A table computed from a model that has not learned says nothing about the method, so each training
chapter measures, on held-out data and by means independent of the model:

* **reconstruction**: SSIM over the brain of held-out test volumes against x -> G(E_b(x), E_s(x));
* **translation**: an independent 3D scanner classifier, trained on real training-site volumes and
  never on model outputs, reads x harmonized to A as A and to B as B (accuracy over all cases);
* **traveling subjects**: SSIM to the same subject's true rendering at the target, before and after
  harmonization: the share of cases that moved closer and the mean gain (Nyul fitted to the target's
  training scans on the same cases is reported beside it, as the classical bar);
* **structure**: the structural term of SSIM between each harmonized volume and its original;
* **against the classical pipeline and a rescan** (synthetic cohort): the scale-invariant SSIM to the truth (each
  volume divided by its 99.5th brain percentile) of the model, at least Nyul's fitted to the target's scans, with
  the unharmonized scans and a rescan at the target beside it and the share of the rescan gap closed;
* **native resolution** (synthetic cohort, ``gate.native_mm`` finer than the model's grid): a few test subjects
  rendered at 1 mm, harmonized there: the output keeps the fine detail of the truth at that resolution, with
  scale-invariant SSIM to the 1 mm truth before and after, and Nyul at 1 mm beside it.

Each criterion is a row (value, threshold from ``cfg.gate``, passed) of ``gate_<model>.csv``.
A model whose gate fails is shown as "model below its quality gate" with these numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harmlib.config import EvaluationConfig, GateConfig
from harmlib.data.datasets import Normalizer
from harmlib.data.io import load_volume
from harmlib.data.manifest import Manifest
from harmlib.data.mni import block_average
from harmlib.data.physics import TISSUES
from harmlib.data.synthetic import COHORT_MODELS, COHORT_VERSION, write_native_copies
from harmlib.evaluation.baselines import fit_harmonizer
from harmlib.evaluation.clustering import intensity_histograms
from harmlib.evaluation.features import ScannerClassifier, train_feature_extractor
from harmlib.evaluation.metrics import (
    brain_mask,
    fine_detail,
    lesion_contrast_kept,
    psnr,
    scale_free,
    ssim_terms,
    tissue_contrast_error,
)
from harmlib.harmonize import SELF, SELF_AT, resample, to_grid

Harmonize = Callable[
    [np.ndarray, np.ndarray, str], np.ndarray
]  # (volume, affine, target domain or "self"/"agnostic") -> volume


def _load(path) -> tuple[np.ndarray, np.ndarray]:
    """A volume and its affine, read once: the gate and the convergence table visit the same test volumes,
    truths and training scans many times (each target, each snapshot, Nyul, the classifier)."""
    p = Path(path)
    return _load_cached(str(p), p.stat().st_mtime_ns)


@functools.lru_cache(maxsize=128)  # the cpu cohort's test volumes, truths and training scans: ~100 x 3.6 MB
def _load_cached(
    path: str, mtime_ns: int
) -> tuple[np.ndarray, np.ndarray]:  # the mtime: a rewritten file is read again
    img = load_volume(path)  # shared between callers, none of which changes an input in place
    return img.get_fdata(dtype=np.float32), img.affine


def traveling_summary(cases: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """What the gate's traveling cases (``evaluate_gate``'s second result) say, three ways: SSIM, structure and
    PSNR to the truth before/after per target (mean and SD), the share of cases each one rose, and per site."""
    per_target = cases.drop(columns=["subject", "site"]).groupby("target").agg(["mean", "std"]).round(3).T
    paired = cases.dropna()
    rose = pd.Series(
        {t: float((paired[f"{t} after"] > paired[f"{t} before"]).mean()) for t in ("SSIM", "structure", "PSNR")}
    )
    cols = [c for c in paired.columns if c.endswith(("before", "after"))]
    return per_target, rose, paired.groupby("site")[cols].mean().round(3).T


def reconstruction_cases(test: Manifest, harmonize: Harmonize, sites: Mapping[str, str] | None = None) -> pd.DataFrame:
    """SSIM over the brain of each held-out volume against its reconstruction.

    ``sites`` None: each test volume at its own (unseen) site, target ``self`` (paper 1's E_s reads any image's
    style). ``sites`` {"A": domain, ...}: the held-out subjects' renderings at those training sites, target
    ``self:<domain>``: a 2D model's attribute encoder (DRIT++'s E^a) needs the site's code.
    """
    recs = []
    for i in range(len(test)):
        cases = (
            [(test.path(i), SELF, test.df.at[i, "domain"])]
            if sites is None
            else [(test.truth(i, d), f"{SELF_AT}{d}", d) for d in sites.values()]
        )
        for path, target, site in cases:
            vol, aff = _load(path)
            out = harmonize(vol, aff, target)
            recs.append(
                {
                    "subject": test.df.at[i, "subject"],
                    "site": site,
                    "reconstruction SSIM": ssim_terms(out, vol, mask=brain_mask(vol))["ssim"],
                }
            )
    return pd.DataFrame(recs)


def traveling_cases(
    test: Manifest, harmonize: Harmonize, targets: Mapping[str, str], extra: Sequence[str] = ("agnostic",)
) -> tuple[pd.DataFrame, dict]:
    """One row per (test volume, target): SSIM, structure and PSNR to the true rendering at the target
    before and after harmonization, and the structural SSIM of the output vs its original.

    ``targets``: {"A": domain, "B": domain}; ``extra`` targets (agnostic) have no truth and only get the
    structure row. Returns the table and the outputs {target name: [volumes]} for the classifier.
    """
    recs, outputs = [], {name: [] for name in [*targets, *extra]}
    for i in range(len(test)):
        vol, aff = _load(test.path(i))
        orig_mask = brain_mask(vol)
        for name in [*targets, *extra]:
            out = harmonize(vol, aff, targets.get(name, name))
            outputs[name].append(out)
            rec = {
                "subject": test.df.at[i, "subject"],
                "site": test.df.at[i, "domain"],
                "target": name,
                "structure vs original": ssim_terms(out, vol, mask=orig_mask)["structure"],
            }
            if name in targets:
                truth, _ = _load(test.truth(i, targets[name]))
                m = brain_mask(truth)
                before, after = ssim_terms(vol, truth, mask=m), ssim_terms(out, truth, mask=m)
                rescan = test.rescan(i, targets[name])
                rec |= _tissue_terms(test, i, vol, out, truth)
                rec |= {
                    "SI before": scale_free_ssim(vol, truth, m),
                    "SI after": scale_free_ssim(out, truth, m),
                    "SI rescan": scale_free_ssim(_load(rescan)[0], truth, m) if rescan.is_file() else np.nan,
                    "SSIM before": before["ssim"],
                    "SSIM after": after["ssim"],
                    "structure before": before["structure"],
                    "structure after": after["structure"],
                    "PSNR before": psnr(vol[m], truth[m]),
                    "PSNR after": psnr(out[m], truth[m]),
                }
            recs.append(rec)
    return pd.DataFrame(recs), outputs


def target_nyul(manifest: Manifest, targets: Mapping[str, str]):
    """The classical bar: Nyul fitted to each target's training scans (a `ClassicalHarmonizer`, any grid)."""
    train = manifest.select("train")
    refs = {d: [_load(p)[0] for p, dd in zip(train.paths(), train.df["domain"]) if dd == d] for d in targets.values()}
    return fit_harmonizer("nyul", refs, list(refs))


def nyul_cases(manifest: Manifest, targets: Mapping[str, str], nyul=None) -> pd.DataFrame:
    """Nyul fitted to each target's training scans (``nyul``: already fitted) on the same traveling cases."""
    test = manifest.select("test", "test")
    nyul = nyul or target_nyul(manifest, targets)
    recs = []
    for name, domain in targets.items():
        for i in range(len(test)):
            vol, _ = _load(test.path(i))
            truth, _ = _load(test.truth(i, domain))
            m = brain_mask(truth)
            recs.append(
                {
                    "target": name,
                    "site": test.df.at[i, "domain"],
                    "SSIM after": ssim_terms(out := nyul.harmonize(vol, domain), truth, mask=m)["ssim"],
                    "SI after": scale_free_ssim(out, truth, m),
                    **_tissue_terms(test, i, vol, out, truth),
                }
            )
    return pd.DataFrame(recs)


def _tissue_terms(test: Manifest, i: int, vol: np.ndarray, out: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Tissue contrast of a case against its truth (`metrics.tissue_contrast_error`, before and after) and the lesions'
    contrast kept, where the cohort wrote the subject's label map (cohort version 2); else nothing."""
    path = test.labels(i)
    if not path.is_file():
        return {}
    labels, _ = _load(path)
    return {
        "tissue error before": tissue_contrast_error(vol, truth, labels, TISSUES),
        "tissue error after": tissue_contrast_error(out, truth, labels, TISSUES),
        "lesion kept": lesion_contrast_kept(out, truth, labels, TISSUES.index("lesion") + 1, TISSUES.index("wm") + 1),
    }


def native_cases(cfg, manifest: Manifest, harmonize: Harmonize, targets: Mapping[str, str], nyul=None) -> pd.DataFrame:
    """The native-resolution row's cases: ``cfg.gate.native_subjects`` test subjects rendered at ``cfg.gate.native_mm``
    (finer than the model's grid; `harmlib.data.synthetic.write_native_copies`), harmonized on that grid to each
    target and compared with their truth there. Per case: fine detail (`metrics.fine_detail`) of the output, the
    input and the model-grid output resampled to the fine grid (what inference returned before it kept the scan's
    resolution) over the truth's; scale-invariant SSIM to the truth before, after and with Nyul (fitted to the
    target's scans, applied on the fine grid). Empty when the row does not apply: no synthetic cohort to render
    (real data), or data already at ``native_mm``."""
    mm = cfg.gate.native_mm
    if not native_applies(cfg, manifest):
        return pd.DataFrame()
    copies = write_native_copies(
        cfg, manifest.root / f"native_{mm}mm", mm, cfg.gate.native_subjects, list(targets.values())
    )
    grid, grid_affine = _load(manifest.select("test", "test").path(0))
    nyul = nyul or target_nyul(manifest, targets)
    recs = []
    for row in copies.to_dict("records"):
        vol, affine = _load(row["path"])
        for name, domain in targets.items():
            truth, _ = _load(row[f"truth {domain}"])
            m = brain_mask(truth)
            box = _bounding_box(m, margin=6)  # the metrics on the brain's box: a 1 mm volume is mostly background
            out, coarse = _native_outputs(harmonize, vol, affine, domain, grid.shape, grid_affine)
            t, mb = truth[box], m[box]
            detail = fine_detail(t, mb)
            recs.append(
                {
                    "subject": row["subject"],
                    "site": row["site"],
                    "target": name,
                    "detail after": fine_detail(out[box], mb) / detail,
                    "detail before": fine_detail(vol[box], mb) / detail,
                    "detail model grid": fine_detail(coarse[box], mb) / detail,
                    "SSIM before": scale_free_ssim(vol[box], t, mb),
                    "SSIM after": scale_free_ssim(out[box], t, mb),
                    "SSIM Nyul": scale_free_ssim(nyul.harmonize(vol, domain)[box], t, mb),
                }
            )
    return pd.DataFrame(recs)


def native_applies(cfg, manifest: Manifest) -> bool:
    """Whether the gate has a native-resolution row: a synthetic cohort to render, at a grid coarser than
    ``gate.native_mm`` (real data has no second rendering; data at 1 mm is already the scan's own resolution)."""
    mm = cfg.gate.native_mm
    return bool(mm) and mm < cfg.data.voxel_mm and bool(manifest.df["dataset"].eq("synthetic").all())


def _native_outputs(
    harmonize: Harmonize, vol: np.ndarray, affine: np.ndarray, domain: str, grid_shape, grid_affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A fine scan harmonized at its own resolution, and the model-grid output resampled to the fine grid (what
    inference returned before it kept the scan's resolution)."""
    on_grid = harmonize(to_grid(vol, affine, grid_affine, grid_shape), grid_affine, domain)
    return harmonize(vol, affine, domain), resample(on_grid, grid_affine, affine, vol.shape)


def native_example(cfg, manifest: Manifest, harmonize: Harmonize, domain: str) -> dict[str, np.ndarray]:
    """The first native-resolution gate subject (`native_cases`, files already written) for a figure: its scan, harmonized
    to ``domain`` at its own resolution, the model-grid output resampled, and its truth there; each divided by its
    99.5th brain percentile (so one grey scale fits all) and cropped to the middle half of each axis (a zoom where
    the difference between 1 and 2 mm shows). Empty when the gate has no native row."""
    mm = cfg.gate.native_mm
    if not native_applies(cfg, manifest):
        return {}
    row = write_native_copies(cfg, manifest.root / f"native_{mm}mm", mm, 1, [domain]).iloc[0]
    vol, affine = _load(row["path"])
    truth, _ = _load(row[f"truth {domain}"])
    grid, grid_affine = _load(manifest.select("test", "test").path(0))
    out, coarse = _native_outputs(harmonize, vol, affine, domain, grid.shape, grid_affine)
    m = brain_mask(truth)
    box = tuple(slice(n // 4, n - n // 4) for n in vol.shape)
    versions = {
        f"input ({row['site'].split('@')[-1]}, {mm} mm)": vol,
        f"harmonized at {mm} mm": out,
        f"model grid ({cfg.data.voxel_mm} mm) resampled": coarse,
        f"truth at target ({mm} mm)": truth,
    }
    return {k: scale_free(v, m)[box] for k, v in versions.items()}


def scale_free_ssim(v: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """SSIM to the truth over ``mask`` with each volume divided by its 99.5th percentile there."""
    return ssim_terms(scale_free(v, mask), scale_free(truth, mask), mask=mask)["ssim"]


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo, hi = np.maximum(idx.min(0) - margin, 0), np.minimum(idx.max(0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def native_rows(native: pd.DataFrame, gate: GateConfig, mm: int) -> tuple[list[tuple[str, float, float]], dict]:
    """The native-resolution criteria (fine detail kept, per target) and their context (SSIM, detail before)."""
    rows, info = [], {}
    for name, g in native.groupby("target", sort=True):
        rows.append(
            (
                f"native {mm} mm -> {name}: fine detail kept (output / truth, scale-invariant)",
                g["detail after"].mean(),
                gate.detail,
            )
        )
        info[f"native {mm} mm -> {name}: SSIM to truth before / after / Nyul (scale-invariant)"] = (
            f"{g['SSIM before'].mean():.3f} / {g['SSIM after'].mean():.3f} / {g['SSIM Nyul'].mean():.3f}"
        )
        info[f"native {mm} mm -> {name}: fine detail of the input / of the model-grid output resampled"] = (
            f"{g['detail before'].mean():.3f} / {g['detail model grid'].mean():.3f}"
        )
    return rows, info


def _classifier_input(vols: Sequence[np.ndarray], factor: int) -> torch.Tensor:
    """Normalized as in training (percentile scaling), block-averaged to the classifier's grid."""
    norm = Normalizer()
    xs = [norm.forward(block_average(v, factor) if factor > 1 else v)[0] for v in vols]
    return torch.from_numpy(np.stack(xs).astype(np.float32))[:, None]


class HistogramClassifier:
    """A scanner classifier on intensity histograms: multinomial logistic regression on the histogram of
    each volume's brain voxels after the training normalization (``gate.classifier: histogram``).

    Measured on the cpu cohort: the 3D CNN (``ScannerClassifier``) fits the 50 training volumes (0.96)
    but reads the true renderings of unseen subjects at A and B as A and B in only 19 % of cases: it
    learns the training subjects, not the scanners. Histograms carry the scanner's contrast and not the
    anatomy's shape, so they generalize to new subjects; the gate reports how well (its sanity row). Over
    the brain (see `features`) they read the true renderings at A and B correctly in 31 of 32 cases, the
    unharmonized test scans as A or B in 4 of 32, and Nyul fitted to the target's scans in 32 of 32.
    """

    def __init__(self, bins: int = 64, seed: int = 0) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.bins = bins
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, random_state=seed))

    def features(self, vols: Sequence[np.ndarray]) -> np.ndarray:
        """The histogram of the brain's voxels (`metrics.brain_mask`, Otsu's cut) after the training normalization.

        Not every voxel above a fixed floor: at noisy sites the Rician background rises above it (GE 1.5T@IOP: 5.6 %
        of the voxels in the lowest bin, target A: 0.01 %), and the classifier then read the background noise, a
        property no brain harmonizer should change (Nyul to A was read as A in 50 % of cases; over the brain, 100 %).
        """
        norm = Normalizer()
        return (
            intensity_histograms([norm.forward(v)[0][brain_mask(v)] for v in vols], self.bins)
            if len(vols)
            else np.zeros((0, self.bins))
        )

    def fit(self, vols: Sequence[np.ndarray], labels: Sequence[str]) -> HistogramClassifier:
        self.model.fit(self.features(vols), list(labels))
        return self

    def predict(self, vols: Sequence[np.ndarray]) -> list[str]:
        return list(self.model.predict(self.features(vols)))


def train_scanner_classifier(
    manifest: Manifest, gate: GateConfig, evaluation: EvaluationConfig, data_mm: int, seed: int = 0
) -> tuple[ScannerClassifier, list[str], pd.DataFrame]:
    """An independent 3D scanner classifier on the real (unharmonized) training-site volumes only."""
    train = manifest.select("train")
    domains = manifest.domains("train")
    factor = max(1, gate.classifier_mm // data_mm)
    x = _classifier_input([_load(p)[0] for p in train.paths()], factor)
    y = np.array([domains.index(d) for d in train.df["domain"]])
    ev = EvaluationConfig(**{**evaluation.__dict__, "feature_epochs": gate.classifier_epochs})
    extractor, log = train_feature_extractor(x, y, ev, seed=seed, batch_size=8)
    return extractor.classifier, domains, log


@torch.no_grad()
def classify(
    classifier: ScannerClassifier, domains: Sequence[str], vols: Sequence[np.ndarray], factor: int
) -> list[str]:
    logits = classifier(_classifier_input(vols, factor))
    return [domains[k] for k in logits.argmax(1).tolist()]


def scanner_classifier(manifest: Manifest, cfg) -> Callable[[Sequence[np.ndarray]], list[str]]:
    """The gate's independent scanner classifier, trained on the real training-site volumes only
    (``cfg.gate.classifier``: ``histogram`` or the 3D CNN ``cnn``); returns its predict function."""
    train = manifest.select("train")
    if cfg.gate.classifier == "histogram":
        clf = HistogramClassifier(seed=cfg.seed).fit([_load(p)[0] for p in train.paths()], list(train.df["domain"]))
        return lambda vols: [str(p) for p in clf.predict(vols)]
    net, domains, _ = train_scanner_classifier(manifest, cfg.gate, cfg.evaluation, cfg.data.voxel_mm, cfg.seed)
    factor = max(1, cfg.gate.classifier_mm // cfg.data.voxel_mm)
    return lambda vols: classify(net, domains, vols, factor)


def gate_table(
    model: str,
    profile: str,
    gate: GateConfig,
    rec: pd.DataFrame,
    trav: pd.DataFrame,
    accuracy: float,
    nyul: pd.DataFrame | None = None,
    native: pd.DataFrame | None = None,
    native_mm: int = 1,
) -> pd.DataFrame:
    """The gate's rows: criterion, value, threshold, passed (and the model and profile); ``native``: the
    native-resolution cases (`native_cases`) at ``native_mm``."""
    paired = trav.dropna(subset=["SSIM after"])
    rows = [
        ("reconstruction SSIM (held-out, over the brain)", rec["reconstruction SSIM"].mean(), gate.reconstruction),
        ("translation accuracy (independent scanner classifier)", accuracy, gate.translation),
    ]
    for name, grp in paired.groupby("target", sort=True):
        gain = grp["SSIM after"] - grp["SSIM before"]
        rows += [
            (
                f"traveling subjects -> {name}: share closer to the truth (SSIM)",
                float((gain > 0).mean()),
                gate.improved,
            ),
            (f"traveling subjects -> {name}: mean SSIM gain", float(gain.mean()), gate.min_gain),
        ]
    rows.append(("structural SSIM harmonized vs original", trav["structure vs original"].mean(), gate.structure))
    sceptic: dict[str, str] = {}
    if nyul is not None and len(nyul) and "SI after" in nyul:
        more, sceptic = rescan_rows(paired, nyul, gate)
        rows += more
    native_info: dict[str, str] = {}
    if native is not None and len(native):
        more, native_info = native_rows(native, gate, native_mm)
        rows += more
    info = {
        f"SSIM to truth -> {n}: before / after": f"{g['SSIM before'].mean():.3f} / {g['SSIM after'].mean():.3f}"
        for n, g in paired.groupby("target")
    }
    if nyul is not None and len(nyul):
        info |= {
            f"Nyul fitted to {n}'s scans: SSIM to truth": f"{g['SSIM after'].mean():.3f}"
            for n, g in nyul.groupby("target")
        }
    info |= {
        f"PSNR to truth -> {n}: before / after (dB)": f"{g['PSNR before'].mean():.2f} / {g['PSNR after'].mean():.2f}"
        for n, g in paired.groupby("target")
    }
    return _gate_frame(model, profile, rows, sceptic | info | native_info)


def rescan_rows(
    trav: pd.DataFrame, nyul: pd.DataFrame, gate: GateConfig
) -> tuple[list[tuple[str, float, float]], dict[str, str]]:
    """What a sceptic asks, per target, on the scale-invariant SSIM to the truth (each volume divided by its 99.5th
    brain percentile: a global rescale earns nothing): the model's margin over Nyul fitted to the target's scans (a
    criterion: a deep model below the classical pipeline says nothing about the method), and, as context, the
    unharmonized scans, Nyul and a rescan at the target (the same anatomy, another scan seed: the ceiling) beside
    the model, and the share of the rescan gap each closes, (after - before) / (rescan - before)."""
    rows, info = [], {}
    for name, g in trav.groupby("target", sort=True):
        n = nyul[nyul["target"] == name]
        before, after, ceiling, classical = (
            g["SI before"].mean(),
            g["SI after"].mean(),
            g["SI rescan"].mean(),
            n["SI after"].mean(),
        )
        rows.append(
            (
                f"traveling subjects -> {name}: scale-invariant SSIM to truth, model minus Nyul",
                after - classical,
                gate.nyul_margin,
            )
        )
        info[f"-> {name}: scale-invariant SSIM to truth: before / model / Nyul / rescan"] = (
            f"{before:.4f} / {after:.4f} / {classical:.4f} / {ceiling:.4f}"
        )
        gap = ceiling - before
        if gap > 0:  # the same anatomy rescanned at the target: the ceiling of what harmonization can reach
            rows.append(
                (
                    f"traveling subjects -> {name}: share of the rescan gap closed",
                    (after - before) / gap,
                    gate.gap_closed,
                )
            )
            info[f"-> {name}: share of the rescan gap closed by Nyul"] = f"{(classical - before) / gap:.1%}"
        if "tissue error after" in g and "tissue error after" in n:
            rows += _tissue_rows(name, g, n, gate)
            info[
                f"-> {name}: tissue-contrast error (|tissue/WM - truth's|, mean over tissues): before / model / Nyul"
            ] = (
                f"{g['tissue error before'].mean():.4f} / {g['tissue error after'].mean():.4f} / "
                f"{n['tissue error after'].mean():.4f}"
            )
    return rows, info


def _tissue_rows(name: str, g: pd.DataFrame, n: pd.DataFrame, gate: GateConfig) -> list[tuple[str, float, float]]:
    """Criteria on what a global curve cannot tell apart: the tissue-contrast error (|tissue/WM - truth's|, mean over
    tissues) no worse than Nyul's, and the lesions' contrast to WM kept (where the cases have lesions)."""
    rows = [
        (
            f"traveling subjects -> {name}: tissue-contrast error, Nyul's minus the model's",
            n["tissue error after"].mean() - g["tissue error after"].mean(),
            gate.tissue_margin,
        )
    ]
    kept = g["lesion kept"].dropna()
    if len(kept):
        rows.append(
            (
                f"traveling subjects -> {name}: lesions' contrast to WM kept (share of the truth's)",
                kept.mean(),
                gate.lesion_kept,
            )
        )
    return rows


def _gate_frame(
    model: str, profile: str, rows: Sequence[tuple[str, float, float]], info: Mapping[str, str]
) -> pd.DataFrame:
    """One gate's table: a row per (criterion, value, threshold) with its verdict, then the context rows (no threshold)."""
    crit = [{"criterion": c, "value": round(float(v), 4), "threshold": t, "passed": bool(v >= t)} for c, v, t in rows]
    out = pd.DataFrame(crit + [{"criterion": k, "value": v, "threshold": "", "passed": ""} for k, v in info.items()])
    out.insert(0, "model", model)
    out["profile"] = profile
    return out


def clustering_gate(
    model: str, profile: str, gate: GateConfig, scores: Mapping[str, float], baseline: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """The GM-VAE's gate (paper 2, stage 1): do its mixture components find the scanners (E1)?

    ``scores``: {"ACC", "NMI", "ARI"} of the components against the true training scanners
    (`clustering.clustering_scores`); ``baseline``: the same for k-means on the slices' intensity histograms,
    shown beside as the sanity bar (it needs no training).
    """
    rows = [
        ("E1 clustering accuracy (components vs true scanners)", scores["ACC"], gate.clustering_acc),
        ("E1 NMI (components vs true scanners)", scores["NMI"], gate.clustering_nmi),
    ]
    info = {"E1 ARI": f"{scores['ARI']:.3f}"}
    if baseline:
        info["k-means on intensity histograms of the same slices: ACC / NMI"] = (
            f"{baseline['ACC']:.3f} / {baseline['NMI']:.3f}"
        )
    return _gate_frame(model, profile, rows, info)


def gate_criteria(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a gate table that are criteria (they have a threshold); the others are context."""
    return table[table["threshold"].astype(str) != ""]


def gate_passed(table: pd.DataFrame) -> bool:
    """Whether every criterion with a threshold holds."""
    crit = gate_criteria(table)
    return bool(len(crit)) and bool(crit["passed"].astype(str).eq("True").all())


def gate_failures(table: pd.DataFrame) -> list[str]:
    """The failing criteria as 'criterion value < threshold' lines (the reason a claim is not judged)."""
    crit = gate_criteria(table)
    return [
        f"{r.criterion} {f'{float(r.value):.3f}'.replace('-0.000', '0.000')} < {float(r.threshold):.2f}"
        for r in crit.itertuples()
        if str(r.passed) != "True"
    ]


def evaluate_gate(
    model: str,
    cfg,
    manifest: Manifest,
    harmonize: Harmonize,
    targets: Mapping[str, str],
    extra: Sequence[str] = ("agnostic",),
    reconstruction_sites: Mapping[str, str] | None = None,
    gate: GateConfig | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The whole gate of one model on the test cohort: (gate table, per-case traveling table).

    ``cfg`` is the run's config (profile, gate thresholds, data grid); ``targets`` {"A": domain, ...}; ``extra``
    the targets without a truth (agnostic, scanner-free) that count in the structure criterion;
    ``reconstruction_sites`` see `reconstruction_cases`; ``gate`` overrides ``cfg.gate`` (e.g. the 2D models'
    structure threshold).
    """
    gate = gate or cfg.gate
    test = manifest.select("test", "test")
    rec = reconstruction_cases(test, harmonize, reconstruction_sites)
    trav, outputs = traveling_cases(test, harmonize, targets, extra)
    predict = scanner_classifier(manifest, cfg)
    hits = [pred == targets[name] for name in targets for pred in predict(outputs[name])]
    truth_hits = [
        pred == targets[name]
        for name in targets
        for pred in predict([_load(test.truth(i, targets[name]))[0] for i in range(len(test))])
    ]
    nyul = target_nyul(manifest, targets)
    native = native_cases(cfg, manifest, harmonize, targets, nyul)
    table = gate_table(
        model,
        cfg.profile,
        gate,
        rec,
        trav,
        float(np.mean(hits)),
        nyul_cases(manifest, targets, nyul),
        native,
        cfg.gate.native_mm,
    )
    context = {
        f"{cfg.gate.classifier} scanner classifier: true renderings at the targets read correctly": f"{np.mean(truth_hits):.3f}",
        "data the gate ran on": data_description(manifest),
    }
    sanity = pd.DataFrame(
        [
            {"model": model, "criterion": k, "value": v, "threshold": "", "passed": "", "profile": cfg.profile}
            for k, v in context.items()
        ]
    )
    return pd.concat([table, sanity], ignore_index=True), trav


@dataclass(frozen=True)
class BarCase:
    """One traveling case of the classical bar: test row ``i`` harmonized to ``target`` (``domain``): the scan, its
    truth at the target, the truth's brain, the oracle (the generating model's exact curve and fields) and the rescan
    at the target (None when the cohort has none)."""

    i: int
    target: str
    domain: str
    vol: np.ndarray
    truth: np.ndarray
    mask: np.ndarray
    oracle: np.ndarray
    rescan: np.ndarray | None


def bar_cases(cfg, manifest: Manifest, targets: Mapping[str, str], n: int | None = None):
    """The gate's traveling cases (healthy test scans, synthetic cohort) with what needs no model: a `BarCase` per
    (test row, target), the first ``n`` rows (None: all)."""
    from harmlib.data.anatomy import make_anatomy
    from harmlib.data.synthetic import all_sites, healthy_test_scans, oracle, scan_seed

    test = manifest.select("test", "test")
    scans, sites = healthy_test_scans(cfg.synth, cfg.seed), all_sites()
    for i in range(len(test) if n is None else min(n, len(test))):
        vol, _ = _load(test.path(i))
        scan = scans[test.df.at[i, "subject"]]
        anat = make_anatomy(scan.subject, cfg.data.voxel_mm)
        for name, domain in targets.items():
            truth, _ = _load(test.truth(i, domain))
            exact = oracle(vol, anat, scan.site, sites[domain], cfg.data.voxel_mm, scan_seed(scan, scan.site))
            rescan = test.rescan(i, domain)
            again = _load(rescan)[0] if rescan.is_file() else None
            yield BarCase(i, name, domain, vol, truth, brain_mask(truth), exact, again)


def classical_bar(cfg, manifest: Manifest, targets: Mapping[str, str]) -> pd.DataFrame:
    """What needs no deep model, on the gate's traveling cases (synthetic cohort): the unharmonized scans, z-score,
    WhiteStripe and Nyul fitted to all training scans, Nyul fitted to the target's, the oracle (the generating
    model's exact curve and fields, `harmlib.data.synthetic.oracle`: the ceiling of an intensity-only method) and a
    rescan at the target. Per (method, target): the scale-invariant SSIM to the truth, the share of the rescan gap
    closed, the tissue-contrast error and the lesions' contrast kept (means over the cases)."""
    test, train = manifest.select("test", "test"), manifest.select("train")
    everyone = {None: [_load(p)[0] for p in train.paths()]}
    names = {"zscore": "z-score", "whitestripe": "WhiteStripe", "nyul": "Nyul"}
    methods = {f"{label} (all training scans)": fit_harmonizer(b, everyone) for b, label in names.items()}
    methods["Nyul (the target's scans)"] = target_nyul(manifest, targets)
    recs = []
    for case in bar_cases(cfg, manifest, targets):
        versions = {"unharmonized": case.vol}
        versions |= {
            k: h.harmonize(case.vol, case.domain if k.endswith("target's scans)") else "agnostic")
            for k, h in methods.items()
        }
        versions["oracle (the generating model's curve and fields)"] = case.oracle
        if case.rescan is not None:
            versions["rescan at the target"] = case.rescan
        for method, v in versions.items():
            terms = _tissue_terms(test, case.i, case.vol, v, case.truth)
            recs.append(
                {"method": method, "target": case.target, "SI": scale_free_ssim(v, case.truth, case.mask)}
                | {k: terms.get(k, np.nan) for k in ("tissue error after", "lesion kept")}
            )
    df = pd.DataFrame(recs).groupby(["target", "method"], sort=False).mean().reset_index()
    for _, g in df.groupby("target"):
        before = float(g.loc[g["method"] == "unharmonized", "SI"].iloc[0])
        ceiling = g.loc[g["method"] == "rescan at the target", "SI"]
        gap = float(ceiling.iloc[0]) - before if len(ceiling) else np.nan
        df.loc[g.index, "gap closed"] = (g["SI"] - before) / gap
    return df.dropna(axis=1, how="all").rename(  # no lesion in these cases: no lesion column
        columns={
            "SI": "scale-invariant SSIM to truth",
            "gap closed": "share of the rescan gap closed",
            "tissue error after": "tissue-contrast error",
            "lesion kept": "lesion contrast kept",
        }
    )


def data_description(manifest: Manifest) -> str:
    """Which data a table was computed on: the synthetic cohort and its version, or real data."""
    if manifest.df["dataset"].eq("synthetic").all():
        return f"synthetic traveling-subject cohort, version {COHORT_VERSION} ({COHORT_MODELS[COHORT_VERSION]})"
    return f"real data: {', '.join(sorted(manifest.df['dataset'].astype(str).unique()))}"


def convergence(
    snapshots: Mapping[int, Callable[[], Harmonize]],
    manifest: Manifest,
    targets: Mapping[str, str],
    n_test: int = 4,
    reconstruction_sites: Mapping[str, str] | None = None,
    classifier: Callable[[Sequence[np.ndarray]], list[str]] | None = None,
) -> pd.DataFrame:
    """The gate's metrics at each training snapshot, on ``n_test`` test volumes spread over the sites.

    ``snapshots``: {step: a function returning that snapshot's harmonize function}. One row per step:
    reconstruction SSIM, SSIM to truth after harmonization to each target (and before), structure vs original,
    and with ``classifier`` (the gate's `scanner_classifier`) the translation accuracy.
    ``reconstruction_sites``: as in `reconstruction_cases` (the 2D models reconstruct renderings at training sites).
    """
    test = manifest.select("test", "test")
    idx = np.linspace(0, len(test) - 1, min(n_test, len(test))).round().astype(int)
    sub = Manifest(test.df.iloc[idx].reset_index(drop=True), test.root)
    rows = []
    for step, make in sorted(snapshots.items()):
        fn = make()
        rec = reconstruction_cases(sub, fn, reconstruction_sites)
        trav, outputs = traveling_cases(sub, fn, targets, extra=())
        row = {
            "step": step,
            "reconstruction SSIM": rec["reconstruction SSIM"].mean(),
            "structure vs original": trav["structure vs original"].mean(),
        }
        if classifier is not None:
            hits = [p == targets[name] for name in targets for p in classifier(outputs[name])]
            row["translation accuracy"] = float(np.mean(hits))
        for name, g in trav.groupby("target"):
            row[f"SSIM to truth -> {name}"] = g["SSIM after"].mean()
            row[f"SSIM to truth -> {name} (unharmonized)"] = g["SSIM before"].mean()
        rows.append(row)
    return pd.DataFrame(rows)
