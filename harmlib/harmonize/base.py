"""The one interface every harmonizer implements, and the registry that loads a model file by its kind."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from harmlib.checkpoint import check_weights, load_checkpoint
from harmlib.harmonize.targets import Target


@runtime_checkable
class Harmonizer(Protocol):
    """A loaded model: ``harmonize(volume, target) -> volume`` on the model's grid (``affine``, ``shape``), in the
    target's intensity units; ``target(text)`` parses a target or fails with one line before any work. A model with
    a grid also gives ``change(volume, target)``: what it does, in parts that apply at any resolution
    (`harmlib.harmonize.change`); a classical baseline has no grid (``affine`` None) and runs on any."""

    kind: str
    domains: list[str]
    affine: np.ndarray | None
    shape: tuple[int, ...] | None

    def target(self, text: str | Target) -> Target: ...

    def harmonize(self, vol: np.ndarray, target: str | Target, seed: int = 0) -> np.ndarray: ...


Loader = Callable[[dict[str, Any], Any, str], Harmonizer]
LOADERS: dict[str, Loader] = {}  # model-file kind -> loader(checkpoint, path, device), filled by FAMILIES
# The model families whose harmonizer modules register loaders: one line per family. Imported on first use, so
# that a family's module can import this package (its Target, register) without a circular import.
FAMILIES = (
    "harmlib.aguit.harmonizer",  # paper 1's 3D model (first: it leads every listing of kinds)
    "harmlib.drit.harmonizer",  # GMM-DRIT and DRIT++
)


def register(*kinds: str) -> Callable[[Loader], Loader]:
    """Decorate a loader ``(checkpoint, path, device) -> Harmonizer`` of these model-file kinds."""

    def add(loader: Loader) -> Loader:
        LOADERS.update(dict.fromkeys(kinds, loader))
        return loader

    return add


def loaders() -> dict[str, Loader]:
    """Every registered model-file kind and its loader (the FAMILIES' modules imported once)."""
    for module in FAMILIES:
        importlib.import_module(module)
    order = {m: i for i, m in enumerate(FAMILIES)}  # the families' order, whichever was imported first
    return dict(sorted(LOADERS.items(), key=lambda kv: order.get(kv[1].__module__, len(order))))


def load_harmonizer(path: str | Path, device: str = "cpu") -> Harmonizer:
    """A model file of any registered kind (paper 1's 3D model, GMM-DRIT, DRIT++)."""
    kinds = loaders()
    ck = load_checkpoint(path, tuple(kinds))
    check_weights(ck, path)
    return kinds[ck["kind"]](ck, path, device)
