"""The adversarial game: a generator and a critic, each with its own objective.

One class plays every game of this package; what differs is passed in:
the critic objective (an f-divergence, or the Kantorovich–Rubinstein dual),
the Lipschitz constraint (none, weight clipping, gradient penalty) and the
generator's loss (saturating or non-saturating). With ``pack`` = m the
critic judges m samples at once (PacGAN): the expectations below run over
packs (x_1, …, x_m) of independent draws, P^m against Q^m.

    critic:     max_ψ  E_P[g(V_ψ(x))] − E_Q[f*(g(V_ψ(x̃)))] − penalty,  x̃ = G_θ(z) detached
    generator:  min_θ  −E_z[f*(g(V_ψ(G_θ(z))))]      (saturating, the minimax game)
                min_θ  −E_z[g(V_ψ(G_θ(z)))]           (non-saturating)

References: Goodfellow et al. 2014, "Generative Adversarial Nets"; Nowozin,
Cseke & Tomioka 2016, "f-GAN", Eq. (6) and Section 3.2; Arjovsky, Chintala &
Bottou 2017, "Wasserstein GAN"; Lin et al. 2018, "PacGAN: The power of two
samples in generative adversarial networks".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from probgen.core import GenerativeModel, InvalidInput, Likelihood, ProbgenError
from probgen.models.gan.constraints import LipschitzConstraint, NoConstraint
from probgen.models.gan.networks import Critic, Generator, build_networks, packed_shape
from probgen.models.gan.objectives import CriticObjective

if TYPE_CHECKING:
    from probgen.models.gan.refine import Refiner

__all__ = ["AdversarialGame", "CriticDiverged"]


class CriticDiverged(ProbgenError, RuntimeError):
    """The critic's output left the bound ``max_critic`` (or became non-finite)."""


class AdversarialGame(GenerativeModel):
    """A two-player generative model: generator G_θ and critic V_ψ (see the module docstring).

    ``players()`` is ``{"generator": θ, "critic": ψ}``; ``loss(x, "critic")``
    computes only the critic's objective (generated samples detached) and
    ``loss(x, "generator")`` only the generator's (``x`` then only sets the
    batch size). ``log_prob`` raises ``IntractableLikelihood``.

    Args:
        event_shape: shape of one example.
        objective: the critic objective, e.g. ``probgen.divergences.KullbackLeibler()``
            or ``KantorovichRubinstein()``.
        constraint: the critic's Lipschitz constraint (default: none).
        non_saturating: generator minimises −E[g(V(G(z)))] instead of −E[f*(g(V(G(z))))].
        latent_dim, hidden: sizes of the default MLP networks (``build_networks``).
        critic_scale: length scale ℓ at which the default critic reads its
            input, x/ℓ (``build_networks``); about 3σ for modes of width σ.
        generator, critic: networks to use instead of the defaults; a given
            critic must take events of shape ``packed_shape(event_shape, pack)``.
        pack: m, the number of samples the critic judges jointly (PacGAN, 1 =
            off). Batches passed to the critic must then have a multiple of m
            examples; consecutive groups of m form one critic input of shape
            (m, *event_shape), so every critic value is per pack, (B/m,).
        max_critic: bound on |V(x)|; a critic beyond it (or non-finite) raises
            ``CriticDiverged`` rather than training on meaningless numbers.
    """

    likelihood = Likelihood.NONE

    def __init__(
        self,
        event_shape: tuple[int, ...],
        objective: CriticObjective,
        *,
        constraint: LipschitzConstraint | None = None,
        non_saturating: bool = True,
        latent_dim: int = 8,
        hidden: Sequence[int] = (128, 128, 128),
        generator: Generator | None = None,
        critic: Critic | None = None,
        max_critic: float = 1e4,
        pack: int = 1,
        critic_scale: float = 1.0,
    ) -> None:
        super().__init__(event_shape)
        if not isinstance(objective, CriticObjective):
            raise InvalidInput(
                f"objective: expected an object with activation and f_star_of_activation, "
                f"got {type(objective).__name__}"
            )
        if pack < 1:
            raise InvalidInput(f"pack: expected >= 1, got {pack}")
        self.pack = int(pack)
        if not max_critic > 0:
            raise InvalidInput(f"max_critic: expected > 0, got {max_critic}")
        default_g, default_c = (
            build_networks(
                self.event_shape, latent_dim, hidden, pack=self.pack, critic_scale=critic_scale
            )
            if generator is None or critic is None
            else (generator, critic)
        )
        self.generator = default_g if generator is None else generator
        self.critic = default_c if critic is None else critic
        expected = {"generator": self.event_shape, "critic": packed_shape(self.event_shape, pack)}
        for name, net in (("generator", self.generator), ("critic", self.critic)):
            if tuple(net.event_shape) != expected[name]:
                raise InvalidInput(
                    f"{name}: expected event_shape {expected[name]}, got {tuple(net.event_shape)}"
                )
        self.objective = objective
        self.constraint = NoConstraint() if constraint is None else constraint
        self.non_saturating = bool(non_saturating)
        self.max_critic = float(max_critic)

    # ------------------------------------------------------------------ protocol

    def players(self) -> dict[str, list[nn.Parameter]]:
        """θ for ``"generator"``, ψ for ``"critic"``."""
        return {
            "generator": list(self.generator.parameters()),
            "critic": list(self.critic.parameters()),
        }

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        """The objective ``player`` minimises on a data batch ``x`` (B, *event_shape)."""
        self._check_player(player)
        x = self._check(x)
        if player == "critic":
            return self.critic_loss(x)
        return self.generator_loss(len(x))

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        refine: Refiner | None = None,
    ) -> Tensor:
        """x = G_θ(z), z ~ p(z): (n, *event_shape), without gradients.

        With ``refine`` (e.g. ``RejectionSampler`` or ``IndependenceMetropolisHastings``
        of ``probgen.models.gan.refine``) the generator's samples are proposals that
        the refiner corrects towards p_data by its log density ratio; call
        ``refine.draw(model.sample, n)`` directly for the acceptance rate.
        """
        if refine is not None:
            return refine.draw(self.sample, n, generator=generator).samples
        with torch.no_grad():
            return self.generator.sample(n, generator=generator)

    # ------------------------------------------------------------------ the two objectives

    def critic_loss(self, x: Tensor) -> Tensor:
        """−(E_P[g(V(x))] − E_Q[f*(g(V(x̃)))]) + penalty on x (B, …) and B fresh x̃ ~ Q.

        With ``pack`` = m the B samples of each side form B/m packs, and the
        penalty acts on packs (interpolating a real pack with a generated one).
        """
        self.constraint.prepare(self.critic)
        real = self.pack_examples(x)
        with torch.no_grad():
            fake = self.pack_examples(self.generator.sample(len(x)).to(x))
        v = self._bounded(self.critic(torch.cat([real, fake])))
        v_real, v_fake = v[: len(real)], v[len(real) :]
        loss = -self._value(v_real, v_fake)
        return loss + self.constraint.penalty(self.critic, real, fake)

    def generator_loss(self, n: int) -> Tensor:
        """−E_z[g(V(G(z)))] (non-saturating) or −E_z[f*(g(V(G(z))))] over n draws (n/m packs)."""
        self.constraint.prepare(self.critic)
        v_fake = self.critic_output(self.generator.sample(n))
        if self.non_saturating:
            return -self.objective.activation(v_fake).mean()
        return -self.objective.f_star_of_activation(v_fake).mean()

    # ------------------------------------------------------------------ estimates

    def pack_examples(self, x: Tensor) -> Tensor:
        """Consecutive groups of m = ``pack`` examples: (B, *event_shape) -> (B/m, m, *event_shape).

        Unchanged when m = 1; raises ``InvalidInput`` unless m divides B.
        """
        if self.pack == 1:
            return x
        if len(x) % self.pack:
            raise InvalidInput(
                f"{type(self).__name__}: expected a batch size divisible by pack={self.pack}, "
                f"got {len(x)}"
            )
        return x.reshape(len(x) // self.pack, self.pack, *self.event_shape)

    def critic_output(self, x: Tensor) -> Tensor:
        """V_ψ on the packs of x (B, *event_shape): shape (B/m,), (B,) without packing.

        Raises ``CriticDiverged`` if any |V| > ``max_critic`` or is NaN.
        """
        return self._bounded(self.critic(self.pack_examples(x)))

    def _bounded(self, v: Tensor) -> Tensor:
        worst = v.detach().abs().max().item() if v.numel() else 0.0
        if not worst <= self.max_critic:  # also catches NaN
            raise CriticDiverged(
                f"{type(self).__name__}: critic output |V(x)| reached {worst:.4g}, beyond "
                f"max_critic={self.max_critic:g}; the critic is diverging (lower its learning "
                f"rate, take fewer critic steps per round, or constrain it)"
            )
        return v

    def witness(self, x: Tensor) -> Tensor:
        """The critic's value T(x) = g(V(x)), shape (B,); estimates f'(p/q) at the optimum."""
        return self.objective.activation(self.critic_output(self._check(x)))

    def variational_value(self, real: Tensor, fake: Tensor | None = None) -> Tensor:
        """E_P[T] − E_Q[f*(T)] on data ``real`` and generated ``fake`` (drawn if None).

        A lower bound on D_f(P ‖ Q) for every critic, tight at T* = f'(p/q)
        (Nguyen, Wainwright & Jordan 2010); for the Wasserstein objective, the
        dual E_P[V] − E_Q[V] ≤ W_1 when V is 1-Lipschitz. 0-dim tensor.
        """
        real = self._check(real, name="real")
        fake = self.sample(len(real)).to(real) if fake is None else self._check(fake, name="fake")
        return self._value(self.critic_output(real), self.critic_output(fake))

    def _value(self, v_real: Tensor, v_fake: Tensor) -> Tensor:
        return (
            self.objective.activation(v_real).mean()
            - self.objective.f_star_of_activation(v_fake).mean()
        )

    def extra_repr(self) -> str:
        return (
            f"objective={self.objective!r}, constraint={self.constraint!r}, "
            f"non_saturating={self.non_saturating}, pack={self.pack}"
        )
