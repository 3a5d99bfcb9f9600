"""Conditional denoisers and guidance, each a ``Denoiser`` (x_t, t) -> ``Prediction``.

Every sampler, objective and likelihood takes a ``Denoiser``; conditioning
and guidance are denoisers wrapping denoisers, so no sampler has code of its
own for them:

    Conditioned(d, h)                  d(x_t, t, condition=h): p_t(x | c) at fixed features h
    ClassifierFreeGuidance(c, u, w)    ε̃ = (1 + w) ε̂(x_t, c) − w ε̂(x_t, ∅)
    ClassifierGuidance(d, p, y, s)     s̃ = ŝ(x_t, t) + s ∇_x log p_φ(y | x_t, t)

**Features and the null condition.** A conditional network reads
h = [φ(c), 0] (B, F + 1), φ = ``ConditionSpec.features`` (one-hot classes or
the flattened vector); the null condition ∅ is h = [0, …, 0, 1]. Training
with condition dropout (each row's h replaced by ∅ with probability
p_uncond, ``drop_conditions``) makes the one network a model of p(x | c) and
of p(x) (Ho & Salimans 2022, Algorithm 1).

**What classifier-free guidance samples.** ε̃ is the score
s̃_t = (1 + w) ∇ log p_t(x | c) − w ∇ log p_t(x) of the tilted family
p̃_t ∝ p_t(x | c)^{1+w} p_t(x)^{−w}; at t = 0 that is the tilted law
p(x | c)^{1+w} p(x)^{−w}. But p̃_t is in general not the marginal of one
diffusion, so a sampler run on s̃ does not sample p̃_0 exactly (Chidambaram
et al. 2024). It does when the guided score is itself a diffusion score: for
Gaussians N(μ_c, Σ) and N(μ_∅, Σ) with the same Σ, s̃_t is the exact score of
data N(μ_c + w(μ_c − μ_∅), Σ) under the process, which is then sampled
exactly (tests/theory/test_guidance.py checks this and the general Gaussian
case against the solved moment ODE).

**Classifier guidance** needs a noise-conditional classifier
p_φ(y | x_t, t), a callable (x_t (B, *event), t (B,)) -> log-probabilities
(B, K). A classifier of clean data (such as the generative classifier
``probgen.evaluate.classifiers.class_log_posterior``) is one only when it is
the exact posterior under the forward marginals (as
``ExactGaussianClassPosterior`` is for Gaussian classes); otherwise train one
on noised data. With the exact p(y | x_t) and s = 1 + w, classifier guidance
of the exact unconditional score equals classifier-free guidance of scale w
(Ho & Salimans 2022, Section 3.2).

``evaluations`` (what ``n_evaluations`` of a sampler adds up per call) is 2
for classifier-free guidance: the network runs at c and at ∅, two calls on B
rows each. The classifier's gradient (one forward and backward per call) is
not counted there.

References: Ho & Salimans (2022), "Classifier-free diffusion guidance";
Dhariwal & Nichol (2021), "Diffusion models beat GANs on image synthesis",
Section 4, Algorithm 1; Chidambaram, Gatmiry, Chen, Lee & Lu (2024), "What
does guidance do? A fine-grained analysis in a simple setting".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from probgen.conditions import ConditionSpec
from probgen.core import InvalidInput
from probgen.models.diffusion.parametrizations import Denoiser, Prediction

__all__ = [
    "Classifier",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "Conditioned",
    "condition_features",
    "drop_conditions",
]

Classifier = Callable[[Tensor, Tensor], Tensor]
"""A noise-conditional classifier: (x_t (B, *event), t (B,)) -> log p(y | x_t) (B, K)."""


def condition_features(spec: ConditionSpec, c: Tensor | None, rows: int, like: Tensor) -> Tensor:
    """Network features h (rows, F + 1): [φ(c), 0] per row, or the null [0, …, 0, 1] when c is None.

    ``c`` is a checked condition batch of ``rows`` rows; ``like`` gives dtype and device.
    """
    h = torch.zeros(rows, spec.width + 1, dtype=like.dtype, device=like.device)
    if c is None:
        h[:, -1] = 1.0
    else:
        h[:, :-1] = spec.features(c.to(like.device), like.dtype)
    return h


def drop_conditions(h: Tensor, p_uncond: float, generator: torch.Generator | None = None) -> Tensor:
    """Condition dropout: each row of h (B, F + 1) replaced by ∅ with probability ``p_uncond``."""
    if p_uncond <= 0:
        return h
    drop = torch.rand(h.shape[0], generator=generator, device=h.device) < p_uncond  # (B,)
    null = torch.zeros_like(h[0])
    null[-1] = 1.0
    return torch.where(drop[:, None], null, h)


class Conditioned(Denoiser):
    """A conditional denoiser at fixed features h (B, F + 1): (x_t, t) -> d(x_t, t, condition=h).

    The batch of every call must have the B rows of h.
    """

    def __init__(self, denoiser: Denoiser, features: Tensor) -> None:
        super().__init__(denoiser.process)
        self.denoiser = denoiser
        self.features = features

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        if x.shape[0] != self.features.shape[0]:
            raise InvalidInput(
                f"x: expected {self.features.shape[0]} rows, one per condition, got {x.shape[0]}"
            )
        return self.denoiser(x, t, condition=self.features)


class ClassifierFreeGuidance(Denoiser):
    """ε̃(x_t, t) = (1 + w) ε̂_c(x_t, t) − w ε̂_∅(x_t, t), i.e. s̃ = ŝ_c + w (ŝ_c − ŝ_∅).

    Args:
        conditional: the denoiser of p_t(x | c) (``Conditioned`` at c).
        unconditional: the denoiser of p_t(x) (``Conditioned`` at ∅).
        scale: w ≥ 0; w = 0 is the conditional model itself.

    The combination is affine with weights summing to one, so it is the same on
    ε̂, ŝ, x̂_0 and v̂; it is made on the conditional prediction's own kind. Two calls of
    B rows per evaluation (``evaluations`` = 2). See the module docstring for
    what it samples. Reference: Ho & Salimans (2022), eq. (6).
    """

    def __init__(self, conditional: Denoiser, unconditional: Denoiser, scale: float) -> None:
        if not scale >= 0:
            raise InvalidInput(f"guidance: expected a scale w >= 0, got {scale}")
        super().__init__(conditional.process)
        self.conditional, self.unconditional = conditional, unconditional
        self.scale = float(scale)
        self.evaluations = conditional.evaluations + unconditional.evaluations

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        # weights 1 + w and −w sum to one, so combining in any of the affine-equivalent
        # quantities is the same; the network's own (velocity on a flow-matching path,
        # where ε̂ → x̂_0 is singular at α_t = 0) keeps every path regular
        c, u = self.conditional(x, t), self.unconditional(x, t)
        kind = c.kind
        value = getattr(c, kind) * (1.0 + self.scale)
        return self.predict(x, t, kind, torch.add(value, getattr(u, kind), alpha=-self.scale))


class ClassifierGuidance(Denoiser):
    """s̃(x_t, t) = ŝ(x_t, t) + s ∇_x log p_φ(y | x_t, t), per row's target class y.

    Args:
        denoiser: the denoiser to guide (unconditional, conditional or CFG-guided).
        classifier: (x_t (B, *event), t (B,)) -> log-probabilities (B, K), a
            noise-conditional classifier (see the module docstring).
        labels: the target classes y, (B,) integers in 0..K-1.
        scale: s ≥ 0, the classifier scale.

    The gradient is taken by autograd, with gradients enabled inside samplers
    that run under ``torch.no_grad``. Reference: Dhariwal & Nichol (2021),
    Algorithm 1 and eq. (12) (there as ε̂ − √(1 − ᾱ_t) s ∇ log p_φ).
    """

    def __init__(
        self, denoiser: Denoiser, classifier: Classifier, labels: Tensor, scale: float = 1.0
    ) -> None:
        if not callable(classifier):
            raise InvalidInput(
                f"classifier: expected a callable (x_t, t) -> log-probabilities (B, K), "
                f"got {type(classifier).__name__}"
            )
        if not scale >= 0:
            raise InvalidInput(f"classifier_scale: expected a scale >= 0, got {scale}")
        if labels.dim() != 1 or labels.is_floating_point():
            raise InvalidInput(
                f"classifier labels: expected integer labels (B,), got {labels.dtype} of "
                f"shape {tuple(labels.shape)}"
            )
        super().__init__(denoiser.process)
        self.denoiser, self.classifier = denoiser, classifier
        self.labels, self.scale = labels.long(), float(scale)
        self.evaluations = denoiser.evaluations

    def log_likelihood_gradient(self, x: Tensor, t: Tensor) -> Tensor:
        """∇_x log p_φ(y | x, t) (B, *event) for the rows' labels y."""
        if x.shape[0] != len(self.labels):
            raise InvalidInput(f"x: expected {len(self.labels)} rows, got {x.shape[0]}")
        with torch.enable_grad():
            y = x.detach().requires_grad_(True)
            log_probs = self.classifier(y, t.expand(x.shape[0]))
            if log_probs.dim() != 2 or log_probs.shape[0] != x.shape[0]:
                raise InvalidInput(
                    f"classifier: expected log-probabilities ({x.shape[0]}, K), got "
                    f"{tuple(log_probs.shape)}"
                )
            if int(self.labels.max()) >= log_probs.shape[1]:
                raise InvalidInput(
                    f"classifier labels: must lie in 0..{log_probs.shape[1] - 1}, got "
                    f"{int(self.labels.max())}"
                )
            chosen = log_probs.gather(1, self.labels[:, None].to(log_probs.device)).sum()
            (grad,) = torch.autograd.grad(chosen, y)
        return grad

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        score = self.denoiser(x, t).score
        grad = self.log_likelihood_gradient(x, t)
        return self.from_score(x, t, torch.add(score, grad, alpha=self.scale))
