"""Evaluation of any model under one convention (see docs/evaluation.md).

- ``likelihood``: NLL and bits/dim through ``log_prob`` or an estimator
  (``ELBOBound``, ``IWAEBound``, ``AISBound``), ``normalized_nll`` for EBMs;
- ``ais``: annealed importance sampling (decoders, GAN generators with a
  Gaussian observation model, log Z of an EBM);
- ``samples``: Fréchet distance, KID, precision/recall, density/coverage;
- ``features``: the feature networks they use (shipped digit classifiers);
- ``ground_truth``: KL(p_data ‖ p_θ), KL(p_θ ‖ p_data) and its smoothed form, for data of known law;
- ``display``: divergence estimates as text, never a negative number;
- ``modes``: mode coverage on mixtures; ``plots``: sample pictures;
- ``suite``: ``evaluate_model``, every metric that applies to a model.

Submodules are imported on use, so importing one does not load the others.
"""

__all__: list[str] = []
