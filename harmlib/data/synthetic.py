"""The embedded default data: a seeded synthetic multi-site traveling-subject cohort.

Anatomy comes from ``harmlib.data.anatomy``; this module defines the scanner-site pairs, renders an
anatomy as a site sees it, plans the cohorts of the papers' design and writes NIfTI + manifest:

* training cohort: 5 scanner-site pairs, half of each labeled, half unlabeled (paper 1's
  semi-supervised pairs); ``Gyroscan Intera@Guys`` and ``TrioTim@SWU`` play targets A and B;
* healthy test cohort on 4 unseen sites;
* an age cohort whose age ranges differ by site (as in ABIDE);
* an AD/HC cohort across sites with different AD proportions (as in ADNI);
* every test subject also rendered at A and B: traveling-subject truth, written under ``truth/``
  and referenced only by the manifest's ``truth_path`` column, never by what the models load; and a rescan at
  A and B (the same anatomy, another scan seed: new noise and bias jitter, ``*_rescan.nii.gz`` beside the truth),
  how close a second scan at the target comes to the truth: the ceiling every gate measures against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from harmlib.config import Config, SynthConfig
from harmlib.data.anatomy import Subject, make_anatomy, priors, tissue_labels
from harmlib.data.appearance import smooth_field
from harmlib.data.io import LOCK, DataError, is_done, mark_done, save_volume, write_text_atomic
from harmlib.data.manifest import LABELS, domain_name, rescan_path, slug, write_manifest
from harmlib.data.mni import fsl_grid_affine
from harmlib.data.physics import TISSUES, Acquisition, Sequence, noise_sd, rician, truncate_kspace
from harmlib.data.scanner_space import to_scanner_space


@dataclass(frozen=True)
class Site:
    """A scanner-site pair: how it acquires (`harmlib.data.physics.Acquisition`: field strength, sequence, voxel
    size, SNR, residual bias, stored scale), the seed of its own tissue parameters and bias pattern, and how far it
    is from the training sites ("reference", "mild", "strong": a label for the tables, not an input of the physics)."""

    scanner: str
    site: str
    acq: Acquisition
    bias_seed: int
    strength: str

    @property
    def domain(self) -> str:
        return domain_name(self.scanner, self.site)

    def signals(self) -> dict[str, float]:
        """Each tissue's signal at this site (its own relaxation times under its sequence)."""
        return _signals(self)


@lru_cache(maxsize=64)
def _signals(site: Site) -> dict[str, float]:
    return site.acq.tissue_signals(site.bias_seed)


def _mprage(tr, ti, te, flip, esp, n) -> Sequence:
    return Sequence("ir", tr=tr, te=te, flip=flip, ti=ti, esp=esp, n_readout=n)


def _spgr(tr, te, flip) -> Sequence:
    return Sequence("spgr", tr=tr, te=te, flip=flip)


def _site(scanner, site, field_t, seq, voxel, snr, bias, scale, offset, seed, strength) -> Site:
    return Site(scanner, site, Acquisition(field_t, seq, voxel, snr, bias, scale=scale, offset=offset), seed, strength)


COHORT_VERSION = 2  # raise when the anatomy or site model changes: every file is then made again
COHORT_MODELS = {
    1: "tissue means, gamma, site bias, blur, noise",
    2: "MR physics: sequences, relaxation times, deep nuclei",
}

# Sequences as the data sets' protocols describe them (IXI: Philips T1-TFE at Guys and HH, GE SPGR at IOP; SALD,
# ADNI, ABIDE: Siemens MPRAGE, GE IR-FSPGR / BRAVO, Philips T1-TFE), times in ms, flip in degrees; voxel (x, y, z) mm.
# fmt: off
#            scanner            site        T    sequence                                        voxel               SNR  bias  scale offset seed
TRAIN_SITES = (
    _site("Gyroscan Intera", "Guys",     1.5, _mprage(2000, 800, 4.6, 8, 9.6, 150),   (0.94, 0.94, 1.2), 22, 0.10, 1.00, 0.00, 11, "reference"),  # target A
    _site("TrioTim",         "SWU",      3.0, _mprage(1900, 900, 2.5, 9, 7.0, 176),   (1.0, 1.0, 1.0),   35, 0.12, 1.15, 0.02, 12, "reference"),  # target B
    _site("Intera",          "HH",       3.0, _mprage(2200, 900, 4.6, 8, 9.6, 150),   (0.94, 0.94, 1.2), 30, 0.14, 0.90, 0.00, 13, "reference"),
    _site("Prisma",          "ADNI-S01", 3.0, _mprage(2300, 900, 3.0, 9, 7.1, 176),   (1.0, 1.0, 1.0),   38, 0.08, 1.05, 0.03, 14, "reference"),
    _site("Prisma Fit",      "ADNI-S02", 3.0, _mprage(2300, 900, 2.95, 9, 7.1, 176),  (1.0, 1.0, 1.0),   36, 0.09, 1.00, 0.03, 15, "reference"),
)
TEST_SITES = (
    _site("GE 1.5T",         "IOP",      1.5, _spgr(12.0, 4.2, 18),                    (0.94, 0.94, 1.5), 16, 0.15, 0.80, 0.00, 21, "strong"),
    _site("Achieva dStream", "PPMI-S03", 3.0, _mprage(2500, 1000, 3.7, 8, 8.1, 170),  (1.0, 1.0, 1.0),   32, 0.10, 0.95, 0.01, 22, "mild"),
    _site("Achieva",         "ADNI-S04", 1.5, _mprage(3000, 1000, 3.7, 8, 8.5, 160),  (1.25, 1.25, 1.2), 18, 0.14, 1.20, 0.05, 23, "strong"),
    _site("Skyra",           "ADNI-S05", 3.0, _mprage(2300, 900, 2.98, 9, 7.1, 176),  (1.0, 1.0, 1.2),   33, 0.11, 1.10, 0.02, 24, "mild"),
)
AGE_SITES = (  # (site, age range): ABIDE-like, each site recruits its own ages
    (_site("Signa",          "ABIDE-NYU",  3.0, _mprage(1500, 450, 3.2, 12, 8.2, 100), (1.0, 1.0, 1.2), 30, 0.13, 0.85, 0.00, 31, "strong"), (8, 20)),
    (_site("Allegra",        "ABIDE-UM",   3.0, _mprage(2500, 1100, 3.0, 8, 7.5, 160), (1.0, 1.0, 1.0), 30, 0.10, 1.25, 0.04, 32, "strong"), (14, 40)),
    (_site("TrioTim",        "ABIDE-USM",  3.0, _mprage(2300, 900, 2.9, 9, 7.0, 176),  (1.0, 1.0, 1.0), 35, 0.11, 1.10, 0.02, 33, "mild"), (30, 65)),
    (_site("MR750",          "ABIDE-SDSU", 3.0, _spgr(8.1, 3.2, 12),                    (1.0, 1.0, 1.0), 28, 0.14, 0.90, 0.00, 34, "strong"), (55, 90)),
)
AD_SITES = (  # (site, fraction AD): ADNI-like, diagnosis prevalence differs by site
    (TRAIN_SITES[3], 0.5),
    (TEST_SITES[3], 0.35),
    (TEST_SITES[2], 0.6),
    (_site("Discovery MR750", "ADNI-S08", 3.0, _mprage(2000, 650, 2.8, 11, 7.0, 100), (1.0, 1.0, 1.2), 30, 0.15, 0.85, 0.01, 41, "strong"), 0.45),
)
# fmt: on
TARGET_A, TARGET_B = TRAIN_SITES[0], TRAIN_SITES[1]


def all_sites() -> dict[str, Site]:
    sites = [*TRAIN_SITES, *TEST_SITES, *(s for s, _ in AGE_SITES), *(s for s, _ in AD_SITES)]
    return {s.domain: s for s in sites}


def check_sites(sites: dict[str, Site] | None = None) -> None:
    """Every site's acquisition is physical; else one line naming the site and the field, before anything is written."""
    for domain, site in (sites or all_sites()).items():
        for name, why in site.acq.problems():
            raise DataError(f"site {domain}: {name}: {why}; fix its acquisition in harmlib/data/synthetic.py")


@lru_cache(maxsize=64)
def _site_bias(shape: tuple[int, ...], voxel_mm: int, seed: int, fwhm_mm: float) -> np.ndarray:
    """A site's bias pattern: the same for every scan there (cached)."""
    return smooth_field(shape, voxel_mm, fwhm_mm, np.random.default_rng(seed))


def render(anat: dict[str, np.ndarray], site: Site, voxel_mm: int, scan_seed: int) -> np.ndarray:
    """The anatomy as ``site`` acquires it (`harmlib.data.physics`): each tissue's signal under the site's sequence,
    mixed by partial volume, the template's residual detail at the site's GM-WM contrast and a fine texture; then
    the acquired resolution (k-space truncation), the scan's residual bias, Rician noise at the site's SNR and the
    stored scale and offset. WM sits near 0.85 x scale, as in version 1's units."""
    acq = site.acq
    img = tissue_image(anat, site, voxel_mm) * scan_bias(site, anat["mask"].shape, voxel_mm, scan_seed)
    img = rician(img, noise_sd(acq, 0.85, voxel_mm), np.random.default_rng([scan_seed, 2]))
    return (acq.scale * img + acq.offset * (anat["mask"] > 0.5)).astype(np.float32)


def tissue_image(anat: dict[str, np.ndarray], site: Site, voxel_mm: int) -> np.ndarray:
    """The site's image of the anatomy before bias, noise and storage (WM near 0.85): tissue signals mixed by partial
    volume, the residual detail and texture, at the acquired resolution."""
    sig = site.signals()
    ref = sig["wm"] / 0.85  # signal units -> image units
    img = sum(anat[t] * (sig[t] / ref) for t in TISSUES)
    contrast = (sig["wm"] - sig["gm"]) / ref / float(priors(voxel_mm)["template_contrast"])
    img = np.clip((img + 0.8 * contrast * anat["resid"]) * anat["texture"], 0.0, None) * (anat["mask"] > 0.5)
    return truncate_kspace(img.astype(np.float32), voxel_mm, site.acq.voxel)


def scan_bias(site: Site, shape: tuple[int, ...], voxel_mm: int, scan_seed: int) -> np.ndarray:
    """The multiplicative residual bias of one scan (:func:`render`'s): its own field and the site's share."""
    acq = site.acq
    scan = smooth_field(shape, voxel_mm, acq.bias_fwhm_mm, np.random.default_rng([scan_seed, 1]))
    return 1.0 + acq.bias * ((1 - acq.site_bias) * scan + acq.site_bias * _site_pattern(site, shape, voxel_mm))


def _site_pattern(site: Site, shape: tuple[int, ...], voxel_mm: int) -> np.ndarray:
    return _site_bias(shape, voxel_mm, site.bias_seed, site.acq.bias_fwhm_mm)


def oracle(
    vol: np.ndarray, anat: dict[str, np.ndarray], src: Site, dst: Site, voxel_mm: int, scan_seed: int, bins: int = 128
) -> np.ndarray:
    """The best an intensity-only harmonizer can do, knowing the generating model (no learning): undo the source scan's
    stored scale, offset and its exact bias field, map intensities through the curve that takes them, on average, to
    the target site's image of this very anatomy (the conditional mean in ``bins`` quantile bins of the brain's
    intensities, linear between), then apply the target's site bias pattern, scale and offset. What it cannot undo:
    tissue contrasts no single curve maps, resolution, noise, the target scan's own bias."""
    a, b = src.acq, dst.acq
    mask = anat["mask"] > 0.5
    u = (vol - a.offset * mask) / a.scale / scan_bias(src, vol.shape, voxel_mm, scan_seed)
    goal = tissue_image(anat, dst, voxel_mm)
    edges = np.unique(np.quantile(u[mask], np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, u[mask], side="right") - 1, 0, len(edges) - 2)
    count = np.bincount(which, minlength=len(edges) - 1)
    ok = count > 0
    centre = (np.bincount(which, u[mask], len(edges) - 1)[ok]) / count[ok]
    mean = (np.bincount(which, goal[mask], len(edges) - 1)[ok]) / count[ok]
    mapped = np.interp(u, np.concatenate([[0.0], centre]), np.concatenate([[0.0], mean]))
    pattern = 1.0 + b.bias * b.site_bias * _site_pattern(dst, vol.shape, voxel_mm)
    return (b.scale * np.clip(mapped, 0, None) * pattern + b.offset * mask).astype(np.float32)


@dataclass(frozen=True)
class Scan:
    """One planned acquisition: who, where, in which cohort."""

    subject: Subject
    site: Site
    split: str
    role: str


def plan_cohort(cfg: SynthConfig, seed: int) -> list[Scan]:
    """Every scan of the cohort, deterministic from the seed."""
    rng = np.random.default_rng([seed, 1])
    scans: list[Scan] = []

    def subject(prefix: str, age: float, dx: str = "HC") -> Subject:
        k = len(scans)
        return Subject(
            f"sub-{prefix}{k:04d}", round(float(age), 1), str(rng.choice(["M", "F"])), dx, int(rng.integers(2**31))
        )

    for site in TRAIN_SITES:
        for i in range(cfg.n_train_per_site):
            role = "labeled" if i < round(cfg.labeled_fraction * cfg.n_train_per_site) else "unlabeled"
            scans.append(Scan(subject("tr", rng.uniform(20, 80)), site, "train", role))
    for site in TEST_SITES:
        for _ in range(cfg.n_test_per_site):
            scans.append(Scan(subject("te", rng.uniform(20, 80)), site, "test", "test"))
    for site, (lo, hi) in AGE_SITES:
        for _ in range(cfg.n_age_per_site):
            scans.append(Scan(subject("ag", rng.uniform(lo, hi)), site, "test", "age"))
    for site, frac in AD_SITES:
        for i in range(cfg.n_ad_per_site):
            dx = "AD" if i < round(frac * cfg.n_ad_per_site) else "HC"
            scans.append(Scan(subject("ad", rng.uniform(60, 90), dx), site, "test", "ad"))
    return scans


def _row(scan: Scan, path: str, truth: str) -> dict[str, object]:
    s = scan.subject
    return {
        "path": path,
        "subject": s.subject,
        "session": "1",
        "dataset": "synthetic",
        "scanner": scan.site.scanner,
        "site": scan.site.site,
        "domain": scan.site.domain,
        "age": s.age,
        "sex": s.sex,
        "diagnosis": s.diagnosis,
        "split": scan.split,
        "role": scan.role,
        "truth_path": truth,
    }


def scan_seed(scan: Scan, site: Site, rescan: int = 0) -> int:
    """The seed of one acquisition (noise, bias jitter); ``rescan`` k > 0: the k-th scan again at the same site."""
    return (scan.subject.seed * 1_000_003 + site.bias_seed + 7_919 * rescan) % 2**32


def _pose_path(raw_path: Path) -> Path:
    return raw_path.with_name(raw_path.name.replace(".nii.gz", ".pose.json"))


def _write_raw(path: Path, vol: np.ndarray, affine: np.ndarray, seed: int, voxel_mm: int) -> None:
    """The scan in scanner space, then its true pose (written last: it marks the pair complete)."""
    sv = to_scanner_space(vol, affine, seed=seed, voxel_mm=voxel_mm, order=1)
    save_volume(path, sv.data, sv.affine)
    pose = {
        "pose": sv.pose.round(6).tolist(),
        "rotation_deg": sv.rotation_deg,
        "translation_mm": sv.translation_mm,
        "voxel_size": sv.voxel_size,
        "axcodes": "".join(sv.axcodes),
    }
    write_text_atomic(_pose_path(path), json.dumps(pose))


def write_cohort(cfg: Config, out: str | Path, raw: bool = True) -> Path:
    """Write the cohort of ``cfg`` under ``out`` (NIfTI + ``manifest.csv``); returns the manifest path.

    With ``raw``, ``synth.n_raw`` healthy test scans (spread over the test sites) are also written in scanner space
    (``raw/``, with ``raw/manifest.csv`` and their true poses in ``raw/poses.json``) for the
    preprocessing pipeline to undo. Existing complete files are kept (writes are atomic), so a
    killed run resumes where it stopped.
    """
    out = Path(out)
    check_sites()
    if out.exists() and not out.is_dir():  # before any volume is rendered
        raise DataError(f"{out}: the output is a file, not a folder; choose a folder (--out)")
    if out.is_dir() and any(f.name != LOCK for f in out.iterdir()) and not _is_cohort(out):
        raise DataError(
            f"{out}: a folder with other files in it, not a harmlib cohort; choose a new or empty folder (--out), "
            "nothing was written"
        )
    write_text_atomic(out / COHORT_STAMP, json.dumps({"cohort_version": COHORT_VERSION}))
    voxel, aff = cfg.data.voxel_mm, fsl_grid_affine(cfg.data.voxel_mm)
    scans = plan_cohort(cfg.synth, cfg.seed)
    tests = [s for s in scans if s.role == "test"]
    raw_scans = (
        tests[:: max(1, len(tests) // max(cfg.synth.n_raw, 1))][: cfg.synth.n_raw] if raw else []
    )  # spread over the test sites
    rows, raw_rows, poses = [], [], []
    n_files = len(scans) + sum(2 * (s.split == "test") + 3 * (s.role == "test") for s in scans) + len(raw_scans)
    bar = tqdm(total=n_files, desc=f"synth {cfg.profile} ({voxel} mm)", unit="vol")
    for scan in scans:
        rel = f"{scan.split}/{scan.subject.subject}_{slug(scan.site.domain)}.nii.gz"
        truth = f"truth/{scan.subject.subject}_{{domain}}.nii.gz" if scan.split == "test" else ""
        targets = [(scan.site, out / rel, 0)]  # (site, file, rescan): the scan, then its truth and rescan at A and B
        for ref in (TARGET_A, TARGET_B) if truth else ():
            path = out / truth.replace("{domain}", slug(ref.domain))
            targets += [(ref, path, 0)] + [(ref, rescan_path(path), 1)] * (scan.role == "test")  # the gate's cases
        raw_path = out / "raw" / Path(rel).name if scan in raw_scans else None
        need_raw = raw_path is not None and not _pose_path(raw_path).is_file()
        made_from = {path: _made_from(scan, site, voxel, rescan) for site, path, rescan in targets}
        needed = [(site, path, rescan) for site, path, rescan in targets if not is_done(path, made_from[path])]
        if need_raw and all(site is not scan.site for site, _, _ in needed):
            needed.insert(0, (scan.site, None, 0))  # rendered again only to move it to scanner space
        labels = out / truth.replace("{domain}", LABELS) if scan.role == "test" else None  # the gate's tissue rows
        labels_from = {**_made_from(scan, scan.site, voxel), "site": LABELS}
        need_labels = labels is not None and not is_done(labels, labels_from)
        if needed or need_labels:
            anat = make_anatomy(scan.subject, voxel)
            if need_labels:
                save_volume(labels, tissue_labels(anat), aff)
                mark_done(labels, labels_from)
            for site, path, rescan in needed:
                vol = render(anat, site, voxel, scan_seed(scan, site, rescan))
                if path is not None:
                    save_volume(path, vol, aff)
                    mark_done(path, made_from[path])
                if site is scan.site and need_raw:
                    _write_raw(raw_path, vol, aff, scan_seed(scan, site), voxel)
        bar.update(len(targets) + (raw_path is not None) + (labels is not None))
        if raw_path is not None:
            raw_rows.append(_row(scan, raw_path.name, truth and f"../{truth}"))
            poses.append({"path": raw_path.name, **json.loads(_pose_path(raw_path).read_text())})
        rows.append(_row(scan, rel, truth))
    bar.close()
    if raw_rows:
        write_manifest(pd.DataFrame(raw_rows), out / "raw" / "manifest.csv")
        write_text_atomic(out / "raw" / "poses.json", json.dumps(poses, indent=1))
    write_manifest(pd.DataFrame(rows), out / "manifest.csv")
    return out / "manifest.csv"


COHORT_STAMP = ".harmlib-cohort.json"  # marks a folder as a cohort this module wrote (resumable, replaceable)


def _is_cohort(out: Path) -> bool:
    """Whether ``out`` holds a cohort of ours: its stamp, or (written before the stamp) our completion records."""
    return (out / COHORT_STAMP).is_file() or any(out.glob("train/.*.done.json"))


def _made_from(scan: Any, site: Site, voxel: int, rescan: int = 0) -> dict[str, Any]:
    """What a synthetic volume is a function of: a file made from anything else is made again."""
    return {
        "subject": scan.subject.subject,
        "site": site.domain,
        "voxel_mm": voxel,
        "seed": scan_seed(scan, site, rescan),
        "version": COHORT_VERSION,
    }


def healthy_test_scans(cfg: SynthConfig, seed: int) -> dict[str, Scan]:
    """The planned healthy test scans by subject (who, at which site, with which seed): what the oracle needs."""
    return {s.subject.subject: s for s in plan_cohort(cfg, seed) if s.role == "test"}


def native_scans(cfg: SynthConfig, seed: int, n: int) -> list[Scan]:
    """``n`` healthy test scans for the gate's native-resolution row: the first of each test site, then the second..."""
    by_site: dict[str, list[Scan]] = {}
    for scan in plan_cohort(cfg, seed):
        if scan.role == "test":
            by_site.setdefault(scan.site.domain, []).append(scan)
    rounds = zip_longest(*by_site.values())
    return [scan for group in rounds for scan in group if scan is not None][:n]


def write_native_copies(cfg: Config, out: str | Path, voxel_mm: int, n: int, targets: list[str]) -> pd.DataFrame:
    """``n`` test subjects (:func:`native_scans`) rendered at ``voxel_mm`` (finer than the cohort's grid), at their own
    site and at each of the ``targets`` (domains: their traveling truth), on the FSL MNI grid at that resolution, under
    ``out``: the quality gate's native-resolution row. Complete files are kept (a rerun or the next model's gate
    reads them). One row per subject: subject, site, path and ``truth <domain>`` paths."""
    out, aff, sites = Path(out), fsl_grid_affine(voxel_mm), all_sites()
    unknown = [d for d in targets if d not in sites]
    if unknown:
        raise DataError(f"native copies: {', '.join(unknown)} is not a site of the synthetic cohort; use its domains")
    rows = []
    for scan in tqdm(native_scans(cfg.synth, cfg.seed, n), desc=f"gate subjects at {voxel_mm} mm", unit="subject"):
        todo = {scan.site.domain: scan.site} | {d: sites[d] for d in targets}
        paths = {d: out / f"{scan.subject.subject}_{slug(d)}.nii.gz" for d in todo}
        made = {d: _made_from(scan, site, voxel_mm) for d, site in todo.items()}
        needed = [d for d in todo if not is_done(paths[d], made[d])]
        anat = make_anatomy(scan.subject, voxel_mm) if needed else None
        for d in needed:
            save_volume(paths[d], render(anat, todo[d], voxel_mm, scan_seed(scan, todo[d])), aff)
            mark_done(paths[d], made[d])
        row = {"subject": scan.subject.subject, "site": scan.site.domain, "path": str(paths[scan.site.domain])}
        rows.append(row | {f"truth {d}": str(paths[d]) for d in targets})
    return pd.DataFrame(rows)


def render_at_sites(subject: Subject, voxel_mm: int, sites: list[Site] | None = None) -> dict[str, np.ndarray]:
    """One anatomy rendered at every site (default: all of them): a traveling subject."""
    anat = make_anatomy(subject, voxel_mm)
    return {s.domain: render(anat, s, voxel_mm, subject.seed) for s in (sites or list(all_sites().values()))}


def site_table() -> pd.DataFrame:
    """Every scanner-site pair with its role in the cohort and its acquisition: field, sequence, voxel, SNR, bias,
    and the contrasts its physics gives (each tissue's signal over WM's)."""
    roles = {s.domain: "train" for s in TRAIN_SITES} | {s.domain: "test" for s in TEST_SITES}
    roles |= {s.domain: f"age {lo}-{hi} y" for s, (lo, hi) in AGE_SITES}
    for s, frac in AD_SITES:
        roles[s.domain] = roles.get(s.domain, "") + (", " if s.domain in roles else "") + f"AD/HC ({frac:.0%} AD)"
    rows = []
    for d, s in all_sites().items():
        tag = " (target A)" if s is TARGET_A else " (target B)" if s is TARGET_B else ""
        q, sig = s.acq.sequence, s.signals()
        seq = (
            f"SPGR TR {q.tr:g} TE {q.te:g} flip {q.flip:g}"
            if q.kind == "spgr"
            else f"IR TR {q.tr:g} TI {q.ti:g} TE {q.te:g} flip {q.flip:g}"
        )
        rows.append(
            {
                "domain": d + tag,
                "cohorts": roles[d],
                "difference": s.strength,
                "field (T)": s.acq.field_t,
                "sequence (ms, deg)": seq,
                "voxel (mm)": "x".join(f"{v:g}" for v in s.acq.voxel),
                "SNR": s.acq.snr,
                "bias": s.acq.bias,
                **{
                    f"{t}/WM": round(sig[t] / sig["wm"], 2)
                    for t in ("csf", "gm", "putamen", "pallidum", "thalamus", "lesion")
                },
                "scale": s.acq.scale,
            }
        )
    return pd.DataFrame(rows)
