"""Inference: every trained model behind one interface, ``Harmonizer.harmonize(volume, target) -> volume``.

* ``targets``: the target strings, parsed once (:class:`Target`);
* ``base``: the :class:`Harmonizer` protocol and the registry that loads a model file by its kind;
* ``change``: a model's change on its grid, applied at the scan's own resolution;
* ``files``: one's own NIfTI files (checks, resampling, atomic output, provenance sidecar).

Each model family's harmonizer lives with the family (``harmlib.aguit.harmonizer``: paper 1's 3D model;
``harmlib.drit.harmonizer``: GMM-DRIT and DRIT++, coronal slice by slice) and registers its loader with
``@register(kind)``; a new family adds its module to ``base.FAMILIES`` (one line). The families' names below are
re-exported on first use.
"""

import importlib
from typing import Any

from harmlib.harmonize.base import FAMILIES, LOADERS, Harmonizer, load_harmonizer, loaders, register
from harmlib.harmonize.change import Change, change_from, to_grid
from harmlib.harmonize.files import (
    check_input,
    check_mni_aligned,
    check_output,
    harmonize_array,
    harmonize_file,
    harmonize_volume,
    on_model_grid,
    resample,
    resolution_note,
)
from harmlib.harmonize.targets import AGNOSTIC, SCANNER_FREE, SELF, SELF_AT, Target, match_domain

# the families' public names, imported when first asked for (their modules import this package)
_FROM_FAMILY = {
    "VolumeHarmonizer": "harmlib.aguit.harmonizer",
    "harmonizer_from": "harmlib.aguit.harmonizer",
    "SLICE_KINDS": "harmlib.drit.harmonizer",
    "SliceHarmonizer": "harmlib.drit.harmonizer",
    "load_slice_harmonizer": "harmlib.drit.harmonizer",
    "translate_dataset": "harmlib.drit.harmonizer",
    "translate_slices": "harmlib.drit.harmonizer",
}


def __getattr__(name: str) -> Any:
    if name in _FROM_FAMILY:
        return getattr(importlib.import_module(_FROM_FAMILY[name]), name)
    raise AttributeError(f"module 'harmlib.harmonize' has no attribute '{name}'")


__all__ = [
    "AGNOSTIC",
    "Change",
    "FAMILIES",
    "LOADERS",
    "SCANNER_FREE",
    "SELF",
    "SELF_AT",
    "SLICE_KINDS",
    "Harmonizer",
    "SliceHarmonizer",
    "Target",
    "VolumeHarmonizer",
    "change_from",
    "check_input",
    "check_mni_aligned",
    "check_output",
    "harmonize_array",
    "harmonize_file",
    "harmonize_volume",
    "harmonizer_from",
    "load_harmonizer",
    "load_slice_harmonizer",
    "loaders",
    "match_domain",
    "register",
    "on_model_grid",
    "resample",
    "resolution_note",
    "to_grid",
    "translate_dataset",
    "translate_slices",
]
