"""Losses as plain functions; each objective returns (total, {name: term}) so logging is free.

One module per model family: ``aguit`` (paper 1's SSIM-guided harmonizer), ``gmvae`` (stage 1 of
GMM-DRIT) and ``drit`` (DRIT++ and GMM-DRIT). The names below are re-exported for convenience.
"""

from harmlib.losses.aguit import *  # noqa: F401,F403
from harmlib.losses.aguit import aguit_discriminator_loss, aguit_generator_loss  # noqa: F401
from harmlib.losses.drit import drit_discriminator_loss, drit_generator_loss  # noqa: F401,E402
from harmlib.losses.gmvae import gmvae_loss  # noqa: F401,E402
