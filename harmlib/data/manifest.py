"""The manifest: one CSV schema for every data set, validated on load.

One row per T1 volume. Paths are relative to the manifest's folder (or absolute).

| column | meaning |
|---|---|
| path | the NIfTI file |
| subject, session | identifiers; (subject, session, domain) is unique |
| dataset | IXI, SALD, ABIDE, ADNI, PPMI, synthetic, ... |
| scanner, site | scanner model and acquisition site |
| domain | the harmonization domain, a scanner-site pair: ``"<scanner>@<site>"`` |
| age | years (empty if unknown) |
| sex | M, F or empty |
| diagnosis | HC, AD, MCI, ASD, PD or empty |
| split | train or test |
| role | labeled / unlabeled (training), test (healthy test cohort), age (brain-age cohort), ad (AD/HC cohort) |
| truth_path | synthetic test subjects only: the subject's rendering at the reference sites (targets A and B), a path with ``{domain}`` in it (filled with ``slug(domain)``); empty for real data |
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harmlib.data.io import DataError, recorded_digest, write_text_atomic

COLUMNS = [
    "path",
    "subject",
    "session",
    "dataset",
    "scanner",
    "site",
    "domain",
    "age",
    "sex",
    "diagnosis",
    "split",
    "role",
    "truth_path",
]
ALLOWED = {
    "sex": ("M", "F", ""),
    "diagnosis": ("HC", "AD", "MCI", "ASD", "PD", ""),
    "split": ("train", "test"),
    "role": ("labeled", "unlabeled", "test", "age", "ad"),
}
REQUIRED = ("path", "subject", "dataset", "scanner", "site", "domain", "split", "role")


def slug(domain: str) -> str:
    """A file-name-safe form of a domain: ``"Gyroscan Intera@Guys"`` -> ``"Gyroscan-Intera-Guys"``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", domain).strip("-")


def domain_name(scanner: str, site: str) -> str:
    """The harmonization domain of a scanner-site pair."""
    return f"{scanner}@{site}"


def _where(name: str, i: int, df: pd.DataFrame) -> str:
    return f"{name} row {i + 2} (subject {df.at[i, 'subject'] or '?'})"  # +2: header line, 1-based


def validate(df: pd.DataFrame, root: Path, name: str = "manifest", check_files: bool = True) -> pd.DataFrame:
    """Check columns, values, duplicates and files; return the normalized frame or raise DataError."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {', '.join(missing)}; the header must be {','.join(COLUMNS)}")
    df = df[COLUMNS].copy().reset_index(drop=True)
    for col in COLUMNS:
        if col != "age":
            df[col] = df[col].fillna("").astype(str).str.strip()
    for col in REQUIRED:
        empty = df.index[df[col] == ""]
        if len(empty):
            raise DataError(f"{_where(name, empty[0], df)}: empty '{col}'; every row needs one")
    for col, allowed in ALLOWED.items():
        bad = df.index[~df[col].isin(allowed)]
        if len(bad):
            raise DataError(
                f"{_where(name, bad[0], df)}: unknown {col} '{df.at[bad[0], col]}'; allowed: {', '.join(a or '(empty)' for a in allowed)}"
            )
    raw = df["age"].astype(object).fillna("").astype(str).str.strip()
    age = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
    bad = df.index[(age.isna() & (raw != "")) | (age < 0) | (age > 120)]
    if len(bad):
        raise DataError(
            f"{_where(name, bad[0], df)}: invalid age '{raw[bad[0]]}'; give years in [0, 120] or leave it empty"
        )
    df["age"] = age
    dup = df.index[df.duplicated("path", keep="first")]
    if len(dup):
        raise DataError(f"{_where(name, dup[0], df)}: duplicate path {df.at[dup[0], 'path']}; each volume appears once")
    dup = df.index[df.duplicated(["subject", "session", "domain"], keep="first")]
    if len(dup):
        raise DataError(
            f"{_where(name, dup[0], df)}: duplicate (subject, session, domain); give repeated scans distinct sessions"
        )
    bad = df.index[df["domain"] != [domain_name(s, t) for s, t in zip(df["scanner"], df["site"])]]
    if len(bad):
        raise DataError(
            f"{_where(name, bad[0], df)}: domain '{df.at[bad[0], 'domain']}' is not '<scanner>@<site>' = '{domain_name(df.at[bad[0], 'scanner'], df.at[bad[0], 'site'])}'"
        )
    if check_files:
        for i, p in enumerate(df["path"]):
            if not _resolve(root, p).is_file():
                raise DataError(
                    f"{_where(name, i, df)}: file {_resolve(root, p)} not found; fix the path or remove the row"
                )
    return df


def _resolve(root: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else root / q


LABELS = "labels"  # the traveling-subject truth's name for its tissue label map: truth/<subject>_labels.nii.gz


def rescan_path(truth: Path) -> Path:
    """Where the rescan of a traveling-subject truth lies: beside it, ``<name>_rescan.nii.gz``."""
    return truth.with_name(truth.name.replace(".nii.gz", "_rescan.nii.gz"))


@dataclass
class Manifest:
    """A validated manifest and the folder its relative paths start from."""

    df: pd.DataFrame
    root: Path

    def path(self, i: int) -> Path:
        return _resolve(self.root, self.df.at[i, "path"])

    def paths(self) -> list[Path]:
        return [_resolve(self.root, p) for p in self.df["path"]]

    def select(self, split: str | None = None, role: str | None = None) -> Manifest:
        m = pd.Series(True, index=self.df.index)
        if split:
            m &= self.df["split"] == split
        if role:
            m &= self.df["role"] == role
        return Manifest(self.df[m].reset_index(drop=True), self.root)

    def domains(self, split: str = "train") -> list[str]:
        """Sorted domains of a split: for ``train``, the label vector's order."""
        return sorted(self.df.loc[self.df["split"] == split, "domain"].unique())

    def truth(self, i: int, domain: str) -> Path:
        """The traveling-subject truth of row ``i`` rendered at ``domain`` (synthetic data only)."""
        tmpl = self.df.at[i, "truth_path"]
        if not tmpl:
            raise DataError(
                f"row {i + 2} (subject {self.df.at[i, 'subject']}): no traveling-subject truth; only synthetic test subjects have one"
            )
        return _resolve(self.root, tmpl.replace("{domain}", slug(domain)))

    def labels(self, i: int) -> Path:
        """The tissue label map of row ``i``'s traveling subject (synthetic healthy test subjects): 1 CSF, 2 GM, 3 WM,
        4-7 caudate, putamen, pallidum, thalamus, 8 lesion where a voxel is mostly that tissue, else 0."""
        return self.truth(i, LABELS)

    def rescan(self, i: int, domain: str) -> Path:
        """The same subject rendered at ``domain`` again with another scan seed (new noise and bias jitter): how close
        a second scan at the target comes to the truth, the ceiling a harmonizer is measured against."""
        return rescan_path(self.truth(i, domain))

    def digest(self) -> str:
        """16 hex digits over the rows and every file's content digest: a model trained on other data (another cohort
        version, other files) has another one, so its checkpoint is not taken for this data's."""
        h = hashlib.sha256(self.df.to_csv(index=False).encode())
        for p in self.paths():
            h.update(recorded_digest(p).encode())
        return h.hexdigest()[:16]

    def check_domain(self, domain: str, split: str = "train") -> str:
        known = self.domains(split)
        if domain not in known:
            raise DataError(f"unknown site '{domain}'; known {split} domains: {', '.join(known)}")
        return domain

    def __len__(self) -> int:
        return len(self.df)


def read_manifest(path: str | Path, check_files: bool = True) -> Manifest:
    """Read and validate a manifest CSV; errors name the file, the row and the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: manifest not found; create it with 'harmlib synth' or an importer (see data/README.md)"
        )
    _check_row_lengths(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path}: not a readable CSV ({type(err).__name__}); check the delimiter (comma) and encoding (UTF-8)"
        ) from None
    if df.empty:
        raise DataError(f"{path}: a header and no rows; add one row per volume (see data/README.md)")
    return Manifest(validate(df, path.parent, str(path), check_files), path.parent)


def _check_row_lengths(path: Path) -> None:
    """A row with more or fewer fields than the header shifts every column after it: name that row, not a later symptom."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh)
            header = next(rows, None)
            for line, row in enumerate(rows, start=2):
                if header is not None and row and len(row) != len(header):
                    raise DataError(
                        f"{path}: row {line} has {len(row)} fields but the header has {len(header)}; "
                        "quote values that contain commas, or remove the extra fields"
                    )
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the manifest as UTF-8 CSV") from None
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV ({err}); check the delimiter (comma) and quotes") from None


def write_manifest(df: pd.DataFrame, path: str | Path, check_files: bool = True) -> Manifest:
    """Validate and write a manifest atomically."""
    path = Path(path)
    for col in COLUMNS:
        if col not in df.columns:
            df = df.assign(**{col: ""})
    df = validate(df, path.parent, str(path), check_files)
    write_text_atomic(path, df.to_csv(index=False))
    return Manifest(df, path.parent)
