"""Likelihood-based evaluation of any model through ``log_prob``: NLL and bits/dim.

Every number is an ``Estimate`` labelled with what the model's ``log_prob``
means (``model.likelihood``), so an ELBO is never read as a log-likelihood:

    exact         -log p_θ(x) itself
    estimate      an unbiased stochastic estimate of -log p_θ(x)
    bound         an upper bound on -log p_θ(x) (from a lower bound on log p_θ(x))
    unnormalized  E_θ(x) = -log p_θ(x) - log Z_θ, off by the unknown log Z_θ

The standard error is that of the mean over the evaluated examples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probgen.core import (
    Estimate,
    GenerativeModel,
    IntractableLikelihood,
    InvalidInput,
    Likelihood,
)
from probgen.data.dequantize import bits_per_dim as _bits_per_dim_convention

__all__ = ["bits_per_dim", "log_probs", "nll"]


def log_probs(model: GenerativeModel, x: Tensor, batch_size: int = 1024) -> Tensor:
    """``model.log_prob`` over a whole data set ``x`` (N, *event_shape), in batches.

    Evaluated without gradients, in eval mode (the training mode is restored),
    on the model's device; floating-point data is cast to the model's floating
    dtype, integer data (tokens, pixels) is passed as is. Returns (N,) in nats,
    on the model's device.

    Raises ``IntractableLikelihood`` when ``model.likelihood`` is NONE (a GAN).
    """
    if model.likelihood is Likelihood.NONE:
        raise IntractableLikelihood(
            f"{type(model).__name__} has no likelihood (likelihood = none); "
            "use a sample-based metric such as mmd or energy_distance"
        )
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be positive, got {batch_size}")
    dtype = _floating_dtype(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = [
                model.log_prob(_to_model(x[i : i + batch_size], model.device, dtype))
                for i in range(0, len(x), batch_size)
            ]
    finally:
        model.train(was_training)
    return torch.cat(out)


def nll(model: GenerativeModel, x: Tensor, batch_size: int = 1024) -> Estimate:
    """Mean negative log-likelihood in nats per example, with its standard error.

    NLL = -1/N Σ_n log p_θ(x_n) over x of shape (N, *event_shape); ``kind`` is
    ``model.likelihood.value`` ("exact", "estimate", "bound" = an upper bound on
    the NLL, "unnormalized" = the mean energy, off by log Z_θ).

    Raises ``IntractableLikelihood`` when the model has no likelihood.
    """
    return Estimate.from_samples(-log_probs(model, x, batch_size), kind=model.likelihood.value)


def bits_per_dim(
    model: GenerativeModel,
    x: Tensor,
    levels: int | None = None,
    *,
    dequantized: bool | None = None,
    batch_size: int = 1024,
) -> Estimate:
    """Mean bits per dimension of ``x`` (N, *event_shape) under ``model``, with its stderr.

    Applies probgen's one convention, ``probgen.data.dequantize.bits_per_dim``,
    to each example's log-likelihood and averages. With D entries per example:
    continuous data (``levels`` None): bpd = -log p_θ(x) / (D ln 2); data with
    ``levels`` K: ``dequantized=False`` reads ``log_prob`` as a log-probability
    mass log P_θ(x), bpd = -log P_θ(x) / (D ln 2); ``dequantized=True`` reads it
    as a density on y = (x + u)/K ∈ [0, 1)^D (pass the dequantized y as ``x``),
    bpd = -(log p_θ(y) - D log K) / (D ln 2) (Theis, van den Oord & Bethge 2016,
    "A note on the evaluation of generative models"). The ``kind`` is that of
    the model's likelihood, as in ``nll``.
    """
    dim = int(torch.Size(model.event_shape).numel())
    per_example = _bits_per_dim_convention(
        log_probs(model, x, batch_size), dim, levels, dequantized=dequantized
    )
    return Estimate.from_samples(per_example, kind=model.likelihood.value)


def _floating_dtype(model: GenerativeModel) -> torch.dtype | None:
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def _to_model(x: Tensor, device: torch.device, dtype: torch.dtype | None) -> Tensor:
    if x.is_floating_point() and dtype is not None:
        return x.to(device=device, dtype=dtype)
    return x.to(device=device)
