"""Where a harmonized file came from: a JSON sidecar per output and, on request, a BIDS-derivatives layout.

BIDS derivatives (the convention fMRIPrep and the tools that read its outputs follow) put each output at
``sub-<label>[/ses-<label>]/anat/sub-<label>[_ses-<label>]_desc-<desc>_T1w.nii.gz`` with a JSON sidecar of the
same name, and describe the dataset in ``dataset_description.json`` (``DatasetType: derivative``,
``GeneratedBy``). Without ``--bids`` an output keeps its input's name and gets the same sidecar beside it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harmlib.aguit.model import KIND as HARMONIZER
from harmlib.data.io import file_digest, write_text_atomic
from harmlib.drit.model import DRIT, GMM_DRIT
from harmlib.gmvae.model import KIND as GMVAE

BIDS_VERSION = "1.9.0"
# Training-steps field of each model kind: the config section its run trained (kind -> section).
KIND_SECTION = {HARMONIZER: "harmonizer", GMM_DRIT: "drit", DRIT: "drit", GMVAE: "gmvae"}  # a kind's config section


def sidecar_path(out: str | Path) -> Path:
    """``x.nii.gz`` -> ``x.json`` (BIDS: a sidecar shares its image's name up to the extension)."""
    out = Path(out)
    stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.stem
    return out.with_name(stem + ".json")


def model_info(ck: dict[str, Any]) -> dict[str, Any]:
    """A model file's training facts from its metadata: kind, profile, training steps, creation time, sites."""
    cfg = ck.get("config") or {}
    section = cfg.get(KIND_SECTION.get(ck.get("kind", ""), ""), {}) or {}
    return {
        "kind": ck.get("kind", "?"),
        "profile": cfg.get("profile", "?"),
        "steps": (section.get("train") or {}).get("iterations", "?"),
        "created": ck.get("created", "?"),
        "sites": list(ck.get("domains", [])),
    }


def alnum(text: str) -> str:
    """A BIDS label: letters and digits only ("Gyroscan Intera@Guys" -> "GyroscanInteraGuys")."""
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", text) if w)


def bids_entities(in_path: str | Path, subject: str = "", session: str = "") -> tuple[str, str]:
    """(subject, session) labels for an input: from its BIDS name (``sub-01_ses-2_T1w.nii.gz``), else from
    ``subject`` / ``session`` (a manifest's columns), else the subject from the file name. Always valid BIDS labels
    (letters and digits): a name with none of them gets a label made from its digest."""
    name = Path(in_path).name
    sub = re.search(r"(?:^|_)sub-([A-Za-z0-9]+)", name)
    ses = re.search(r"_ses-([A-Za-z0-9]+)", name)
    label = sub.group(1) if sub else alnum(str(subject).removeprefix("sub-")) or alnum(name.split(".")[0])
    if not label:  # "___.nii.gz", a name in another script: a stable label from the name itself
        label = "x" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return label, ses.group(1) if ses else alnum(str(session or "").removeprefix("ses-"))


def bids_output(out_dir: str | Path, in_path: str | Path, target: str, subject: str = "", session: str = "") -> Path:
    """The BIDS-derivatives path of the harmonized ``in_path``: ``sub-<s>[/ses-<t>]/anat/..._desc-harmonized<Target>_T1w.nii.gz``."""
    sub, ses = bids_entities(in_path, subject, session)
    folder = Path(out_dir) / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
    return folder / f"sub-{sub}{f'_ses-{ses}' if ses else ''}_desc-harmonized{alnum(target)}_T1w.nii.gz"


def provenance(
    in_path: str | Path, model_path: str | Path, info: dict[str, Any], target: str, seed: int
) -> dict[str, Any]:
    """The sidecar of one output: its input and model (paths and SHA-256), the target, the seed, the versions, the date."""
    import torch

    import harmlib

    in_path, model_path = Path(in_path).resolve(), Path(model_path).resolve()
    return {
        "Description": f"{in_path.name} harmonized to '{target}' by harmlib ({info.get('kind', '?')})",
        "Sources": [in_path.as_uri()],
        "input": {"path": str(in_path), "sha256": file_digest(in_path)},
        "model": {
            "path": str(model_path),
            "sha256": file_digest(model_path),
            **{k: info[k] for k in ("kind", "profile", "steps", "created") if k in info},
        },
        "target": target,
        "seed": seed,
        "harmlib": harmlib.__version__,
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_sidecar(out: str | Path, record: dict[str, Any]) -> Path:
    return write_text_atomic(sidecar_path(out), json.dumps(record, indent=2) + "\n")


def write_dataset_description(out_dir: str | Path) -> Path:
    """``dataset_description.json`` of a BIDS-derivatives folder (kept if one is already there)."""
    import harmlib

    path = Path(out_dir) / "dataset_description.json"
    if path.is_file():
        return path
    desc = {
        "Name": "harmlib harmonized T1w",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "harmlib",
                "Version": harmlib.__version__,
                "Description": "deep MRI harmonization (the papers' companion)",
            }
        ],
    }
    return write_text_atomic(path, json.dumps(desc, indent=2) + "\n")
