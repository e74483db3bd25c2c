"""Importers: the papers' real data sets, as downloaded, to a manifest frame (``manifest.COLUMNS``).

Each importer walks the folder layout of one data set, joins its phenotype file and returns a
DataFrame to pass to :func:`harmlib.data.manifest.write_manifest`. Paths are absolute unless
``relative_to`` is given (pass the folder the manifest will be written to). Layouts, licences and
examples: ``data/README.md``. Every problem is a one-line :class:`DataError` naming the file and the fix.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from harmlib.data.io import DataError
from harmlib.data.manifest import COLUMNS, domain_name

# IXI: the site code in the file name -> scanner model (Guy's: Philips Gyroscan Intera 1.5T,
# Hammersmith: Philips Intera 3T, Institute of Psychiatry: GE 1.5T, model not published).
IXI_SCANNERS = {"Guys": "Gyroscan Intera", "HH": "Intera", "IOP": "GE"}
SALD_SCANNER, SALD_SITE = "TrioTim", "SWU"  # Siemens Magnetom Trio Tim 3T, Southwest University, Chongqing
# ABIDE I: SITE_ID (numbered samples such as LEUVEN_1/LEUVEN_2 share a site) -> scanner model, from the
# ABIDE I scan-parameter pages; all 3T. Counts agree with Table 1 of the SSIM-guided paper (17 sites).
ABIDE_SCANNERS = {
    "CALTECH": "TrioTim",
    "CMU": "Verio",
    "KKI": "Achieva",
    "LEUVEN": "Intera",
    "MAX_MUN": "Verio",
    "NYU": "Allegra",
    "OHSU": "TrioTim",
    "OLIN": "Allegra",
    "PITT": "Allegra",
    "SBL": "Intera",
    "SDSU": "MR750",
    "STANFORD": "Signa",
    "TRINITY": "Achieva",
    "UCLA": "TrioTim",
    "UM": "Signa",
    "USM": "TrioTim",
    "YALE": "TrioTim",
}
# Portal "Group" -> manifest diagnosis; groups mapped to "" are kept without a diagnosis.
ADNI_GROUPS = {"CN": "HC", "AD": "AD", "MCI": "MCI", "EMCI": "MCI", "LMCI": "MCI", "SMC": "", "PATIENT": ""}
PPMI_GROUPS = {
    "CONTROL": "HC",
    "PD": "PD",
    "PRODROMAL": "",
    "SWEDD": "",
    "PHENOCONVERTED": "",
    "GENCOHORT PD": "PD",
    "GENCOHORT UNAFF": "",
    "GENREG PD": "PD",
    "GENREG UNAFF": "",
}
UNKNOWN = "unknown"
CODED_SEX = {"1": "M", "2": "F"}
_NIFTI = re.compile(r"\.nii(\.gz)?$", re.I)
_IXI_NAME = re.compile(r"^(IXI\d{3})-([A-Za-z]+)-(\d{4})-T1\.nii(\.gz)?$")
_T1_HINT = re.compile(r"(?<![a-z])(mprage|t1w?|anat|spgr)", re.I)
_SESSION = re.compile(r"^(ses-|session_?)\w+$", re.I)
_COLLECTION = ("Image Data ID", "Subject", "Group", "Sex", "Age")


# -- small helpers ------------------------------------------------------------------------------


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a phenotype sheet (.csv, .tsv, .xls via xlrd, .xlsx via openpyxl) with every cell as text."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: phenotype file not found; download it with the images (see data/README.md)")
    suffix = path.suffix.lower()
    if suffix in (".xls", ".xlsx"):
        engine = "xlrd" if suffix == ".xls" else "openpyxl"
        if not _has_module(engine):
            raise DataError(
                f"{path}: reading {suffix} needs the optional package {engine}; pip install {engine}, or export the sheet as CSV and pass that"
            )
        df = pd.read_excel(path, engine=engine, dtype=str)
    else:
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if suffix == ".tsv" else ",")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DataError(
                f"{path}: not a readable CSV ({type(err).__name__}); export the sheet as comma-separated UTF-8"
            ) from None
    df.columns = [str(c).strip() for c in df.columns]
    return df.fillna("").astype(str).apply(lambda col: col.str.strip())


def _need(df: pd.DataFrame, path: Path, cols: tuple[str, ...]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(df.columns[:12])}); pass the original, unedited phenotype file"
        )


def _column(df: pd.DataFrame, path: Path, prefix: str) -> str:
    """The column whose name starts with ``prefix`` (IXI's header is 'SEX_ID (1=m, 2=f)')."""
    hits = [c for c in df.columns if c.upper().startswith(prefix)]
    if not hits:
        _need(df, path, (prefix,))
    return hits[0]


def _int_id(value: str) -> int | None:
    """'0050003', '50003', '50003.0' -> 50003; None when not a number."""
    m = re.fullmatch(r"(?:sub-)?(\d+)(?:\.0+)?", str(value).strip(), re.I)
    return int(m.group(1)) if m else None


def _sex(value: str, where: str, codes: dict[str, str] = CODED_SEX) -> str:
    v = str(value).strip().upper().removesuffix(".0")
    if v in ("", "NAN", "NA", "N/A", "-9999", "U", "X"):
        return ""
    if v in codes:
        return codes[v]
    if v in ("M", "MALE", "F", "FEMALE"):
        return v[0]
    raise DataError(f"{where}: unknown sex '{value}'; expected {', '.join(codes)} (coded), M/F or empty")


def _age(value: str, where: str) -> float:
    v = str(value).strip()
    if v in ("", "nan", "NaN", "NA", "N/A"):
        return np.nan
    try:
        age = float(v)
    except ValueError:
        raise DataError(f"{where}: age '{value}' is not a number; fix the cell or leave it empty") from None
    return age if 0 <= age <= 120 else np.nan  # -9999 and similar sentinels mean "unknown"


def _nifti_files(root: Path, what: str) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{root}: {what} folder not found; pass the folder you extracted the download into")
    files = sorted(p for p in root.rglob("*") if _NIFTI.search(p.name) and p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(
            f"{root}: no NIfTI (.nii/.nii.gz) files in this {what} folder; extract the download here (layout: data/README.md)"
        )
    return files


def _is_t1(path: Path, root: Path) -> bool:
    """Anatomical files: 'mprage', 'T1', 'anat' in the name or an 'anat*' folder; not rest/func/dwi."""
    parts = path.relative_to(root).parts
    if any(re.match(r"(rest|func|dwi|fmap)", p, re.I) for p in parts[:-1]):
        return False
    return bool(_T1_HINT.search(path.name)) or any(p.lower().startswith("anat") for p in parts[:-1])


def _session(path: Path, root: Path) -> str:
    return next((p for p in path.relative_to(root).parts[:-1] if _SESSION.match(p)), "")


def _row(path: Path, subject: str, dataset: str, scanner: str, site: str, **rest) -> dict:
    return {
        "path": path,
        "subject": subject,
        "dataset": dataset,
        "scanner": scanner,
        "site": site,
        "domain": domain_name(scanner, site),
        **rest,
    }


def _frame(rows: list[dict], split: str, role: str, relative_to: str | Path | None) -> pd.DataFrame:
    """Rows -> manifest frame: fills defaults, makes paths absolute or relative, keeps sessions unique."""
    df = pd.DataFrame(rows)
    for col, default in (("session", ""), ("age", np.nan), ("sex", ""), ("diagnosis", ""), ("tag", "")):
        df[col] = df[col] if col in df else default
    df["split"], df["role"], df["truth_path"] = split, role, ""
    base = Path(relative_to).absolute() if relative_to is not None else None
    df["path"] = [
        Path(os.path.relpath(Path(p).absolute(), base)).as_posix() if base else str(Path(p).absolute())
        for p in df["path"]
    ]
    dup = df.duplicated(["subject", "session", "domain"], keep=False)
    tags = df["tag"].where(df["tag"] != "", pd.Series([Path(p).name.split(".")[0] for p in df["path"]], index=df.index))
    df.loc[dup, "session"] = [f"{s}_{t}" if s else t for s, t in zip(df.loc[dup, "session"], tags[dup])]
    df["age"] = pd.to_numeric(df["age"], errors="coerce")
    return df[COLUMNS].sort_values(["subject", "session", "path"]).reset_index(drop=True)


# -- IXI ----------------------------------------------------------------------------------------


def _ixi_sheet(demographics: Path) -> dict[str, tuple[float, str]]:
    """IXI_ID -> (age, sex); the sheet repeats some IDs, the first row with an age wins."""
    df = read_table(demographics)
    _need(df, demographics, ("IXI_ID", "AGE"))
    sex_col = _column(df, demographics, "SEX_ID")
    out: dict[str, tuple[float, str]] = {}
    for i, r in df.iterrows():
        sid = _int_id(r["IXI_ID"])
        where = f"{demographics} row {i + 2}"
        if sid is None:
            raise DataError(f"{where}: IXI_ID '{r['IXI_ID']}' is not a number; fix the cell or delete the row")
        key, rec = f"IXI{sid:03d}", (_age(r["AGE"], where), _sex(r[sex_col], where))
        if key not in out or (np.isnan(out[key][0]) and not np.isnan(rec[0])):
            out[key] = rec
    return out


def import_ixi(
    root: str | Path,
    demographics: str | Path,
    split: str = "train",
    role: str = "labeled",
    relative_to: str | Path | None = None,
) -> pd.DataFrame:
    """IXI T1: ``root`` is the extracted IXI-T1 folder, ``demographics`` IXI.xls or its CSV export.

    Site (Guys, HH, IOP) comes from file names like ``IXI002-Guys-0828-T1.nii.gz``; subjects missing
    from the sheet keep empty age and sex.
    """
    root, demographics = Path(root), Path(demographics)
    sheet = _ixi_sheet(demographics)
    rows = []
    for f in _nifti_files(root, "IXI-T1"):
        m = _IXI_NAME.match(f.name)
        if not m:
            raise DataError(
                f"{f}: not an IXI T1 file name (IXI<3 digits>-<Guys|HH|IOP>-<4 digits>-T1.nii.gz); move other files out of {root}"
            )
        subject, site = m.group(1), m.group(2)
        if site not in IXI_SCANNERS:
            raise DataError(
                f"{f}: unknown IXI site '{site}'; IXI sites are {', '.join(IXI_SCANNERS)}; rename or remove the file"
            )
        age, sex = sheet.get(subject, (np.nan, ""))
        rows.append(_row(f, subject, "IXI", IXI_SCANNERS[site], site, age=age, sex=sex, diagnosis="HC"))
    return _frame(rows, split, role, relative_to)


# -- SALD ---------------------------------------------------------------------------------------


def import_sald(
    root: str | Path,
    phenotype: str | Path,
    split: str = "train",
    role: str = "labeled",
    relative_to: str | Path | None = None,
    sex_codes: dict[str, str] = CODED_SEX,
) -> pd.DataFrame:
    """SALD: ``root`` holds one ``sub-<id>`` folder per subject with its T1 NIfTI somewhere below
    (``anat/`` or ``session_1/anat_1/``); ``phenotype`` is the sheet or CSV with Sub_ID, Sex, Age.

    Numeric Sex codes are read with ``sex_codes`` (default 1 = M, 2 = F; the full sheet has 187 males).
    """
    root, phenotype = Path(root), Path(phenotype)
    df = read_table(phenotype)
    _need(df, phenotype, ("Sub_ID", "Sex", "Age"))
    pheno = {
        _int_id(r["Sub_ID"]): (
            _age(r["Age"], f"{phenotype} row {i + 2}"),
            _sex(r["Sex"], f"{phenotype} row {i + 2}", sex_codes),
        )
        for i, r in df.iterrows()
    }
    subjects = (
        sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"sub-\d+", p.name)) if root.is_dir() else []
    )
    if not subjects:
        raise DataError(
            f"{root}: no sub-<id> subject folders; pass the folder that holds them (layout: data/README.md)"
        )
    rows = []
    for sub in subjects:
        files = [f for f in _nifti_files(sub, "SALD subject") if _is_t1(f, sub)]
        if not files:
            raise DataError(
                f"{sub}: no T1 NIfTI (anat folder or T1/mprage/anat in the name); re-extract this subject or remove the folder"
            )
        age, sex = pheno.get(_int_id(sub.name), (np.nan, ""))
        rows += [
            _row(
                f, sub.name, "SALD", SALD_SCANNER, SALD_SITE, session=_session(f, sub), age=age, sex=sex, diagnosis="HC"
            )
            for f in files
        ]
    return _frame(rows, split, role, relative_to)


# -- ABIDE I ------------------------------------------------------------------------------------


def abide_site(site_id: str, where: str = "ABIDE") -> tuple[str, str]:
    """SITE_ID ('LEUVEN_1', 'Pitt', 'MaxMun_a') -> (site, scanner model)."""
    site = re.sub(r"_(\d+|[A-D])$", "", site_id.strip().upper()).replace("MAXMUN", "MAX_MUN")
    if site not in ABIDE_SCANNERS:
        raise DataError(
            f"{where}: unknown ABIDE site '{site_id}'; known: {', '.join(ABIDE_SCANNERS)}; fix SITE_ID or add the site to ABIDE_SCANNERS"
        )
    return site, ABIDE_SCANNERS[site]


def _abide_subject(path: Path, root: Path) -> int | None:
    """The SUB_ID of a file: a folder '0050003' / 'sub-0050003', or a FILE_ID name 'Pitt_0050003_...'."""
    for part in reversed(path.relative_to(root).parts[:-1]):
        if re.fullmatch(r"(sub-)?\d{5,7}", part, re.I):
            return _int_id(part)
    m = re.match(r"^(?:sub-)?(?:[A-Za-z_]+_)?(\d{5,7})(?:_|\.)", path.name)
    return int(m.group(1)) if m else None


def import_abide(
    root: str | Path,
    phenotype: str | Path,
    split: str = "test",
    role: str = "age",
    relative_to: str | Path | None = None,
) -> pd.DataFrame:
    """ABIDE I: ``root`` holds ``<site>/<SUB_ID>/session_1/anat_1/mprage.nii.gz`` (raw download) or
    preprocessed files named ``<FILE_ID>_*.nii.gz``; ``phenotype`` is Phenotypic_V1_0b_preprocessed1.csv.

    Only subjects with an image are returned; DX_GROUP 1 -> ASD, 2 -> HC; SEX 1 -> M, 2 -> F.
    """
    root, phenotype = Path(root), Path(phenotype)
    df = read_table(phenotype)
    _need(df, phenotype, ("SITE_ID", "SUB_ID", "DX_GROUP", "AGE_AT_SCAN", "SEX"))
    pheno = {_int_id(r["SUB_ID"]): (i, r) for i, r in df.iterrows()}
    rows = []
    for f in (f for f in _nifti_files(root, "ABIDE") if _is_t1(f, root)):
        sid = _abide_subject(f, root)
        if sid is None:
            raise DataError(
                f"{f}: cannot tell the ABIDE SUB_ID from the path; keep the download's <site>/<SUB_ID>/ folders or FILE_ID file names"
            )
        if sid not in pheno:
            raise DataError(
                f"{f}: SUB_ID {sid} is not in {phenotype}; use the ABIDE I phenotypic file or remove the image"
            )
        i, r = pheno[sid]
        where = f"{phenotype} row {i + 2}"
        site, scanner = abide_site(r["SITE_ID"], where)
        dx = {"1": "ASD", "2": "HC"}.get(r["DX_GROUP"].removesuffix(".0"))
        if dx is None:
            raise DataError(f"{where}: DX_GROUP '{r['DX_GROUP']}' is not 1 (autism) or 2 (control); fix the cell")
        rows.append(
            _row(
                f,
                f"{sid:07d}",
                "ABIDE",
                scanner,
                site,
                session=_session(f, root),
                age=_age(r["AGE_AT_SCAN"], where),
                sex=_sex(r["SEX"], where),
                diagnosis=dx,
            )
        )
    if not rows:
        raise DataError(
            f"{root}: no ABIDE T1 images (mprage/anat NIfTI); extract the anatomical files here (layout: data/README.md)"
        )
    return _frame(rows, split, role, relative_to)


# -- ADNI and PPMI (LONI IDA collections) -------------------------------------------------------


def _image_id(value: str) -> str:
    v = str(value).strip().upper()
    return f"I{v}" if v.isdigit() else v


def _index_images(root: Path, what: str) -> dict[str, list[Path]]:
    """Image id -> NIfTI files: the id is a folder 'I254582' or the name's suffix '_I254582.nii'."""
    index: dict[str, list[Path]] = {}
    for f in _nifti_files(root, what):
        m = re.search(r"_(I\d+)\.nii(\.gz)?$", f.name, re.I)
        key = (
            m.group(1).upper()
            if m
            else next(
                (p.upper() for p in reversed(f.relative_to(root).parts[:-1]) if re.fullmatch(r"I\d+", p, re.I)), None
            )
        )
        if key:
            index.setdefault(key, []).append(f)
    return index


def _scanner_table(path: Path | None) -> tuple[str, dict[str, tuple[str, str]]]:
    """The optional scanner CSV: 'scanner' (+ optional 'site') keyed by image_id, subject or site."""
    if path is None:
        return "", {}
    df = read_table(path)
    key = next((k for k in ("image_id", "subject", "site") if k in df.columns), None)
    if key is None or "scanner" not in df.columns:
        raise DataError(
            f"{path}: needs a 'scanner' column and a key column image_id, subject or site (see data/README.md)"
        )
    site = df["site"] if "site" in df.columns and key != "site" else pd.Series("", index=df.index)
    keys = df[key].map(_image_id) if key == "image_id" else df[key]
    return key, {k: (s, t) for k, s, t in zip(keys, df["scanner"], site)}


def _sidecar_scanner(nifti: Path) -> str:
    """ManufacturersModelName from a dcm2niix/BIDS JSON sidecar next to the NIfTI, or ''."""
    js = nifti.with_name(_NIFTI.sub("", nifti.name) + ".json")
    try:
        return str(json.loads(js.read_text()).get("ManufacturersModelName", "")).strip() if js.is_file() else ""
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return ""


def _import_collection(
    dataset: str,
    root: Path,
    collection: Path,
    groups: dict[str, str],
    site_of: Callable[[str], str],
    scanners: Path | None,
    skip_missing: bool,
) -> list[dict]:
    df = read_table(collection)
    _need(df, collection, _COLLECTION)
    if "Modality" in df.columns:
        df = df[df["Modality"].str.upper().isin(("MRI", "MR", ""))]
    index, (key, table) = _index_images(root, dataset), _scanner_table(scanners)
    rows, no_scanner, odd_groups = [], 0, set()
    for i, r in df.iterrows():
        iid, where = _image_id(r["Image Data ID"]), f"{collection} row {i + 2}"
        files = index.get(iid, [])
        if not files:
            if skip_missing:
                continue
            fmt = (
                f" (Format {r['Format']}: download the collection as NIfTI or convert with dcm2niix)"
                if r.get("Format", "").upper().startswith("DCM")
                else ""
            )
            raise DataError(
                f"{where}: no NIfTI for image {iid} under {root}{fmt}; download it or pass skip_missing=True"
            )
        subject, group = r["Subject"], r["Group"].strip()
        site = site_of(subject)
        hit = table.get({"image_id": iid, "subject": subject, "site": site}.get(key, ""), ("", ""))
        scanner, site = hit[0] or _sidecar_scanner(files[0]) or UNKNOWN, hit[1] or site
        no_scanner += scanner == UNKNOWN
        if group.upper() not in groups:
            odd_groups.add(group)
        session = r.get("Visit", "") or r.get("Acq Date", "").replace("/", "-")
        rows += [
            _row(
                f,
                subject,
                dataset,
                scanner,
                site,
                session=session,
                tag=iid if len(files) == 1 else f"{iid}-{k}",
                age=_age(r["Age"], where),
                sex=_sex(r["Sex"], where),
                diagnosis=groups.get(group.upper(), ""),
            )
            for k, f in enumerate(files, 1)
        ]
    if not rows:
        raise DataError(
            f"{collection}: none of its MRI images were found under {root}; pass the folder the collection was downloaded into"
        )
    if no_scanner:
        warnings.warn(
            f"{collection}: {no_scanner} image(s) without a scanner model get scanner '{UNKNOWN}'; pass scanners=CSV (image_id|subject|site, scanner[, site]; see data/README.md)",
            stacklevel=3,
        )
    if odd_groups:
        warnings.warn(
            f"{collection}: group(s) {', '.join(sorted(odd_groups))} have no diagnosis mapping; their diagnosis is left empty",
            stacklevel=3,
        )
    return rows


def import_adni(
    root: str | Path,
    collection: str | Path,
    scanners: str | Path | None = None,
    split: str = "test",
    role: str = "ad",
    relative_to: str | Path | None = None,
    skip_missing: bool = False,
) -> pd.DataFrame:
    """ADNI: ``root`` is the downloaded ``ADNI/`` folder (``<subject>/<description>/<date>/<image id>/*.nii``),
    ``collection`` the IDA collection CSV. The site is the subject's 3-digit prefix (002_S_0295 -> 002);
    the scanner model comes from ``scanners`` (a CSV), else a JSON sidecar, else 'unknown' (with a warning).
    Group CN -> HC, AD -> AD, MCI/EMCI/LMCI -> MCI, others empty.
    """
    rows = _import_collection(
        "ADNI",
        Path(root),
        Path(collection),
        ADNI_GROUPS,
        lambda s: s.split("_S_")[0] if "_S_" in s else UNKNOWN,
        Path(scanners) if scanners else None,
        skip_missing,
    )
    return _frame(rows, split, role, relative_to)


def import_ppmi(
    root: str | Path,
    collection: str | Path,
    scanners: str | Path | None = None,
    split: str = "train",
    role: str = "labeled",
    relative_to: str | Path | None = None,
    skip_missing: bool = False,
) -> pd.DataFrame:
    """PPMI: the ADNI layout under a ``PPMI/`` folder and its IDA collection CSV. The collection has no
    site: give site and scanner per subject or image in ``scanners`` (else both 'unknown', with a warning).
    Group Control -> HC, PD -> PD, others empty.
    """
    rows = _import_collection(
        "PPMI",
        Path(root),
        Path(collection),
        PPMI_GROUPS,
        lambda s: UNKNOWN,
        Path(scanners) if scanners else None,
        skip_missing,
    )
    return _frame(rows, split, role, relative_to)


IMPORTERS: dict[str, Callable[..., pd.DataFrame]] = {
    "ixi": import_ixi,
    "sald": import_sald,
    "abide": import_abide,
    "adni": import_adni,
    "ppmi": import_ppmi,
}


def import_dataset(name: str, **kwargs) -> pd.DataFrame:
    """Run the importer registered under ``name`` (ixi, sald, abide, adni, ppmi) with ``kwargs``."""
    key = name.strip().lower()
    if key not in IMPORTERS:
        raise DataError(f"unknown data set '{name}'; importers exist for {', '.join(IMPORTERS)}")
    return IMPORTERS[key](**kwargs)
