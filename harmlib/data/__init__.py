"""Data: the MNI template grid, scanner appearance effects, (later) manifests and cohorts."""
from harmlib.data.mni import block_average, fsl_grid_affine, mni_t1
from harmlib.data.appearance import Appearance, apply_appearance

__all__ = ["mni_t1", "fsl_grid_affine", "block_average", "Appearance", "apply_appearance"]
