"""The variational objectives an adversarial critic maximises, as objects the game is given.

Every game here has the form

    sup_V  E_P[T(x)] − E_Q[f*(T(x))],   T = g(V),

with P the data and Q the generator's law: the f-divergence objects of
``probgen.divergences`` supply g (``activation``) and f* (through
``f_star_of_activation``), and ``KantorovichRubinstein`` supplies g(v) = v,
f*(t) = t, the Wasserstein-1 dual. The original GAN value V(D, G) is the
``GANJensenShannon`` bound shifted by −ln 4 (``minimax_value``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch.nn.functional as F
from torch import Tensor

__all__ = ["CriticObjective", "KantorovichRubinstein", "minimax_value"]


@runtime_checkable
class CriticObjective(Protocol):
    """What the game needs of a divergence: T = g(V) and f*(g(V)), elementwise."""

    def activation(self, v: Tensor) -> Tensor:
        """g(v): the critic's value T from its raw output v."""
        ...

    def f_star_of_activation(self, v: Tensor) -> Tensor:
        """f*(g(v)): the term the generated samples contribute."""
        ...


class KantorovichRubinstein:
    """The Wasserstein-1 dual W_1(P, Q) = sup_{‖V‖_L ≤ 1} E_P[V] − E_Q[V].

    Written as a critic objective with g(v) = v and f*(t) = t; the supremum is
    over 1-Lipschitz V only, which the game's ``LipschitzConstraint`` enforces.

    Reference: Villani 2009, "Optimal Transport", Theorem 5.10 (Kantorovich
    duality); Arjovsky, Chintala & Bottou 2017, "Wasserstein GAN", Eq. (3).
    """

    name = "wasserstein"

    def activation(self, v: Tensor) -> Tensor:
        return v

    def f_star_of_activation(self, v: Tensor) -> Tensor:
        return v

    def __repr__(self) -> str:
        return "KantorovichRubinstein()"


def minimax_value(v_real: Tensor, v_fake: Tensor) -> Tensor:
    """The GAN value V(D, G) = E_P[ln D(x)] + E_Q[ln(1 − D(x̃))] with D = σ(V).

    Args:
        v_real: discriminator logits V(x) on data samples, shape (N,).
        v_fake: logits on generated samples, shape (M,).

    Returns:
        A 0-dim tensor; at the optimal D* = p/(p + q) it equals
        −ln 4 + 2 JSD(P ‖ Q) (Goodfellow et al. 2014, "Generative Adversarial
        Nets", Theorem 1). ln σ(v) = −softplus(−v) and ln(1 − σ(v)) = −softplus(v)
        keep it finite for any logits.
    """
    return -F.softplus(-v_real).mean() - F.softplus(v_fake).mean()
