"""``build_model``: a registered family built for a data set, wrapped once where the data need it.

Integer data (levels) get ``Dequantized`` (probgen.models.dequantized);
continuous data get ``Standardized`` (probgen.models.standardize), fitted on
the training split. Each wrapper is a ``GenerativeModel``, so everything
downstream (the engine, the evaluators, compare, the CLI) is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from probgen.core import DataInitialized, DataSpec, GenerativeModel, InvalidInput, check_input
from probgen.models.dequantized import Dequantized
from probgen.models.standardize import Standardized, fit_standardization
from probgen.registry import MODELS

__all__ = ["BuildRecord", "build_model"]


@dataclass(frozen=True)
class BuildRecord:
    """How ``build_model`` built a model: the family, the data spec and the family's options.

    With the weights (parameters and buffers, which hold the data map) this is
    all ``probgen.from_pretrained`` needs to build the same model again.
    ``build_model`` sets it as the ``build_record`` attribute of what it returns.
    """

    family: str
    spec: DataSpec
    options: Mapping[str, Any] = field(default_factory=dict)


def build_model(
    name: str,
    spec: DataSpec,
    *,
    train_data: Tensor | None = None,
    train_conditions: Tensor | None = None,
    standardize: str | Mapping[str, Any] | None = None,
    **options: Any,
) -> GenerativeModel:
    """The registered model ``name`` built for data ``spec``, wrapped where the data need it.

    ``MODELS.get(name).for_data(spec, **options)``, then exactly one wrapper:

    - on data with levels (``spec.levels`` = K), a model whose
      ``handles_levels`` is False (a flow, a Gaussian, a GAN, a VAE with a
      Gaussian decoder, a MADE with a continuous conditional) becomes
      ``Dequantized(model, K)``: it sees y = (x + u)/K ∈ [0, 1)^D and its
      ``log_prob`` is a bound on log P(x). Models of levels (PixelCNN, a
      discrete VAE, diffusion with levels) are returned as built.
    - on continuous data, every family becomes ``Standardized(model, μ, s)``,
      x = μ + s ⊙ z, with (μ, s) from ``fit_standardization(train_data,
      standardize)`` and the training range of z, so no family depends on
      the data's units (``probgen.models.standardize``). A continuous
      condition is standardised the same way, on ``train_conditions``.

    Args:
        name: a registered model name.
        spec: the data's event shape, levels and condition.
        train_data: training examples (N, *event_shape) the map is fitted on.
        train_conditions: their conditions, (N,) labels or (N, *shape) vectors.
        standardize: ``"mean_std"``, ``"robust"``, ``"none"`` or ``{"shift",
            "scale"[, "condition_shift", "condition_scale"]}`` (a ``"method"``
            key there is kept as a note); ``None`` means ``"mean_std"`` when
            ``train_data`` is given and no map otherwise. Ignored on data with
            levels, which ``Dequantized`` already maps to [0, 1).
        options: the family's own options (``for_data``).

    The returned model carries ``build_record`` (``BuildRecord(name, spec, options)``).
    Raises ``InvalidInput`` when a fitted map is asked for without ``train_data``.
    """
    model = _wrapped(name, spec, train_data, train_conditions, standardize, options)
    model.build_record = BuildRecord(name, spec, dict(options))
    return model


def _wrapped(
    name: str,
    spec: DataSpec,
    train_data: Tensor | None,
    train_conditions: Tensor | None,
    standardize: str | Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> GenerativeModel:
    model = MODELS.get(name).for_data(spec, **options)
    if spec.levels is not None:
        return model if model.handles_levels else Dequantized(model, spec.levels)
    wrapped = _standardized(model, spec, train_data, train_conditions, standardize)
    if train_data is not None and isinstance(model, DataInitialized):
        x = check_input(train_data, spec.event_shape, name="train_data")
        if isinstance(wrapped, Standardized):
            model.initialize_from_data(
                wrapped.to_inner(x.to(wrapped.shift)), wrapped.condition_to_inner(train_conditions)
            )
        else:
            model.initialize_from_data(x, train_conditions)
    return wrapped


def _standardized(
    model: GenerativeModel,
    spec: DataSpec,
    train_data: Tensor | None,
    train_conditions: Tensor | None,
    standardize: str | Mapping[str, Any] | None,
) -> GenerativeModel:
    """``model`` inside the ``Standardized`` map ``standardize`` asks for (or as it is)."""
    if standardize is None:
        standardize = "none" if train_data is None else "mean_std"
    if standardize == "none":
        return model
    continuous_condition = spec.condition is not None and not spec.condition.is_classes
    condition_map: tuple[Tensor, Tensor] | None = None
    if isinstance(standardize, Mapping):
        method = str(standardize.get("method", "given"))
        given = {k: standardize[k] for k in ("shift", "scale") if k in standardize}
        fitted = fit_standardization(torch.zeros(0, *spec.event_shape), given)
        if continuous_condition and "condition_shift" in standardize:
            given = {k: standardize[f"condition_{k}"] for k in ("shift", "scale")}
            condition_map = fit_standardization(torch.zeros(0, *spec.condition.shape), given)
    elif train_data is None:
        raise InvalidInput(
            f"standardize={standardize!r} is fitted on training data: pass train_data "
            "(N, *event_shape), or standardize='none'"
        )
    else:
        method = str(standardize)
        fitted = fit_standardization(check_input(train_data, spec.event_shape), standardize)
        if continuous_condition and train_conditions is not None:
            c = spec.condition.check(train_conditions, len(train_data), name="train_conditions")
            condition_map = fit_standardization(c, standardize)
    if fitted is None:
        return model
    shift, scale = fitted
    low = high = None
    if train_data is not None:
        z = (train_data.to(shift.dtype) - shift) / scale
        low, high = z.amin(0), z.amax(0)
    c_shift, c_scale = condition_map if condition_map is not None else (None, None)
    return Standardized(
        model, shift, scale, low, high, method=method,
        condition_shift=c_shift, condition_scale=c_scale,
    )  # fmt: skip
