"""The run-config switch that makes any registered model Bayesian.

In a run's YAML file:

    bayes:
      method: mean_field        # a name in probgen.registry.POSTERIORS
      layers: [transform]       # module or parameter paths; omit for all weights
      prior_std: 1.0
      samples: 16               # posterior draws per log_prob / uncertainty
      options: {init_std: 0.01} # keyword arguments of the posterior class

``probgen.train.build`` wraps the model it built with ``make_bayesian``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from probgen.bayes.model import BayesianModel
from probgen.bayes.posterior import WeightPosterior
from probgen.core import GenerativeModel, InvalidInput
from probgen.data.base import Dataset
from probgen.registry import POSTERIORS

__all__ = ["BayesConfig", "make_bayesian", "make_posterior"]


@dataclass
class BayesConfig:
    """How to make a run's model Bayesian.

    Attributes:
        method: posterior name in ``POSTERIORS`` (``mean_field``, ``sgld``).
        layers: module or parameter paths of the Bayesian weights; ``None`` for all.
        prior_std: s in the prior p(θ_i) = N(0, s²).
        samples: posterior draws S per ``log_prob`` and ``uncertainty``.
        num_data: N in the objective; ``None`` takes the size of the training split.
        options: further keyword arguments of the posterior class.
    """

    method: str = "mean_field"
    layers: list | None = None
    prior_std: float = 1.0
    samples: int = 16
    num_data: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


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
