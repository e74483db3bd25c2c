"""Self-describing checkpoints, written atomically and checked on load.

A checkpoint is a dict with at least ``kind`` (which model family) and ``format`` (this module's
version); training checkpoints add optimizer and RNG state, model files add everything inference
needs (config, site names, voxel size, normalization), so nothing else has to travel with them.

A model file is something users download and pass around, and a pickle can run any code on load. So a
checkpoint holds only tensors and plain types (dict, list, tuple, str, int, float, bool, None): numpy
values are turned into tensors and Python numbers on save (:func:`plain`), and every file is read with
``torch.load(weights_only=True)``, whose unpickler builds nothing else. A file that needs anything else
is refused with one line before any of its code can run.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from harmlib.data.io import write_atomic

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or of another model kind; the message names the file."""


def plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` as tensors and plain types only, which ``torch.load(weights_only=True)`` reads back: numpy arrays
    become tensors, numpy scalars Python numbers, paths strings; anything else is a TypeError naming its key."""
    if isinstance(obj, np.generic):  # before float: numpy's float64 is a float, but pickles as a numpy scalar
        return obj.item()
    if isinstance(obj, torch.Tensor) or obj is None or type(obj) in (str, bool, int, float):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, dict):
        return {k: plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(
        f"{where}: a {type(obj).__name__} cannot be stored safely; store it as plain types (asdict, tolist)"
    )


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: never a half file. The payload is
    stored as plain types (:func:`plain`), so that loading it never needs to run code."""
    payload = plain(payload)
    return write_atomic(path, lambda tmp: torch.save({"format": FORMAT, **payload}, tmp), ".pt")


def load_checkpoint(path: str | Path, kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; ``kinds`` lists the model kinds the caller can use."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; train a model first (make reproduce) or check the path")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused a global: the file would build (or run) code
        raise CheckpointError(
            f"{path}: refused: it holds Python objects other than tensors and plain types ({_refused(err)}), which "
            "could run code when loaded; use a model file written by harmlib, or re-export it with this version"
        ) from None
    except Exception as err:  # truncated zip, pickle errors, not a torch file at all
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}); it is corrupt or truncated, re-train or re-copy it"
        ) from None
    if not isinstance(ck, dict) or "kind" not in ck or ck.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a harmlib checkpoint (no kind/format); use a file written by harmlib")
    if kinds and ck["kind"] not in kinds:
        raise CheckpointError(f"{path}: a '{ck['kind']}' checkpoint, but this needs one of: {', '.join(kinds)}")
    return ck


def check_weights(ck: dict[str, Any], path: str | Path) -> None:
    """A model file has its nets' weights, all finite: a diverged training (NaN/Inf) is refused before it writes a
    volume of NaN."""
    state = ck.get("state")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: a '{ck.get('kind')}' model file without weights ('state'); export it again")
    bad = [
        f"{net}.{k}"
        for net, sd in state.items()
        if isinstance(sd, dict)
        for k, v in sd.items()
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN/Inf (first: {bad[0]}): the training diverged; retrain "
            "(a lower train.lr, or train.grad_clip) or use an earlier checkpoint"
        )


def _refused(err: Exception) -> str:
    """The global that ``weights_only`` refused, from torch's long message."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    return found.group(1) if found else type(err).__name__
