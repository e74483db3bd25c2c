"""Inference: every trained model behind one interface, ``Harmonizer.harmonize(volume, target) -> volume``.

* ``targets``: the target strings, parsed once (:class:`Target`);
* ``base``: the :class:`Harmonizer` protocol and the registry that loads a model file by its kind;
* ``volume``: paper 1's 3D model; ``slices``: GMM-DRIT and DRIT++, coronal slice by slice;
* ``files``: one's own NIfTI files (checks, resampling, atomic output, provenance sidecar).

A new model family adds one module with a ``@register(kind)`` loader and one import line below.
"""

# isort: off
from harmlib.harmonize import volume  # noqa: F401  (registers first: the 3D model leads every listing of kinds)
from harmlib.harmonize import slices  # noqa: F401  (GMM-DRIT, DRIT++)

# isort: on
from harmlib.harmonize.base import LOADERS, Harmonizer, load_harmonizer, register
from harmlib.harmonize.files import (
    check_input,
    check_mni_aligned,
    check_output,
    harmonize_array,
    harmonize_file,
    harmonize_volume,
    resample,
)
from harmlib.harmonize.slices import (
    SLICE_KINDS,
    SliceHarmonizer,
    load_slice_harmonizer,
    translate_dataset,
    translate_slices,
)
from harmlib.harmonize.targets import AGNOSTIC, SCANNER_FREE, SELF, SELF_AT, Target, match_domain
from harmlib.harmonize.volume import VolumeHarmonizer, harmonizer_from

__all__ = [
    "AGNOSTIC",
    "LOADERS",
    "SCANNER_FREE",
    "SELF",
    "SELF_AT",
    "SLICE_KINDS",
    "Harmonizer",
    "SliceHarmonizer",
    "Target",
    "VolumeHarmonizer",
    "check_input",
    "check_mni_aligned",
    "check_output",
    "harmonize_array",
    "harmonize_file",
    "harmonize_volume",
    "harmonizer_from",
    "load_harmonizer",
    "load_slice_harmonizer",
    "match_domain",
    "register",
    "resample",
    "translate_dataset",
    "translate_slices",
]
