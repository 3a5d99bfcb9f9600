"""The registered adversarial models: f-GAN, GAN, WGAN, WGAN-GP (configurations of one game).

Each class only chooses the objective and the constraint of ``AdversarialGame``
from plain keyword arguments, so configs and the CLI can build it by name.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from probgen.core import InvalidInput
from probgen.divergences import F_DIVERGENCES, FDivergence, GANJensenShannon
from probgen.models.gan.constraints import GradientPenalty, WeightClipping
from probgen.models.gan.game import AdversarialGame
from probgen.models.gan.objectives import KantorovichRubinstein, minimax_value

__all__ = ["FGAN", "GAN", "WGAN", "WGANGP", "resolve_divergence"]


def resolve_divergence(divergence: FDivergence | str) -> FDivergence:
    """An ``FDivergence`` given as itself or by its name in ``F_DIVERGENCES``."""
    if isinstance(divergence, FDivergence):
        return divergence
    if divergence not in F_DIVERGENCES:
        raise InvalidInput(
            f"divergence: unknown {divergence!r}; choose one of: {', '.join(sorted(F_DIVERGENCES))}"
        )
    return F_DIVERGENCES[divergence]


class FGAN(AdversarialGame):
    """f-GAN: min_θ max_ψ E_P[T_ψ(x)] − E_{Q_θ}[f*(T_ψ(x))], T = g_f(V), for any f-divergence.

    The critic's output activation g_f maps ℝ into dom(f*) (``divergence.activation``),
    so the bound is finite for every critic; at the optimum T* = f'(p/q) and the
    critic's value equals D_f(P ‖ Q_θ). ``non_saturating`` (the default, as in
    Nowozin et al.'s experiments) trains the generator on −E_Q[T] instead of
    −E_Q[f*(T)].

    Args:
        event_shape: shape of one example.
        divergence: an ``FDivergence`` or its name (``kl``, ``reverse_kl``, ``js``,
            ``gan``, ``pearson``, ``hellinger``, ``total_variation``).
        **options: ``AdversarialGame`` keywords (networks, sizes, ``max_critic``).

    Reference: Nowozin, Cseke & Tomioka 2016, "f-GAN: Training generative neural
    samplers using variational divergence minimization", Eq. (6), Tables 1–2.
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        divergence: FDivergence | str = "js",
        *,
        non_saturating: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(
            event_shape,
            resolve_divergence(divergence),
            non_saturating=non_saturating,
            **options,
        )

    @property
    def divergence(self) -> FDivergence:
        """The f-divergence this game minimises."""
        return self.objective  # type: ignore[return-value]


class GAN(FGAN):
    """GAN: the minimax game min_G max_D E_P[ln D(x)] + E_z[ln(1 − D(G(z)))], D = σ(V).

    The f-GAN with the ``GANJensenShannon`` divergence (2·JSD): T = ln D and
    f*(T) = −ln(1 − D) − ln 4, so the critic's value is V(D, G) + ln 4. With
    ``non_saturating=True`` (default) the generator minimises −E_z[ln D(G(z))],
    the variant Goodfellow et al. recommend; with ``False`` it minimises
    E_z[ln(1 − D(G(z)))], the minimax game itself.

    Reference: Goodfellow et al. 2014, "Generative Adversarial Nets", Eq. (1), Section 3.
    """

    def __init__(
        self, event_shape: tuple[int, ...], *, non_saturating: bool = True, **options: Any
    ) -> None:
        super().__init__(event_shape, GANJensenShannon(), non_saturating=non_saturating, **options)

    def discriminator(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """D(x[, c]) = σ(V(x[, c])) ∈ (0, 1), the probability that x is data; (B, …) -> (B,)."""
        x = self._check(x)
        return self.critic_output(x, self._features(condition, len(x))).sigmoid()

    def minimax_value(
        self, real: Tensor, fake: Tensor | None = None, condition: Tensor | None = None
    ) -> Tensor:
        """V(D, G) = E_P[ln D(x)] + E_Q[ln(1 − D(x̃))] on ``real`` and ``fake`` (drawn if None),
        both at the rows' conditions c for a conditional game."""
        real = self._check(real, name="real")
        fake = (
            self.sample(len(real), condition=condition).to(real)
            if fake is None
            else self._check(fake, name="fake")
        )
        h = self._features(condition, len(real))
        return minimax_value(self.critic_output(real, h), self.critic_output(fake, h))


class WGAN(AdversarialGame):
    """Wasserstein GAN: min_θ max_{‖V‖_L ≤ K} E_P[V(x)] − E_{Q_θ}[V(x)], by weight clipping.

    Every critic parameter is clipped to [−clip, clip] before each evaluation,
    which bounds the Lipschitz constant by some K, so the critic estimates
    K·W_1(P, Q_θ). Train with several critic steps per generator step
    (``steps_per_round: {critic: 5}``) and RMSProp-like small learning rates.

    Reference: Arjovsky, Chintala & Bottou 2017, "Wasserstein GAN", Algorithm 1.
    """

    def __init__(self, event_shape: tuple[int, ...], *, clip: float = 0.01, **options: Any) -> None:
        super().__init__(
            event_shape, KantorovichRubinstein(), constraint=WeightClipping(clip), **options
        )


class WGANGP(AdversarialGame):
    """WGAN-GP: the Wasserstein dual with the gradient penalty λ E[(‖∇V(x̂)‖ − 1)²].

    The critic maximises E_P[V] − E_Q[V] − λ E_x̂[(‖∇_x̂ V(x̂)‖₂ − 1)²] on random
    interpolates x̂ of data and generated samples, so its value estimates
    W_1(P, Q_θ) itself. Train with ``steps_per_round: {critic: 5}``, Adam
    (lr 1e-4, betas (0.5, 0.9)) as in the paper.

    Reference: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1.
    """

    def __init__(
        self, event_shape: tuple[int, ...], *, penalty: float = 10.0, **options: Any
    ) -> None:
        super().__init__(
            event_shape, KantorovichRubinstein(), constraint=GradientPenalty(penalty), **options
        )
