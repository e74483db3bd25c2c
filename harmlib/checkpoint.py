"""Self-describing checkpoints, written atomically and checked on load.

A checkpoint is a dict with at least ``kind`` (which model family) and ``format`` (this module's
version); training checkpoints add optimizer and RNG state, model files add everything inference
needs (config, site names, voxel size, normalization), so nothing else has to travel with them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or of another model kind; the message names the file."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"format": FORMAT, **payload}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; ``kinds`` lists the model kinds the caller can use."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; train a model first (make reproduce) or check the path")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated zip, pickle errors, not a torch file at all
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}); it is corrupt or truncated, re-train or re-copy it"
        ) from None
    if not isinstance(ck, dict) or "kind" not in ck or ck.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a harmlib checkpoint (no kind/format); use a file written by harmlib")
    if kinds and ck["kind"] not in kinds:
        raise CheckpointError(f"{path}: a '{ck['kind']}' checkpoint, but this needs one of: {', '.join(kinds)}")
    return ck
