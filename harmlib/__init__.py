"""harmlib: the library behind the deep-MRI-harmonization paper companion.

Floors (imports only go down): config, ssim, models (shared blocks) -> losses (shared terms), data, checkpoint,
widgets, plots -> train (the loop), harmonize, the model families (aguit, gmvae, drit: model -> losses -> task,
harmonizer), evaluation, preprocess, pipeline -> cli.
"""

from harmlib.config import Config, ConfigError, load_config
from harmlib.ssim import (
    luminance_consistency,
    ssim,
    ssim_components,
    ssim_l1_loss,
    ssim_loss,
    structural_consistency,
)

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "ssim",
    "ssim_components",
    "ssim_loss",
    "ssim_l1_loss",
    "structural_consistency",
    "luminance_consistency",
]
