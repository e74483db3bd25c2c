"""Paper 1's SSIM-guided harmonizer (AGUIT extended to 3D volumes): the one home of this model family.

* ``model``: the nets by the paper's names (E_b, E_s, G, D^x, D^b) and ``build_aguit``; the spec is the
  ``harmonizer`` config section's :class:`~harmlib.config.AGUITArch` fields;
* ``losses``: the forward pass's typed result (:class:`~harmlib.aguit.losses.AGUITForward`) and L_D, L_{G,E_b,E_s};
* ``task``: the training task for the shared loop (``harmlib.train.loop.fit``) and ``export_model``;
* ``harmonizer``: a model file loaded behind the ``harmlib.harmonize.Harmonizer`` interface.

Inside a family the floors of ``harmlib`` hold: model -> losses -> task, harmonizer.
"""
