"""The Gaussian-mixture VAE (Dilokthanakul et al.), GMM-DRIT's stage 1: the one home of this model family.

* ``model``: q(y|x), q(z|x,y), p(z|y), p(x|z) (``GMVAE``; the ``gmvae`` section's GMVAEArch fields);
* ``losses``: L_GMVAE and its levers (likelihood, free bits, KL warm-up, the components' balance);
* ``task``: the training task for the shared loop, the attribute space, ``export_model`` and ``load_gmvae``.
"""
