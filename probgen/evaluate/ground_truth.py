"""Scores against an exactly known data law p (the toy shapes): KL in both directions.

Forward, for every model with a likelihood, on data x_n ~ p (paired, per example):

    KL(p ‖ p_θ) = E_p[log p(x) − log p_θ(x)]

labelled like the model's log-likelihood: ``exact`` for flows and autoregressive
models; ``bound`` when log p_θ is a lower bound (an ELBO or IWAE), making this an
upper bound on the KL; ``estimate`` when log Z_θ of an unnormalised model is
estimated (by AIS).

Reverse, for every model whose ``log_prob`` is exact (or an unbiased estimate),
on samples y_m ~ p_θ:

    KL(p_θ ‖ p) = E_{p_θ}[log p_θ(y) − log p(y)]                     (``kl_model_data``)

A model without an exact density (a GAN, a VAE, an EBM) has no unbiased
log p_θ(y). A kernel density q̂ in its place is biased low by the
cross-entropy gap of the smoothing, and the gap is largest for the sharpest
models: E[log q̂(y)] ≤ log (p_θ ∗ N_h)(y), while log p(y) stays exact, so the
estimate falls below zero when p_θ is sharper than h. Instead both laws are
smoothed with the same Gaussian kernel N_h = N(0, diag h²):

    KL_h(p_θ ‖ p) = KL(p_θ ∗ N_h ‖ p ∗ N_h)                 (``kl_model_data_smoothed``)

a true KL between the laws of y + hε and x + hε (ε ~ N(0, I)), so
0 ≤ KL_h ≤ KL(p_θ ‖ p) (the data-processing inequality: adding independent
noise is a Markov kernel), KL_h → KL(p_θ ‖ p) as h → 0, and KL_h = 0 only when
p_θ = p (Gaussian smoothing is injective on laws). Every model that samples
gets it, with one h per data set, so GANs, VAEs, EBMs and flows compare on it.
It is estimated by Monte Carlo over z = y + hε with both smoothed densities by
kernel density estimates (fitted on independent samples: one half of the
model's, and draws of p), each first-order bias-corrected (``kde_log_prob``);
the remaining bias is O((M h^D)^{-2}) for M kernel centres, and the reported
standard error is that of the mean over z.

References: Theis, van den Oord & Bethge 2016, "A note on the evaluation of
generative models" (kernel density estimates and their pitfalls); Cover &
Thomas 2006, "Elements of information theory", Theorem 2.8.1 (data processing);
Scott 1992, "Multivariate density estimation".
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from probgen.core import (
    Estimate,
    GenerativeModel,
    IntractableLikelihood,
    InvalidInput,
    Likelihood,
    OutOfRangeWarning,
)
from probgen.evaluate.likelihood import (
    LogLikelihoodEstimator,
    ModelLogProb,
    log_probs,
    with_log_partition,
)
from probgen.tensors import flatten_events

__all__ = [
    "kde_log_prob",
    "kl_data_model",
    "kl_model_data",
    "kl_model_data_smoothed",
    "scott_bandwidth",
]

_CHUNK = 512  # evaluation points per kernel-density block
_GROUPS = 20  # groups of kernel centres for the jackknife error of KL_h


def kl_data_model(
    model: GenerativeModel,
    truth: GenerativeModel,
    x: Tensor,
    *,
    estimator: LogLikelihoodEstimator | None = None,
    log_partition: Estimate | None = None,
    generator: torch.Generator | None = None,
    log_q: Tensor | None = None,
    conditions: Tensor | None = None,
) -> Estimate:
    """KL(p ‖ p_θ) = mean of log p(x_n) − log p_θ(x_n) over data x (N, *event_shape) from p.

    With ``conditions`` c_n (the rows' conditions), the expected conditional KL
    E_c KL(p(· | c) ‖ p_θ(· | c)) = mean of log p(x_n | c_n) − log p_θ(x_n | c_n)
    over pairs (x_n, c_n) ~ p; ``truth`` then needs its conditional ``log_prob``.

    log p_θ by the model's ``log_prob`` or the ``estimator``, or ``log_q`` (N,)
    when already computed by that same estimator (so the KL and the NLL of an
    evaluation share their draws); for an unnormalised model pass
    ``log_partition`` (log Ẑ_θ, e.g. from ``AIS.log_partition``), whose error is
    added in quadrature. The kind is that of the log-likelihood used.
    """
    estimator = ModelLogProb() if estimator is None else estimator
    kind = estimator.kind(model)
    log_p = log_probs(truth, x, condition=conditions).double().cpu()
    if log_q is None:
        log_q = log_probs(model, x, estimator=estimator, generator=generator, condition=conditions)
    if len(log_q) != len(log_p):
        raise InvalidInput(
            f"log_q: expected {len(log_p)} values, one per row of x; got {len(log_q)}"
        )
    gap = Estimate.from_samples(log_p - log_q.double().cpu(), kind=kind)
    if model.likelihood is Likelihood.UNNORMALIZED and isinstance(estimator, ModelLogProb):
        if log_partition is None:
            raise InvalidInput(
                f"{type(model).__name__} is unnormalized: pass log_partition (an estimate of "
                "log Z, e.g. AIS().log_partition(model.init, model.energy).estimate())"
            )
        return with_log_partition(gap, log_partition)
    return gap


def scott_bandwidth(samples: Tensor, n: int | None = None) -> Tensor:
    """Scott's rule per coordinate, h_d = σ̂_d n^{−1/(D+4)}, for samples (M, D): (D,).

    σ̂ from ``samples``; n, the number of kernel centres, defaults to M.
    """
    m, d = samples.shape
    std = samples.std(dim=0).clamp_min(torch.finfo(samples.dtype).tiny)
    return std * (m if n is None else n) ** (-1.0 / (d + 4))


def _log_kernels(y: Tensor, centres: Tensor, bandwidth: Tensor) -> Tensor:
    """log N(y_b; c_m, diag h²) up to the constant Σ_d log h_d + D/2 log 2π: (B, M)."""
    return -0.5 * torch.cdist(y / bandwidth, centres / bandwidth).square()


def kde_log_prob(
    y: Tensor, centres: Tensor, bandwidth: Tensor, *, corrected: bool = False
) -> Tensor:
    """log q̂(y) of the Gaussian kernel density q̂ = 1/M Σ_m N(· ; c_m, diag h²).

    y (B, D), centres (M, D), bandwidth h (D,) -> (B,), evaluated in blocks.
    q̂(y) is unbiased for the smoothed density f_h = f ∗ N_h of the centres'
    law f, so log q̂(y) is biased low: E[log q̂] = log f_h − Var(q̂)/(2 f_h²) +
    O(M⁻²). With ``corrected``, the plug-in estimate of that term is added,
    (M Σ_m K_m² / (Σ_m K_m)² − 1) / (2(M − 1)) with K_m = N(y; c_m, diag h²),
    leaving a bias O(M⁻²) (the delta method; Var(K)/f_h² is estimated from the
    same kernel values).
    """
    return _kde_jackknife(y, centres, bandwidth, 1, corrected)[:, 0]


def _kde_jackknife(
    y: Tensor, centres: Tensor, bandwidth: Tensor, groups: int, corrected: bool
) -> Tensor:
    """``kde_log_prob`` of y (B, D) with all centres (column 0) and without each of
    ``groups`` contiguous blocks of them (columns 1…G, when G > 1): (B, 1 + G) or (B, 1)."""
    m, d = centres.shape
    if corrected and m < 2 * max(groups, 1):
        raise InvalidInput(f"kde_log_prob: the correction needs at least {2 * groups} centres")
    log_h = bandwidth.log().sum() + 0.5 * d * math.log(2 * math.pi)
    blocks = centres.tensor_split(groups) if groups > 1 else (centres,)
    sizes = torch.tensor([len(b) for b in blocks], dtype=y.dtype)
    out = []
    for chunk in y.split(_CHUNK):
        # per block of centres: log Σ K and log Σ K² (the kernels' constant added later)
        log_k = [_log_kernels(chunk, b, bandwidth) for b in blocks]
        s1 = torch.stack([torch.logsumexp(k, dim=1) for k in log_k], dim=1)  # (b, G)
        s2 = torch.stack([torch.logsumexp(2 * k, dim=1) for k in log_k], dim=1)
        cols = [(torch.logsumexp(s1, dim=1), torch.logsumexp(s2, dim=1), float(m))]
        if groups > 1:
            cols += [
                (_log_minus(cols[0][0], s1[:, g]), _log_minus(cols[0][1], s2[:, g]), m - sizes[g])
                for g in range(groups)
            ]
        values = []
        for log_s1, log_s2, n in cols:
            n = float(n)
            value = log_s1 - math.log(n) - log_h
            if corrected:
                ratio = torch.exp(math.log(n) + log_s2 - 2 * log_s1)
                value = value + (ratio - 1) / (2 * (n - 1))
            values.append(value)
        out.append(torch.stack(values, dim=1))
    return torch.cat(out)


def _log_minus(log_total: Tensor, log_part: Tensor) -> Tensor:
    """log(e^a − e^b) for a ≥ b, elementwise (−inf when equal)."""
    return log_total + torch.log1p(-torch.exp(log_part - log_total).clamp(max=1.0))


def kl_model_data(
    model: GenerativeModel,
    truth: GenerativeModel,
    samples: Tensor,
    *,
    generator: torch.Generator | None = None,
    conditions: Tensor | None = None,
) -> Estimate:
    """KL(p_θ ‖ p) = mean of log p_θ(y_m) − log p(y_m) over model samples (M, *event_shape).

    With ``conditions`` c_m (those the samples were drawn at, y_m ~ p_θ(· | c_m),
    c_m ~ p(c)), the expected conditional KL E_c KL(p_θ(· | c) ‖ p(· | c)).

    Needs log p_θ itself: ``model.likelihood`` EXACT (kind "exact") or ESTIMATE
    (an unbiased estimate drawn with ``generator``, kind "estimate"). Any other
    model raises ``IntractableLikelihood``: use ``kl_model_data_smoothed``.
    """
    if len(samples) < 2:
        raise InvalidInput(f"kl_model_data: expected at least 2 samples, got {len(samples)}")
    if model.likelihood not in (Likelihood.EXACT, Likelihood.ESTIMATE):
        raise IntractableLikelihood(
            f"kl_model_data: {type(model).__name__}'s log_prob is "
            f"{model.likelihood.value}, not an exact or unbiased log-density; "
            "use kl_model_data_smoothed"
        )
    with warnings.catch_warnings():  # the model's own samples: its density there is the point
        warnings.simplefilter("ignore", OutOfRangeWarning)
        log_q = log_probs(model, samples, generator=generator, condition=conditions)
    gap = log_q.double().cpu() - log_probs(truth, samples, condition=conditions).double().cpu()
    return Estimate.from_samples(gap, kind=model.likelihood.value)


def kl_model_data_smoothed(
    samples: Tensor,
    truth: GenerativeModel,
    bandwidth: Tensor,
    *,
    truth_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> Estimate:
    """KL_h(p_θ ‖ p) = KL(p_θ ∗ N_h ‖ p ∗ N_h) from model samples and draws of ``truth``.

    With the model's samples (M, *event_shape) split into halves A (kernel
    centres) and B, z_j = b_j + h ε_j ~ p_θ ∗ N_h, and C = ``truth_samples``
    draws of p (default 4|A|, from ``generator``):

        KL̂_h = 1/|B| Σ_j [log q̂_A(z_j) − log p̂_C(z_j)]

    with both kernel densities (bandwidth h (D,)) bias-corrected
    (``kde_log_prob(corrected=True)``). 0 ≤ KL_h ≤ KL(p_θ ‖ p) (see the module
    docstring); the estimate's bias is O((M h^D)^{-2}) and its standard error
    that of the mean over z, so it can fall below zero by noise when
    KL_h ≈ 0. Kind "estimate".
    """
    if len(samples) < 4:
        raise InvalidInput(
            f"kl_model_data_smoothed: expected at least 4 samples, got {len(samples)}"
        )
    y = flatten_events(samples.detach()).double().cpu()
    h = bandwidth.double().cpu().flatten()
    if h.shape != y.shape[1:] or not bool((h > 0).all()):
        raise InvalidInput(
            f"kl_model_data_smoothed: expected a positive bandwidth of shape {tuple(y.shape[1:])}"
            f", got {tuple(bandwidth.shape)}"
        )
    half = len(y) // 2
    centres, points = y[:half], y[half:]
    n_truth = 16 * half if truth_samples is None else truth_samples
    reference = flatten_events(truth.sample(n_truth, generator=generator).detach()).double()
    noise = torch.randn(points.shape, generator=generator, dtype=points.dtype)
    z = points + h * noise
    log_q = _kde_jackknife(z, centres, h, _GROUPS, corrected=True)  # (|B|, 1 + G)
    log_p = _kde_jackknife(z, reference.cpu(), h, _GROUPS, corrected=True)
    terms = log_q[:, 0] - log_p[:, 0]
    over_z = Estimate.from_samples(terms, kind="estimate")
    variance = over_z.stderr**2 + _jackknife_variance(log_q) + _jackknife_variance(log_p)
    return Estimate(over_z.value, math.sqrt(variance), "estimate")


def _jackknife_variance(log_f: Tensor) -> float:
    """Delete-a-group jackknife variance of mean_z log f̂(z) from the kernel centres' draw.

    log_f (B, 1 + G): column 0 with every centre, column g without group g.
    Var ≈ (G − 1)/G Σ_g (θ_{−g} − θ̄)², θ_{−g} = mean_z of column g (Efron 1982,
    "The jackknife, the bootstrap and other resampling plans").
    """
    means = log_f[:, 1:].mean(dim=0)
    g = len(means)
    return float((g - 1) / g * (means - means.mean()).square().sum())
