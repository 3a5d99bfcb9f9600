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

Conditional games (``condition`` set) model p(x | c): the generator is
G_θ(z, c) and the critic V_ψ(x, c) (a projection critic for classes,
Miyato & Koyama 2018, "cGANs with projection discriminator"); each batch of
data (x, c) is set against generated x̃ = G_θ(z, c) at the same conditions,
so the expectations above run over the joint laws of (x, c), P(x|c)p(c)
against Q_θ(x|c)p(c).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, GenerativeModel, InvalidInput, Likelihood, ProbgenError
from probgen.models.gan.constraints import LipschitzConstraint, NoConstraint
from probgen.models.gan.networks import (
    Critic,
    Generator,
    ProjectionCritic,
    build_networks,
    packed_shape,
)
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
        latent_dim: latent size of the default MLP networks (``build_networks``).
        hidden: hidden widths of the default MLP networks.
        critic_scale: length scale ℓ at which the default critic reads its
            input, x/ℓ (``build_networks``); about 3σ for modes of width σ.
        generator: a network to use instead of the default generator.
        critic: a network to use instead of the default critic; it must take
            events of shape ``packed_shape(event_shape, pack)``.
        pack: m, the number of samples the critic judges jointly (PacGAN, 1 =
            off). Batches passed to the critic must then have a multiple of m
            examples; consecutive groups of m form one critic input of shape
            (m, *event_shape), so every critic value is per pack, (B/m,).
        max_critic: bound on |V(x)|; a critic beyond it (or non-finite) raises
            ``CriticDiverged`` rather than training on meaningless numbers.
        condition: what c is (``ConditionSpec``) for a conditional game of
            p(x | c); given networks must then read condition features of
            width W (generator) and m·W (critic). ``None``: p(x).
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
        critic: Critic | ProjectionCritic | None = None,
        max_critic: float = 1e4,
        pack: int = 1,
        critic_scale: float = 1.0,
        condition: ConditionSpec | None = None,
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
        self.condition_spec = condition
        default_g, default_c = (
            build_networks(
                self.event_shape,
                latent_dim,
                hidden,
                pack=self.pack,
                critic_scale=critic_scale,
                condition=condition,
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
        w = 0 if condition is None else condition.width
        widths = {"generator": w, "critic": self.pack * w}
        for name, net in (("generator", self.generator), ("critic", self.critic)):
            if getattr(net, "condition_width", 0) != widths[name]:
                raise InvalidInput(
                    f"{name}: expected condition features of width {widths[name]}, "
                    f"got {getattr(net, 'condition_width', 0)}"
                )
        self.objective = objective
        self.constraint = NoConstraint() if constraint is None else constraint
        self.non_saturating = bool(non_saturating)
        self.max_critic = float(max_critic)

    @classmethod
    def for_data(
        cls, spec: DataSpec, conditional: bool | None = None, **options: Any
    ) -> AdversarialGame:
        """This game for data ``spec``; conditional (p(x | c)) exactly when ``spec.condition``
        is set, unless ``conditional`` says otherwise."""
        conditional = spec.condition is not None if conditional is None else conditional
        if conditional and spec.condition is None:
            raise InvalidInput(
                f"{cls.__name__}: conditional=True needs data with a condition (spec.condition)"
            )
        condition = spec.condition if conditional else None
        return cls(event_shape=spec.event_shape, condition=condition, **options)

    # ------------------------------------------------------------------ protocol

    def players(self) -> dict[str, list[nn.Parameter]]:
        """θ for ``"generator"``, ψ for ``"critic"``."""
        return {
            "generator": list(self.generator.parameters()),
            "critic": list(self.critic.parameters()),
        }

    def player_names(self) -> tuple[str, ...]:
        """``("generator", "critic")``, the keys of ``players()``."""
        return ("generator", "critic")

    def loss(self, x: Tensor, player: str = "model", condition: Tensor | None = None) -> Tensor:
        """The objective ``player`` minimises on a data batch ``x`` (B, *event_shape).

        A conditional game takes the batch's conditions c; the generator's
        loss then draws x̃ = G(z, c) at those conditions.
        """
        self._check_player(player)
        x = self._check(x)
        h = self._features(condition, len(x))
        if player == "critic":
            return self.critic_loss(x, h)
        return self.generator_loss(len(x), h)

    def sample(
        self,
        n: int,
        condition: Tensor | None = None,
        generator: torch.Generator | None = None,
        refine: Refiner | None = None,
    ) -> Tensor:
        """x = G_θ(z[, c]), z ~ p(z): (n, *event_shape), without gradients.

        A conditional game takes ``condition``: one for all n samples, or n.
        With ``refine`` (e.g. ``RejectionSampler`` or ``IndependenceMetropolisHastings``
        of ``probgen.models.gan.refine``) the generator's samples are proposals that
        the refiner corrects towards p_data by its log density ratio; call
        ``refine.draw(model.sample, n)`` directly for the acceptance rate.
        Refinement is unconditional only (InvalidInput for a conditional game).
        """
        h = self._features(condition, n, expand=True)
        if refine is not None:
            if self.condition_spec is not None:
                raise InvalidInput(
                    f"{type(self).__name__}: refine= corrects p_g towards p_data by an "
                    "unconditional log-ratio; conditional refinement is not supported"
                )
            return refine.draw(self.sample, n, generator=generator).samples
        with torch.no_grad():
            return self.generator.sample(n, generator=generator, h=h)

    def rsample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """x = G_θ(z[, c]), z ~ p(z): ``sample``'s draw, differentiable in the generator's θ
        (the generator is an implicit, reparameterised sampler); (n, *event_shape)."""
        return self.generator.sample(
            n, generator=generator, h=self._features(condition, n, expand=True)
        )

    # ------------------------------------------------------------------ the two objectives

    def critic_loss(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """−(E_P[g(V(x))] − E_Q[f*(g(V(x̃)))]) + penalty on x (B, …) and B fresh x̃ ~ Q.

        With ``pack`` = m the B samples of each side form B/m packs, and the
        penalty acts on packs (interpolating a real pack with a generated one).
        A conditional game passes the batch's condition features h (B, W): x̃
        is drawn at them, and the penalty's interpolates keep them.
        """
        self.constraint.prepare(self.critic)
        real = self.pack_examples(x)
        with torch.no_grad():
            fake = self.pack_examples(self.generator.sample(len(x), h=h).to(x))
        hp = self.pack_features(h)
        both = None if hp is None else torch.cat([hp, hp])
        v = self._bounded(self.critic(torch.cat([real, fake]), both))
        v_real, v_fake = v[: len(real)], v[len(real) :]
        loss = -self._value(v_real, v_fake)
        critic = self.critic if hp is None else functools.partial(self.critic, h=hp)
        return loss + self.constraint.penalty(critic, real, fake)

    def generator_loss(self, n: int, h: Tensor | None = None) -> Tensor:
        """−E_z[g(V(G(z)))] (non-saturating) or −E_z[f*(g(V(G(z))))] over n draws (n/m packs),
        at the condition features h (n, W) for a conditional game."""
        self.constraint.prepare(self.critic)
        v_fake = self.critic_output(self.generator.sample(n, h=h), h)
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

    def pack_features(self, h: Tensor | None) -> Tensor | None:
        """Condition features of the packs: (B, W) -> (B/m, m·W), the m rows side by side."""
        if h is None or self.pack == 1:
            return h
        return h.reshape(len(h) // self.pack, -1)  # x's packing checked that m divides B

    def critic_output(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """V_ψ on the packs of x (B, *event_shape) [at condition features h (B, W)]: shape
        (B/m,), (B,) without packing.

        Raises ``CriticDiverged`` if any |V| > ``max_critic`` or is NaN.
        """
        return self._bounded(self.critic(self.pack_examples(x), self.pack_features(h)))

    def _bounded(self, v: Tensor) -> Tensor:
        worst = v.detach().abs().max().item() if v.numel() else 0.0
        if not worst <= self.max_critic:  # also catches NaN
            raise CriticDiverged(
                f"{type(self).__name__}: critic output |V(x)| reached {worst:.4g}, beyond "
                f"max_critic={self.max_critic:g}; the critic is diverging (lower its learning "
                f"rate, take fewer critic steps per round, or constrain it)"
            )
        return v

    def witness(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """The critic's value T(x[, c]) = g(V(x[, c])), shape (B,); estimates f'(p/q) at the
        optimum."""
        x = self._check(x)
        return self.objective.activation(self.critic_output(x, self._features(condition, len(x))))

    def variational_value(
        self, real: Tensor, fake: Tensor | None = None, condition: Tensor | None = None
    ) -> Tensor:
        """E_P[T] − E_Q[f*(T)] on data ``real`` and generated ``fake`` (drawn if None).

        A lower bound on D_f(P ‖ Q) for every critic, tight at T* = f'(p/q)
        (Nguyen, Wainwright & Jordan 2010); for the Wasserstein objective, the
        dual E_P[V] − E_Q[V] ≤ W_1 when V is 1-Lipschitz. 0-dim tensor. A
        conditional game scores both at the rows' conditions c.
        """
        real = self._check(real, name="real")
        fake = (
            self.sample(len(real), condition=condition).to(real)
            if fake is None
            else self._check(fake, name="fake")
        )
        h = self._features(condition, len(real))
        return self._value(self.critic_output(real, h), self.critic_output(fake, h))

    def _features(self, condition: Any, rows: int, *, expand: bool = False) -> Tensor | None:
        """The checked condition's network features (rows, W), or None for p(x)."""
        c = self._condition(condition, rows, expand=expand)
        if c is None or self.condition_spec is None:
            return None
        dtype = next(self.generator.parameters()).dtype
        return self.condition_spec.features(c, dtype)

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
