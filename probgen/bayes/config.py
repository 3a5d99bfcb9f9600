"""The run-config switch that makes any registered model Bayesian.

In a run's YAML file:

    bayes:
      method: mean_field        # a name in probgen.registry.POSTERIORS
      layers: [transform]       # module or parameter paths; omit for all weights
      prior_std: 1.0
      samples: 16               # posterior draws per log_prob / uncertainty
      options: {init_std: 0.01} # keyword arguments of the posterior class

The section is ``probgen.train.config.BayesConfig``; ``probgen.train.build``
wraps the model it built with ``make_bayesian``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probgen.bayes.model import BayesianModel
from probgen.bayes.posterior import WeightPosterior
from probgen.core import GenerativeModel, InvalidInput
from probgen.data.base import Dataset
from probgen.registry import POSTERIORS

if TYPE_CHECKING:  # the dataclass lives with the other run-config sections
    from probgen.train.config import BayesConfig

__all__ = ["make_bayesian", "make_posterior"]


def make_posterior(config: BayesConfig, train: Any) -> WeightPosterior:
    """The (unbound) posterior ``config`` names, checked against the run's ``TrainConfig``.

    Raises ``InvalidInput`` for an unknown method or option, bad values, or
    training settings the method cannot work with.
    """
    if config.method not in POSTERIORS:
        raise InvalidInput(
            f"bayes.method: unknown value {config.method!r}; "
            f"choose one of: {', '.join(POSTERIORS.names())}"
        )
    if config.layers is not None and not all(isinstance(n, str) for n in config.layers):
        raise InvalidInput(f"bayes.layers: expected a list of paths, got {config.layers!r}")
    if config.samples < 1:
        raise InvalidInput(f"bayes.samples: expected a positive integer, got {config.samples}")
    if config.num_data is not None and config.num_data < 1:
        raise InvalidInput(f"bayes.num_data: expected a positive integer, got {config.num_data}")
    options = {"prior_std": config.prior_std, **config.options}
    try:
        return POSTERIORS.get(config.method).from_training(options, train)
    except TypeError as e:
        raise InvalidInput(f"bayes.options: {e}") from e


def make_bayesian(
    model: GenerativeModel, config: BayesConfig, dataset: Dataset, train: Any
) -> BayesianModel:
    """``BayesianModel(model, posterior, …)`` as ``config`` says; N defaults to the train split."""
    num_data = config.num_data if config.num_data is not None else len(dataset.split("train"))
    return BayesianModel(
        model,
        make_posterior(config, train),
        num_data=num_data,
        layers=config.layers,
        samples=config.samples,
    )
