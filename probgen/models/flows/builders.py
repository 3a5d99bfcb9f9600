"""Flow families on vectors as configurations of one generic builder.

Each family is the same stack — K layers separated by order reversals over a
base distribution — with a different layer:

    RealNVP  affine coupling                      (Dinh et al. 2017)
    MAF      masked autoregressive affine          (Papamakarios et al. 2017)
    IAF      inverse of masked autoregressive affine (Kingma et al. 2016)
    NSF      rational-quadratic spline, autoregressive or coupling (Durkan et al. 2019)

Data with more than one event dimension (images) is flattened first, so any
of them can model (B, C, H, W) as (B, C·H·W).

Each family is conditional, p(x | c), when built with ``condition=`` (a
``ConditionSpec``): every conditioner then reads the condition's features
φ(c) (B, w) beside its inputs (a MADE context input of degree 0 for the
autoregressive layers, Papamakarios et al. 2017 §3.4; [x_A, φ(c)] for the
coupling layers), over the same base.

The base is N(0, I) (``base="normal"``) or a learned Gaussian mixture
(``base="mixture"``, ``MixtureNormal``) of at most ``components`` components,
started by EM on the training data's latents with their number chosen by BIC
(``build_model`` initialises it from the training split).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, GenerativeModel, InvalidInput, OutOfRangeWarning
from probgen.distributions import StandardNormal
from probgen.models.flows.autoregressive import MaskedAutoregressive
from probgen.models.flows.base import Compose, Inverse, Transform
from probgen.models.flows.coupling import Coupling, half_mask
from probgen.models.flows.elementwise import Affine
from probgen.models.flows.flow import Flow
from probgen.models.flows.linear import Permutation
from probgen.models.flows.prior import MixtureNormal
from probgen.models.flows.reshape import Reshape
from probgen.models.flows.spline import RationalQuadraticSpline
from probgen.nn.mlp import MLP

__all__ = ["BASES", "IAF", "MAF", "NSF", "RealNVP", "VectorFlow", "stack"]

BASES: dict[str, Callable[[int, int], GenerativeModel]] = {
    "normal": lambda features, components: StandardNormal((features,)),
    "mixture": lambda features, components: MixtureNormal(features, components),
}
"""Base names -> the base over D latents, given the most mixture components."""


def stack(features: int, layer: Callable[[int], Transform], transforms: int) -> Compose:
    """f = L_{K-1} ∘ R ∘ … ∘ R ∘ L_0 with L_k = ``layer(k)`` and R the order reversal of (B, D)."""
    parts: list[Transform] = []
    for k in range(transforms):
        if k:
            parts.append(Permutation.reverse(features))
        parts.append(layer(k))
    return Compose(parts)


class VectorFlow(Flow):
    """A flow of ``transforms`` layers built by ``layer(k, D, w)`` over a base on R^D.

    Events of any shape are flattened to D = prod(event_shape) first; w is the
    context width of each layer, ``condition.width`` (0 when unconditional).
    ``base`` names the base (``BASES``: N(0, I_D) or a Gaussian mixture of at
    most ``components`` components).
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        layer: Callable[[int, int, int], Transform],
        transforms: int = 5,
        condition: ConditionSpec | None = None,
        base: str = "normal",
        components: int = 5,
    ) -> None:
        if base not in BASES:
            raise InvalidInput(f"unknown base {base!r}; choose one of: {', '.join(sorted(BASES))}")
        shape = tuple(int(s) for s in event_shape)
        d = math.prod(shape)
        flatten = [Reshape(shape, (d,))] if len(shape) != 1 else []
        width = 0 if condition is None else condition.width
        body = stack(d, functools.partial(layer, features=d, context=width), transforms)
        super().__init__(Compose([*flatten, body]), BASES[base](d, components), shape, condition)

    @classmethod
    def small_data_options(cls, spec: DataSpec, options: Mapping[str, Any]) -> dict[str, Any]:
        """``base: mixture``: on small data the flow starts at the EM/BIC mixture's density."""
        return {"base": "mixture"}


def _coupling_net(hidden: Sequence[int]) -> Callable[[int, int], MLP]:
    return functools.partial(MLP, hidden=tuple(hidden), zero_last=True)


class RealNVP(VectorFlow):
    """RealNVP: affine coupling layers z_B = x_B · exp(s(x_A)) + t(x_A).

    Reference: Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP".
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        transforms: int = 5,
        hidden: Sequence[int] = (64, 64),
        scale_bound: float = 3.0,
        condition: ConditionSpec | None = None,
        base: str = "normal",
        components: int = 5,
    ) -> None:
        def layer(k: int, features: int, context: int) -> Transform:
            net = _coupling_net(hidden)
            return Coupling(half_mask(features), Affine(scale_bound), net, context)

        super().__init__(event_shape, layer, transforms, condition, base, components)


class MAF(VectorFlow):
    """Masked autoregressive flow: z_i = x_i · exp(s_i(x_{<i})) + t_i(x_{<i}).

    Reference: Papamakarios, Pavlakou & Murray (2017), "Masked Autoregressive
    Flow for Density Estimation".
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        transforms: int = 5,
        hidden: Sequence[int] = (64, 64),
        scale_bound: float = 3.0,
        condition: ConditionSpec | None = None,
        base: str = "normal",
        components: int = 5,
    ) -> None:
        def layer(k: int, features: int, context: int) -> Transform:
            return MaskedAutoregressive(features, Affine(scale_bound), hidden, context=context)

        super().__init__(event_shape, layer, transforms, condition, base, components)


class IAF(VectorFlow):
    """Inverse autoregressive flow: the inverse of MAF's layers (one-pass sampling).

    x_i = (z_i - t_i(x_{<i})) · exp(-s_i(x_{<i})) in the data direction is
    computed by D passes, while sampling x from z takes one pass per layer.

    Reference: Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016),
    "Improved Variational Inference with Inverse Autoregressive Flow".
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        transforms: int = 5,
        hidden: Sequence[int] = (64, 64),
        scale_bound: float = 3.0,
        condition: ConditionSpec | None = None,
        base: str = "normal",
        components: int = 5,
    ) -> None:
        def layer(k: int, features: int, context: int) -> Transform:
            made = MaskedAutoregressive(features, Affine(scale_bound), hidden, context=context)
            return Inverse(made)

        super().__init__(event_shape, layer, transforms, condition, base, components)


class NSF(VectorFlow):
    """Neural spline flow: rational-quadratic spline layers, autoregressive or coupling.

    Args:
        event_shape: shape of one example.
        transforms: number of layers K.
        hidden: hidden widths of each conditioner.
        bins: spline bins per entry.
        bound: the spline acts on [-bound, bound] and is the identity outside.
        autoregressive: MADE conditioners (RQ-NSF (AR)) if true, else coupling
            conditioners (RQ-NSF (C)).
        condition: what c is for p(x | c) (None: p(x)); the conditioners then
            read φ(c) beside their inputs, as in the conditional spline flows
            of Durkan et al. (2019).
        base: ``"normal"`` (N(0, I)) or ``"mixture"`` (a learned Gaussian
            mixture started by EM on the training data, ``MixtureNormal``).
        components: the most mixture components (chosen by BIC) of ``"mixture"``.

    Reference: Durkan, Bekasov, Murray & Papamakarios (2019), "Neural Spline Flows".
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        transforms: int = 5,
        hidden: Sequence[int] = (64, 64),
        bins: int = 8,
        bound: float = 5.0,
        autoregressive: bool = True,
        condition: ConditionSpec | None = None,
        base: str = "normal",
        components: int = 5,
    ) -> None:
        spline = RationalQuadraticSpline(bins=bins, bound=bound)

        def layer(k: int, features: int, context: int) -> Transform:
            if autoregressive:
                return MaskedAutoregressive(features, spline, hidden, context=context)
            return Coupling(half_mask(features), spline, _coupling_net(hidden), context)

        super().__init__(event_shape, layer, transforms, condition, base, components)
        self.bound = bound

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(x | c) (B, *event_shape) -> (B,); in eval mode, warns about x outside [-B, B].

        Outside the interval every spline is the identity, so such points get
        the base density's tails rather than a learned density.
        """
        if not self.training:
            outside = (x.abs() > self.bound).flatten(1).any(1).double().mean().item()
            if outside > 0:
                warnings.warn(
                    f"NSF: {outside:.1%} of the {len(x)} points have an entry outside the "
                    f"spline interval [-{self.bound:g}, {self.bound:g}], where the flow is "
                    "the identity; standardise the data or raise `bound`",
                    OutOfRangeWarning,
                    stacklevel=2,
                )
        return super().log_prob(x, condition=condition)
