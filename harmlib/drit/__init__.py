"""GMM-DRIT (the thesis's stage 2) and its baseline DRIT++ on 2D coronal slices: the one home of this family.

* ``model``: E^c, E^a, G, D_s^1, D_s^2, D_c and ``build_drit`` (the ``drit`` section's DRITArch fields);
* ``losses``: the forward pass's typed result (:class:`~harmlib.drit.losses.DRITForward`) and both objectives;
* ``task``: the training task of either variant for the shared loop, and ``export_model``;
* ``harmonizer``: slice-by-slice harmonization of whole volumes behind the ``Harmonizer`` interface.

GMM-DRIT's attribute encoder is the pretrained GM-VAE of ``harmlib.gmvae``.
"""
