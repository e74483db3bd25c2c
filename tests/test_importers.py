"""Importers on tiny fixtures written in each data set's real layout, file names and phenotype columns."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from harmlib.data import importers
from harmlib.data.importers import (
    IMPORTERS,
    import_abide,
    import_adni,
    import_dataset,
    import_ixi,
    import_ppmi,
    import_sald,
)
from harmlib.data.io import DataError
from harmlib.data.manifest import COLUMNS, read_manifest, write_manifest


def nifti(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).random((4, 4, 4)).astype(np.float32) + 0.1
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def by_subject(df: pd.DataFrame) -> dict[str, dict]:
    return {r["subject"]: r for r in df.to_dict("records")}


def check_writes(df: pd.DataFrame, tmp_path: Path) -> None:
    assert list(df.columns) == COLUMNS
    write_manifest(df, tmp_path / "manifest.csv")
    assert len(read_manifest(tmp_path / "manifest.csv")) == len(df)


# -- IXI ----------------------------------------------------------------------------------------

IXI_HEADER = [
    "IXI_ID",
    "SEX_ID (1=m, 2=f)",
    "HEIGHT",
    "WEIGHT",
    "ETHNIC_ID",
    "MARITAL_ID",
    "OCCUPATION_ID",
    "QUALIFICATION_ID",
    "DOB",
    "DATE_AVAILABLE",
    "STUDY_DATE",
    "AGE",
]


def ixi_sheet() -> pd.DataFrame:
    rows = [
        [2, 2, 164, 58, 1, 4, 1, 5, "1970-01-30", 1, "2005-11-18", 35.8001],
        [12, 1, 175, 70, 1, 2, 1, 5, "1966-08-20", 1, "2005-06-01", ""],  # a repeated ID: first row lacks the age
        [12, 1, 175, 70, 1, 2, 1, 5, "1966-08-20", 1, "2005-06-01", 38.78],
        [13, 1, 182, 70, 1, 2, 5, 5, "1958-09-15", 1, "2005-06-01", 46.71],
    ]
    return pd.DataFrame(rows, columns=IXI_HEADER)


@pytest.fixture()
def ixi(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "IXI-T1"
    for i, name in enumerate(
        [
            "IXI002-Guys-0828-T1.nii.gz",
            "IXI012-HH-1211-T1.nii.gz",
            "IXI013-HH-1212-T1.nii.gz",
            "IXI640-IOP-1234-T1.nii.gz",
        ]
    ):
        nifti(root / name, i)
    sheet = tmp_path / "IXI.csv"
    ixi_sheet().to_csv(sheet, index=False)
    return root, sheet


def test_ixi_from_csv_export(ixi, tmp_path):
    df = import_ixi(*ixi)
    rows = by_subject(df)
    assert sorted(rows) == ["IXI002", "IXI012", "IXI013", "IXI640"]
    assert (rows["IXI002"]["scanner"], rows["IXI002"]["site"], rows["IXI002"]["domain"]) == (
        "Gyroscan Intera",
        "Guys",
        "Gyroscan Intera@Guys",
    )
    assert rows["IXI012"]["domain"] == "Intera@HH" and rows["IXI640"]["domain"] == "GE@IOP"
    assert rows["IXI002"]["age"] == pytest.approx(35.8001) and rows["IXI002"]["sex"] == "F"
    assert rows["IXI012"]["age"] == pytest.approx(38.78) and rows["IXI012"]["sex"] == "M"  # the row with an age wins
    assert np.isnan(rows["IXI640"]["age"]) and rows["IXI640"]["sex"] == ""  # not in the sheet: kept, no phenotype
    assert set(df["dataset"]) == {"IXI"} and set(df["diagnosis"]) == {"HC"}
    assert set(df["split"]) == {"train"} and set(df["role"]) == {"labeled"}
    assert all(Path(p).is_absolute() for p in df["path"])
    check_writes(df, tmp_path)


def test_ixi_xls_goes_through_read_excel_with_xlrd(ixi, tmp_path, monkeypatch):
    xls = tmp_path / "IXI.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0")  # an OLE2 header; the reader is mocked
    calls = []

    def fake_read_excel(path, engine=None, dtype=None, **kw):
        calls.append((Path(path), engine))
        return ixi_sheet().astype(str).replace("", np.nan)  # what pandas gives for empty cells

    monkeypatch.setattr(importers, "_has_module", lambda name: True)
    monkeypatch.setattr(importers.pd, "read_excel", fake_read_excel)
    df = import_ixi(ixi[0], xls, split="test", role="test", relative_to=tmp_path)
    assert calls == [(xls, "xlrd")]
    assert by_subject(df)["IXI013"]["age"] == pytest.approx(46.71)
    assert set(df["split"]) == {"test"} and df["path"].iloc[0].startswith("IXI-T1/")
    check_writes(df, tmp_path)


def test_ixi_xls_without_xlrd_says_how_to_install(ixi, tmp_path, monkeypatch):
    xls = tmp_path / "IXI.xls"
    xls.write_bytes(b"")
    monkeypatch.setattr(importers, "_has_module", lambda name: False)
    with pytest.raises(DataError, match=r"IXI\.xls.*pip install xlrd"):
        import_ixi(ixi[0], xls)


@pytest.mark.parametrize(
    "name, message",
    [
        ("IXI099-XYZ-0001-T1.nii.gz", "unknown IXI site 'XYZ'"),
        ("IXI099-Guys-0001-T2.nii.gz", "not an IXI T1 file name"),
    ],
)
def test_ixi_bad_file_names(ixi, name, message):
    bad = nifti(ixi[0] / name)
    with pytest.raises(DataError, match=message) as err:
        import_ixi(*ixi)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_ixi_missing_columns_and_empty_folder(ixi, tmp_path):
    sheet = csv(tmp_path / "bad.csv", [{"IXI_ID": 2, "AGE": 30}])
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) SEX_ID"):
        import_ixi(ixi[0], sheet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no NIfTI"):
        import_ixi(tmp_path / "empty", ixi[1])
    with pytest.raises(DataError, match="phenotype file not found"):
        import_ixi(ixi[0], tmp_path / "nope.csv")


# -- SALD ---------------------------------------------------------------------------------------


@pytest.fixture()
def sald(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "SALD"
    nifti(root / "sub-031274" / "anat" / "sub-031274_T1w.nii.gz", 1)
    nifti(root / "sub-031275" / "session_1" / "anat_1" / "anat.nii.gz", 2)
    nifti(root / "sub-031275" / "session_1" / "rest_1" / "rest.nii.gz", 3)  # functional: ignored
    nifti(root / "sub-031276" / "anat" / "sub-031276_T1w.nii.gz", 5)  # sentinel age, blank sex
    nifti(root / "sub-031999" / "anat" / "sub-031999_T1w.nii.gz", 4)  # not in the sheet
    pheno = csv(
        tmp_path / "sub_information.csv",
        [
            {"Sub_ID": 31274, "Sex": 2, "Age": 23},
            {"Sub_ID": "031275", "Sex": 1, "Age": 71},
            {"Sub_ID": "031276", "Sex": "", "Age": -9999},
        ],
    )
    return root, pheno


def test_sald(sald, tmp_path):
    df = import_sald(*sald, relative_to=tmp_path)
    rows = by_subject(df)
    assert sorted(rows) == ["sub-031274", "sub-031275", "sub-031276", "sub-031999"]
    assert np.isnan(rows["sub-031276"]["age"]) and rows["sub-031276"]["sex"] == ""
    assert set(df["domain"]) == {"TrioTim@SWU"} and set(df["dataset"]) == {"SALD"}
    assert (rows["sub-031274"]["age"], rows["sub-031274"]["sex"]) == (23, "F")
    assert (rows["sub-031275"]["age"], rows["sub-031275"]["sex"], rows["sub-031275"]["session"]) == (
        71,
        "M",
        "session_1",
    )
    assert rows["sub-031275"]["path"] == "SALD/sub-031275/session_1/anat_1/anat.nii.gz"
    assert np.isnan(rows["sub-031999"]["age"]) and rows["sub-031999"]["sex"] == ""
    check_writes(df, tmp_path)


def test_sald_errors(sald, tmp_path):
    (sald[0] / "sub-031300" / "rest").mkdir(parents=True)
    nifti(sald[0] / "sub-031300" / "rest" / "rest.nii.gz")
    with pytest.raises(DataError, match=r"sub-031300: no T1 NIfTI"):
        import_sald(*sald)
    with pytest.raises(DataError, match="no sub-<id> subject folders"):
        import_sald(tmp_path / "missing", sald[1])
    with pytest.raises(DataError, match=r"missing column\(s\) Sex"):
        import_sald(sald[0], csv(tmp_path / "p.csv", [{"Sub_ID": 1, "Age": 3}]))
    with pytest.raises(DataError, match=r"q\.csv row 2: unknown sex 'X\?'"):
        import_sald(sald[0], csv(tmp_path / "q.csv", [{"Sub_ID": 1, "Sex": "X?", "Age": 3}]))


# -- ABIDE I ------------------------------------------------------------------------------------


def abide_row(sub: int, site: str, dx: int, age: float, sex: int) -> dict:
    return {
        "Unnamed: 0": 0,
        "SUB_ID": sub,
        "X": 1,
        "subject": sub,
        "SITE_ID": site,
        "FILE_ID": f"{site.title()}_{sub:07d}",
        "DX_GROUP": dx,
        "DSM_IV_TR": 1 if dx == 1 else 0,
        "AGE_AT_SCAN": age,
        "SEX": sex,
        "HANDEDNESS_CATEGORY": "R",
    }


@pytest.fixture()
def abide(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "ABIDE"
    nifti(root / "Pitt" / "0050003" / "session_1" / "anat_1" / "mprage.nii.gz", 1)
    nifti(root / "Pitt" / "0050003" / "session_1" / "rest_1" / "rest.nii.gz", 2)
    nifti(root / "Leuven_1" / "0050682" / "session_1" / "anat_1" / "mprage.nii.gz", 3)
    nifti(root / "Outputs" / "ants" / "anat" / "Sdsu_0050182_anat.nii.gz", 4)  # preprocessed-connectomes naming
    pheno = csv(
        tmp_path / "Phenotypic_V1_0b_preprocessed1.csv",
        [
            abide_row(50003, "PITT", 1, 24.45, 1),
            abide_row(50682, "LEUVEN_1", 2, 21.0, 2),
            abide_row(50182, "SDSU", 2, 15.5, 1),
            abide_row(51456, "CALTECH", 1, 55.4, 1),
        ],
    )  # no image: skipped
    return root, pheno


def test_abide(abide, tmp_path):
    df = import_abide(*abide)
    rows = by_subject(df)
    assert sorted(rows) == ["0050003", "0050182", "0050682"]
    assert (rows["0050003"]["domain"], rows["0050003"]["diagnosis"], rows["0050003"]["sex"]) == (
        "Allegra@PITT",
        "ASD",
        "M",
    )
    assert rows["0050003"]["age"] == pytest.approx(24.45) and rows["0050003"]["session"] == "session_1"
    assert (rows["0050682"]["domain"], rows["0050682"]["diagnosis"], rows["0050682"]["sex"]) == (
        "Intera@LEUVEN",
        "HC",
        "F",
    )
    assert rows["0050182"]["domain"] == "MR750@SDSU"
    assert set(df["split"]) == {"test"} and set(df["role"]) == {"age"} and set(df["dataset"]) == {"ABIDE"}
    check_writes(df, tmp_path)


def test_abide_site_table_matches_the_paper():
    scanners = pd.Series(importers.ABIDE_SCANNERS)
    assert len(scanners) == 17
    assert scanners.value_counts().to_dict() == {
        "TrioTim": 5,
        "Allegra": 3,
        "Verio": 2,
        "Achieva": 2,
        "Intera": 2,
        "Signa": 2,
        "MR750": 1,
    }
    assert importers.abide_site("MaxMun_a") == ("MAX_MUN", "Verio") and importers.abide_site("UM_2") == ("UM", "Signa")


def test_abide_errors(abide, tmp_path):
    pheno = pd.read_csv(abide[1])
    pheno.loc[pheno["SUB_ID"] == 50003, "SITE_ID"] = "MARS"
    with pytest.raises(DataError, match=r"row 2: unknown ABIDE site 'MARS'"):
        import_abide(abide[0], csv(tmp_path / "mars.csv", pheno.to_dict("records")))
    nifti(abide[0] / "NYU" / "0051000" / "session_1" / "anat_1" / "mprage.nii.gz")
    with pytest.raises(DataError, match="SUB_ID 51000 is not in"):
        import_abide(*abide)
    with pytest.raises(DataError, match=r"missing column\(s\) DX_GROUP"):
        import_abide(abide[0], csv(tmp_path / "p.csv", [{"SITE_ID": "NYU", "SUB_ID": 1, "AGE_AT_SCAN": 1, "SEX": 1}]))
    only_rest = tmp_path / "rest_only"
    nifti(only_rest / "NYU" / "0051000" / "session_1" / "rest_1" / "rest.nii.gz")
    with pytest.raises(DataError, match="no ABIDE T1 images"):
        import_abide(only_rest, abide[1])


# -- ADNI and PPMI ------------------------------------------------------------------------------


def ida_row(image: str, subject: str, group: str, sex: str, age: int, visit: str, desc: str = "MPRAGE") -> dict:
    return {
        "Image Data ID": image,
        "Subject": subject,
        "Group": group,
        "Sex": sex,
        "Age": age,
        "Visit": visit,
        "Modality": "MRI",
        "Description": desc,
        "Type": "Original",
        "Acq Date": "6/02/2011",
        "Format": "NiFTI",
        "Downloaded": "",
    }


def ida_image(root: Path, subject: str, image: str, desc: str = "MPRAGE", seed: int = 0) -> Path:
    name = f"ADNI_{subject}_MR_{desc}_br_raw_20110602125224332_1_S110476_{image}.nii"
    return nifti(root / subject / desc / "2011-06-02_07_58_50.0" / image / name, seed)


@pytest.fixture()
def adni(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "ADNI"
    ida_image(root, "002_S_0295", "I254582", seed=1)
    ida_image(root, "002_S_0295", "I254583", desc="MPRAGE_repeat", seed=2)  # same visit, second scan
    ida_image(root, "011_S_0002", "I300001", seed=3)
    ida_image(root, "941_S_6017", "I900000", seed=4)
    rows = [
        ida_row("I254582", "002_S_0295", "CN", "M", 85, "bl"),
        ida_row("I254583", "002_S_0295", "CN", "M", 85, "bl", "MPRAGE_repeat"),
        ida_row("I300001", "011_S_0002", "AD", "F", 74, "bl"),
        ida_row("I900000", "941_S_6017", "EMCI", "F", 70, "sc"),
    ]
    return root, csv(tmp_path / "collection.csv", rows)


def test_adni_without_scanner_table_warns_and_uses_unknown(adni, tmp_path):
    with pytest.warns(UserWarning, match="4 image\\(s\\) without a scanner model"):
        df = import_adni(*adni)
    assert set(df["site"]) == {"002", "011", "941"} and set(df["scanner"]) == {"unknown"}
    rows = df.set_index("path")
    first = rows.loc[[p for p in rows.index if p.endswith("I254582.nii")][0]]
    assert (first["subject"], first["domain"], first["diagnosis"], first["sex"], first["age"]) == (
        "002_S_0295",
        "unknown@002",
        "HC",
        "M",
        85,
    )
    assert sorted(df.loc[df["subject"] == "002_S_0295", "session"]) == ["bl_I254582", "bl_I254583"]  # unique sessions
    assert by_subject(df)["011_S_0002"]["diagnosis"] == "AD" and by_subject(df)["941_S_6017"]["diagnosis"] == "MCI"
    assert set(df["split"]) == {"test"} and set(df["role"]) == {"ad"}
    check_writes(df, tmp_path)


def test_adni_scanner_table_and_sidecar(adni, tmp_path):
    (next(adni[0].rglob("*I900000.nii")).with_suffix(".json")).write_text(
        json.dumps({"ManufacturersModelName": "Prisma_fit"})
    )
    table = csv(tmp_path / "scanners.csv", [{"site": "002", "scanner": "Prisma"}, {"site": "011", "scanner": "Skyra"}])
    df = import_adni(*adni, scanners=table, relative_to=tmp_path)
    assert (
        by_subject(df)["002_S_0295"]["domain"] == "Prisma@002" and by_subject(df)["011_S_0002"]["domain"] == "Skyra@011"
    )
    assert by_subject(df)["941_S_6017"]["domain"] == "Prisma_fit@941"  # from the dcm2niix sidecar
    check_writes(df, tmp_path)
    by_image = csv(tmp_path / "by_image.csv", [{"image_id": "300001", "scanner": "Achieva", "site": "011b"}])
    with pytest.warns(UserWarning):
        df = import_adni(*adni, scanners=by_image)
    assert by_subject(df)["011_S_0002"]["domain"] == "Achieva@011b"


def test_adni_errors(adni, tmp_path):
    rows = pd.read_csv(adni[1]).to_dict("records") + [
        ida_row("I777", "002_S_0295", "CN", "M", 86, "m12") | {"Format": "DCM"}
    ]
    coll = csv(tmp_path / "more.csv", rows)
    with pytest.raises(DataError, match=r"more\.csv row 6: no NIfTI for image I777 .*dcm2niix"):
        import_adni(adni[0], coll)
    with pytest.warns(UserWarning):
        assert len(import_adni(adni[0], coll, skip_missing=True)) == 4
    with pytest.raises(DataError, match=r"missing column\(s\) Group"):
        import_adni(adni[0], csv(tmp_path / "p.csv", [{"Image Data ID": "I1", "Subject": "s", "Sex": "M", "Age": 1}]))
    with pytest.raises(DataError, match="needs a 'scanner' column"):
        import_adni(*adni, scanners=csv(tmp_path / "s.csv", [{"site": "002", "model": "Prisma"}]))


def test_ppmi(tmp_path):
    root = tmp_path / "PPMI"
    ida_image(root, "3000", "I1001", desc="MPRAGE_GRAPPA", seed=1)
    ida_image(root, "3001", "I1002", desc="SAG_3D_MPRAGE", seed=2)
    ida_image(root, "3002", "I1003", desc="SAG_3D_MPRAGE", seed=3)
    coll = csv(
        tmp_path / "ppmi.csv",
        [
            ida_row("I1001", "3000", "Control", "F", 69, "BL"),
            ida_row("I1002", "3001", "PD", "M", 65, "V04"),
            ida_row("I1003", "3002", "Prodromal", "M", 60, "BL"),
        ],
    )
    table = csv(
        tmp_path / "centers.csv",
        [
            {"subject": "3000", "site": "290", "scanner": "TrioTim"},
            {"subject": "3001", "site": "32", "scanner": "Achieva"},
            {"subject": "3002", "site": "290", "scanner": "TrioTim"},
        ],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every scanner known, every group mapped: no warning
        df = import_ppmi(root, coll, scanners=table)
    rows = by_subject(df)
    assert (rows["3000"]["domain"], rows["3000"]["diagnosis"], rows["3000"]["session"]) == ("TrioTim@290", "HC", "BL")
    assert (rows["3001"]["domain"], rows["3001"]["diagnosis"], rows["3001"]["sex"]) == ("Achieva@32", "PD", "M")
    assert rows["3002"]["diagnosis"] == "" and set(df["dataset"]) == {"PPMI"}
    check_writes(df, tmp_path)
    with pytest.warns(UserWarning, match="scanner"):
        assert set(import_ppmi(root, coll)["domain"]) == {"unknown@unknown"}
    odd = csv(
        tmp_path / "odd.csv",
        pd.read_csv(coll, dtype=str).assign(Group=["Control", "PD", "Genetic Registry X"]).to_dict("records"),
    )
    with pytest.warns(UserWarning, match="Genetic Registry X.*no diagnosis mapping"):
        assert by_subject(import_ppmi(root, odd, scanners=table))["3002"]["diagnosis"] == ""


# -- registry -----------------------------------------------------------------------------------


def test_registry(ixi):
    assert set(IMPORTERS) == {"ixi", "sald", "abide", "adni", "ppmi"}
    assert import_dataset("IXI", root=ixi[0], demographics=ixi[1]).equals(import_ixi(*ixi))
    with pytest.raises(DataError, match="unknown data set 'oasis'"):
        import_dataset("oasis", root=ixi[0])
