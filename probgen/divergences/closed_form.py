"""Closed-form KL divergences between Gaussians, and ``kl_divergence`` dispatching on objects.

The table ``KL_CLOSED_FORMS`` maps a pair of distribution classes to the function
computing KL(p ‖ q) in closed form; ``register_kl`` adds a pair. Lookup follows the
class hierarchy, so ``StandardNormal`` (a ``DiagonalGaussian``) needs no entry.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from probgen.core import InvalidInput, ProbgenError
from probgen.distributions import DiagonalGaussian, Gaussian
from probgen.tensors import sum_events

__all__ = [
    "KL_CLOSED_FORMS",
    "NoClosedForm",
    "kl_diagonal_gaussian",
    "kl_divergence",
    "kl_gaussian",
    "register_kl",
]

KLFunction = Callable[[object, object], Tensor]

KL_CLOSED_FORMS: dict[tuple[type, type], KLFunction] = {}


class NoClosedForm(ProbgenError, NotImplementedError):
    """No closed form is registered for this pair; use a Monte Carlo estimator."""


def kl_gaussian(mean_p: Tensor, cov_p: Tensor, mean_q: Tensor, cov_q: Tensor) -> Tensor:
    """KL(N(μ_p, Σ_p) ‖ N(μ_q, Σ_q)) between full-covariance Gaussians, in nats.

    KL = ½ [ tr(Σ_q⁻¹ Σ_p) + (μ_q − μ_p)ᵀ Σ_q⁻¹ (μ_q − μ_p) − D + ln det Σ_q − ln det Σ_p ],
    computed through the Cholesky factors L_p, L_q: tr(Σ_q⁻¹ Σ_p) = ‖L_q⁻¹ L_p‖²_F and
    ln det Σ = 2 Σ_d ln L_dd.

    Args:
        mean_p: mean of p, shape (..., D).
        cov_p: symmetric positive definite covariance of p, shape (..., D, D).
        mean_q: mean of q, shape (..., D).
        cov_q: covariance of q, shape (..., D, D). Leading dimensions of all
            four broadcast together.

    Returns:
        KL per leading index, shape (...) (a 0-dim tensor for unbatched inputs).

    Reference: Kullback & Leibler 1951, "On information and sufficiency"; the
    Gaussian form e.g. in Bishop 2006, "Pattern Recognition and Machine Learning".
    """
    d = mean_p.shape[-1]
    for name, cov in (("cov_p", cov_p), ("cov_q", cov_q)):
        if cov.shape[-2:] != (d, d):
            raise InvalidInput(f"{name}: expected shape (..., {d}, {d}), got {tuple(cov.shape)}")
    if mean_q.shape[-1] != d:
        raise InvalidInput(f"mean_q: expected shape (..., {d}), got {tuple(mean_q.shape)}")
    l_p, info_p = torch.linalg.cholesky_ex(cov_p)
    l_q, info_q = torch.linalg.cholesky_ex(cov_q)
    if (info_p != 0).any() or (info_q != 0).any():
        raise InvalidInput("kl_gaussian: covariances must be symmetric positive definite")
    batch = torch.broadcast_shapes(
        mean_p.shape[:-1], mean_q.shape[:-1], cov_p.shape[:-2], cov_q.shape[:-2]
    )
    l_q = l_q.expand(*batch, d, d)
    trace = torch.linalg.solve_triangular(l_q, l_p.expand(*batch, d, d), upper=False)
    diff = (mean_q - mean_p).expand(*batch, d).unsqueeze(-1)  # (..., D, 1)
    maha = torch.linalg.solve_triangular(l_q, diff, upper=False)
    log_det_ratio = 2.0 * (
        l_q.diagonal(dim1=-2, dim2=-1).log().sum(-1) - l_p.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    )
    return 0.5 * (trace.square().sum((-2, -1)) + maha.square().sum((-2, -1)) - d + log_det_ratio)


def kl_diagonal_gaussian(
    mean_p: Tensor,
    std_p: Tensor,
    mean_q: Tensor | float,
    std_q: Tensor | float,
    event_dims: int | None = None,
) -> Tensor:
    """KL(N(μ_p, diag σ_p²) ‖ N(μ_q, diag σ_q²)), summed over the event, in nats.

    KL = Σ_d [ ln(σ_q,d / σ_p,d) + (σ_p,d² + (μ_p,d − μ_q,d)²) / (2 σ_q,d²) − ½ ].

    For a VAE's KL(q(z|x) ‖ N(0, I)) pass ``mean_q = 0`` and ``std_q = 1`` (floats
    broadcast): (B, Z) inputs give (B,).

    Args:
        mean_p: mean of p, e.g. (B, Z) or (B, C, H, W).
        std_p: standard deviations of p (σ > 0), the same shape.
        mean_q: mean of q, a tensor broadcastable to those of p, or a float.
        std_q: standard deviations of q, likewise.
        event_dims: number of trailing dimensions summed over. ``None`` sums every
            dimension but the first (batched inputs (B, …) -> (B,)); ``len(event_shape)``
            reduces unbatched parameters to a 0-dim tensor.

    Reference: Kingma & Welling 2014, "Auto-Encoding Variational Bayes", Appendix B.
    """
    var_ratio = (std_p / std_q).square()
    terms = 0.5 * (var_ratio + ((mean_p - mean_q) / std_q).square() - 1.0 - var_ratio.log())
    if event_dims is None:
        if terms.dim() == 0:
            raise InvalidInput("kl_diagonal_gaussian: expected batched inputs (B, …), got scalars")
        return sum_events(terms)
    if not 0 <= event_dims <= terms.dim():
        raise InvalidInput(
            f"event_dims: expected an integer in [0, {terms.dim()}], got {event_dims}"
        )
    if event_dims == 0:  # sum(dim=()) would reduce every dimension
        return terms
    return terms.sum(dim=tuple(range(terms.dim() - event_dims, terms.dim())))


def register_kl(type_p: type, type_q: type) -> Callable[[KLFunction], KLFunction]:
    """Decorator adding ``fn(p, q) -> KL(p ‖ q)`` to ``KL_CLOSED_FORMS`` for the pair."""

    def decorate(fn: KLFunction) -> KLFunction:
        KL_CLOSED_FORMS[(type_p, type_q)] = fn
        return fn

    return decorate


def kl_divergence(p: object, q: object) -> Tensor:
    """KL(p ‖ q) = E_p[ln p(x) − ln q(x)] in closed form, as a 0-dim tensor in nats.

    Looks up the most specific registered pair (by method resolution order) in
    ``KL_CLOSED_FORMS``. Closed forms: DiagonalGaussian / StandardNormal with each
    other (diagonal formula), and any pair involving a full-covariance ``Gaussian``
    (full formula). Raises ``NoClosedForm`` for other pairs.
    """
    for cls_p in type(p).__mro__:
        for cls_q in type(q).__mro__:
            fn = KL_CLOSED_FORMS.get((cls_p, cls_q))
            if fn is not None:
                return fn(p, q)
    raise NoClosedForm(
        f"no closed-form KL for ({type(p).__name__} ‖ {type(q).__name__}); registered pairs: "
        + ", ".join(f"({a.__name__}, {b.__name__})" for a, b in KL_CLOSED_FORMS)
        + "; use kl_monte_carlo instead"
    )


def _check_same_event(p: DiagonalGaussian | Gaussian, q: DiagonalGaussian | Gaussian) -> None:
    if p.event_shape != q.event_shape:
        raise InvalidInput(
            f"kl_divergence: event shapes differ, p has {p.event_shape}, q has {q.event_shape}"
        )


@register_kl(DiagonalGaussian, DiagonalGaussian)
def _kl_diagonal_diagonal(p: DiagonalGaussian, q: DiagonalGaussian) -> Tensor:
    _check_same_event(p, q)
    return kl_diagonal_gaussian(p.mean, p.std, q.mean, q.std, event_dims=len(p.event_shape))


@register_kl(Gaussian, Gaussian)
@register_kl(Gaussian, DiagonalGaussian)
@register_kl(DiagonalGaussian, Gaussian)
def _kl_full(p: DiagonalGaussian | Gaussian, q: DiagonalGaussian | Gaussian) -> Tensor:
    _check_same_event(p, q)
    return kl_gaussian(p.mean.flatten(), p.covariance, q.mean.flatten(), q.covariance)
