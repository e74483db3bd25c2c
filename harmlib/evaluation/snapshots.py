"""Training snapshots as harmonize functions: the points of the convergence figure.

The shared loop (`harmlib.train.loop.fit`) keeps the trained nets every ``train.snapshot_every`` steps under
``<run dir>/snapshots/stepNNNNNN.pt``. `snapshot_harmonizers` turns each into a loader of a harmonize
function (``(volume, affine, target) -> volume``, as `harmlib.evaluation.gate` expects), built lazily so
that only one snapshot's nets are in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harmlib.aguit.model import KIND
from harmlib.checkpoint import load_checkpoint
from harmlib.evaluation.gate import Harmonize
from harmlib.harmonize import SLICE_KINDS, harmonize_volume, harmonizer_from, load_slice_harmonizer


def snapshot_steps(snap_dir: str | Path) -> dict[int, Path]:
    """{step: path} of the ``stepNNNNNN.pt`` files under ``snap_dir`` (empty when there is none)."""
    found = {}
    for p in sorted(Path(snap_dir).glob("step*.pt")):
        digits = p.stem[len("step") :]
        if digits.isdigit():
            found[int(digits)] = p
    return found


def _snapshot_loaders(
    snap_dir: str | Path, build: Callable[[Path], object], seed: int
) -> dict[int, Callable[[], Harmonize]]:
    """{step: a function that builds that snapshot's harmonizer with ``build(path)`` and wraps it as a harmonize function}."""

    def loader(path: Path) -> Callable[[], Harmonize]:
        def make() -> Harmonize:
            h = build(path)
            return lambda vol, affine, target: harmonize_volume(h, vol, affine, target, seed)

        return make

    return {step: loader(p) for step, p in snapshot_steps(snap_dir).items()}


def snapshot_harmonizers(
    snap_dir: str | Path, meta: dict, seed: int = 0, device: str = "cpu"
) -> dict[int, Callable[[], Harmonize]]:
    """{step: a function that builds that snapshot's harmonize function} for a 3D harmonizer.

    ``meta``: the model file's metadata (`harmlib.aguit.task.build_task`'s second value); the snapshot
    holds the E_b, E_s and G weights (``{"nets": ...}``).
    """
    kind = f"{meta.get('kind', KIND)}-snapshot"
    return _snapshot_loaders(
        snap_dir, lambda path: harmonizer_from(meta, load_checkpoint(path, (kind,))["nets"], device), seed
    )


def snapshot_slice_harmonizers(
    snap_dir: str | Path, model_file: str | Path, seed: int = 0, device: str = "cpu"
) -> dict[int, Callable[[], Harmonize]]:
    """{step: a function that builds that snapshot's harmonize function} for a 2D model (GMM-DRIT, DRIT++).

    A snapshot holds the trained nets only (E^c, G; DRIT++ also E^a); the rest (GMM-DRIT's frozen GM-VAE, the
    grid, the domains) comes from the exported ``model_file`` of the same run.
    """
    ck = load_checkpoint(model_file, SLICE_KINDS)

    def build(path: Path):
        nets = load_checkpoint(path, (f"{ck['kind']}-snapshot",))["nets"]
        return load_slice_harmonizer({**ck, "state": {**ck["state"], **nets}}, path, device)

    return _snapshot_loaders(snap_dir, build, seed)
