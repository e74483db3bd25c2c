"""Data: NIfTI I/O, the manifest, the MNI grid, scanner appearance, the synthetic cohort, importers."""

from harmlib.data.appearance import Appearance, apply_appearance
from harmlib.data.io import DataError, load_volume, save_volume
from harmlib.data.manifest import COLUMNS, Manifest, domain_name, read_manifest, write_manifest
from harmlib.data.mni import block_average, fsl_grid_affine, mni_t1

__all__ = [
    "Appearance",
    "apply_appearance",
    "DataError",
    "load_volume",
    "save_volume",
    "COLUMNS",
    "Manifest",
    "domain_name",
    "read_manifest",
    "write_manifest",
    "mni_t1",
    "fsl_grid_affine",
    "block_average",
]
