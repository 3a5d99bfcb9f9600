"""The two players of an adversarial game: a generator G_θ(z) with its prior p(z), a critic V_ψ."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import InvalidInput, check_input
from probgen.distributions import Distribution, StandardNormal
from probgen.nn.mlp import MLP
from probgen.tensors import flatten_events

__all__ = [
    "Critic",
    "FourierFeatures",
    "Generator",
    "InputScale",
    "ProjectionCritic",
    "build_networks",
    "packed_shape",
]


class Generator(nn.Module):
    """An implicit sampler x = G_θ(z), z ~ p(z): a push-forward with no tractable density.

    The network maps latent vectors (B, Z) to (B, D) with D = prod(event_shape);
    its output is reshaped to (B, *event_shape), so the same class serves points,
    images and sequences. A conditional generator G_θ(z, c) (``condition_width``
    W > 0) reads the concatenation [z, h] (B, Z + W) of the noise and the
    condition's features h (one-hot for classes; Mirza & Osindero 2014,
    "Conditional generative adversarial nets").

    Args:
        network: module (B, Z) -> (B, D), or (B, Z + W) -> (B, D) when conditional.
        prior: p(z), a distribution over (Z,) with exact ``sample``; its
            buffers set the dtype and device of the noise.
        event_shape: shape of one generated example.
        condition_width: W, the width of the condition features (0: unconditional).

    Reference: Goodfellow et al. 2014, "Generative Adversarial Nets", Section 3.
    """

    def __init__(
        self,
        network: nn.Module,
        prior: Distribution,
        event_shape: tuple[int, ...],
        condition_width: int = 0,
    ) -> None:
        super().__init__()
        if len(prior.event_shape) != 1:
            raise InvalidInput(
                f"prior: expected events of shape (Z,), got {tuple(prior.event_shape)}"
            )
        self.network = network
        self.prior = prior
        self.event_shape = tuple(int(s) for s in event_shape)
        self.condition_width = int(condition_width)

    @property
    def latent_dim(self) -> int:
        """Z, the size of the latent vector."""
        return self.prior.event_shape[0]

    def forward(self, z: Tensor, h: Tensor | None = None) -> Tensor:
        """G_θ(z) or G_θ(z, c): z (B, Z), h (B, W) the condition's features -> (B, *event_shape)."""
        z = check_input(z, self.prior.event_shape, name="z")
        inputs = _join(z, h, self.condition_width, "generator")
        return self.network(inputs).reshape(len(z), *self.event_shape)

    def sample(
        self, n: int, generator: torch.Generator | None = None, *, h: Tensor | None = None
    ) -> Tensor:
        """x = G_θ(z[, c]), z ~ p(z) drawn by ``generator``: (n, *event_shape), differentiable."""
        return self(self.prior.sample(n, generator=generator), h)


class Critic(nn.Module):
    """The critic's raw output V_ψ(x) ∈ ℝ, one number per example: (B, *event_shape) -> (B,).

    What V means is set by the game's objective: for an f-GAN the critic's
    value is T(x) = g_f(V(x)) (for the GAN, V is the logit of D(x) = σ(V(x)));
    for a Wasserstein GAN, V itself is the 1-Lipschitz potential. A conditional
    critic V_ψ(x, c) (``condition_width`` W > 0) reads the concatenation
    [flatten(x), h] of the example and the condition's features (the critic
    for continuous conditions; for classes see ``ProjectionCritic``).

    Args:
        network: module (B, D) -> (B, 1) acting on flattened examples, or
            (B, D + W) -> (B, 1) when conditional.
        event_shape: shape of one example.
        condition_width: W (0: unconditional).

    Reference: Nowozin, Cseke & Tomioka 2016, "f-GAN", Section 3.
    """

    def __init__(
        self, network: nn.Module, event_shape: tuple[int, ...], condition_width: int = 0
    ) -> None:
        super().__init__()
        self.network = network
        self.event_shape = tuple(int(s) for s in event_shape)
        self.condition_width = int(condition_width)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """V_ψ(x) or V_ψ(x, c): x (B, *event_shape), h (B, W) -> (B,)."""
        inputs = _join(flatten_events(x), h, self.condition_width, "critic")
        return self.network(inputs).reshape(len(x))


class ProjectionCritic(nn.Module):
    """The projection critic V_ψ(x, c) = ψ(φ(x)) + ⟨E h, φ(x)⟩ for class conditions.

    φ (B, D) -> (B, F) is a feature network on the flattened example, ψ a
    linear map ℝ^F -> ℝ and E (F × W) the class embedding, so for one-hot h
    the second term is ⟨e_c, φ(x)⟩ with e_c the embedding of class c. This is
    the form of the optimal critic's log-ratio when log p(c|x) is a linear
    softmax of φ(x): log p_data(x, c)/p_g(x, c) splits into a term in x and
    one in c·φ(x). ψ and E start at zero (V ≡ 0, as ``build_networks``'s critic).
    With a pack of m examples h holds their m one-hot rows side by side
    (W = m·K), E then embeds the pack's labels jointly.

    Reference: Miyato & Koyama 2018, "cGANs with projection discriminator",
    Eq. (3).

    Args:
        features: φ, module (B, D) -> (B, F).
        n_features: F.
        event_shape: shape of one example.
        condition_width: W, the width of the condition features.
    """

    def __init__(
        self,
        features: nn.Module,
        n_features: int,
        event_shape: tuple[int, ...],
        condition_width: int,
    ) -> None:
        super().__init__()
        if n_features < 1 or condition_width < 1:
            raise InvalidInput(
                f"ProjectionCritic: expected n_features >= 1 and condition_width >= 1, "
                f"got {n_features} and {condition_width}"
            )
        self.features = features
        self.psi = nn.Linear(n_features, 1)
        self.embed = nn.Linear(condition_width, n_features, bias=False)
        for layer in (self.psi, self.embed):
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.psi.bias)
        self.event_shape = tuple(int(s) for s in event_shape)
        self.condition_width = int(condition_width)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """V_ψ(x, c): x (B, *event_shape), h (B, W) -> (B,)."""
        if h is None:
            raise InvalidInput("critic: a conditional critic needs the condition's features h")
        phi = self.features(flatten_events(x))  # (B, F)
        return self.psi(phi)[:, 0] + (self.embed(h.to(phi.dtype)) * phi).sum(dim=1)


def _join(x: Tensor, h: Tensor | None, width: int, name: str) -> Tensor:
    """[x, h] for a conditional network (width W > 0), x itself for an unconditional one."""
    if (h is not None) != (width > 0):
        raise InvalidInput(
            f"{name}: "
            + ("a conditional network needs" if width else "takes no")
            + " condition features h"
        )
    if h is None:
        return x
    if h.shape != (len(x), width):
        raise InvalidInput(
            f"{name}: expected condition features of shape ({len(x)}, {width}), "
            f"got {tuple(h.shape)}"
        )
    return torch.cat([x, h.to(x.dtype)], dim=1)


class InputScale(nn.Module):
    """x ↦ x / ℓ: expresses the input in units of the length scale ℓ, (B, D) -> (B, D).

    A network with PyTorch's default initialisation varies on input scales of
    order 1 and learns finer detail slowly (spectral bias; Rahaman et al. 2019,
    "On the spectral bias of neural networks"). A critic that must resolve
    structure of size ℓ ≪ 1 (modes of standard deviation σ, ℓ ≈ 3σ) therefore
    starts blind to it; read in units of ℓ, that structure is of order 1.
    With ``columns`` = n only the first n columns are scaled (the example in a
    critic input [x, h] whose last columns are a condition's features).
    """

    def __init__(self, length_scale: float, columns: int | None = None) -> None:
        super().__init__()
        if not length_scale > 0:
            raise InvalidInput(f"length_scale: expected ℓ > 0, got {length_scale}")
        self.length_scale = float(length_scale)
        self.columns = columns

    def forward(self, x: Tensor) -> Tensor:
        if self.columns is None:
            return x / self.length_scale
        n = self.columns
        return torch.cat([x[:, :n] / self.length_scale, x[:, n:]], dim=1)

    def extra_repr(self) -> str:
        return f"length_scale={self.length_scale:g}"


class FourierFeatures(nn.Module):
    """Random Fourier features φ(x) = [cos(W x/ℓ), sin(W x/ℓ)], W ~ N(0, I): (B, D) -> (B, 2F).

    φ(x)·φ(y)/F estimates the Gaussian kernel exp(−‖x − y‖²/(2ℓ²)) (Rahimi &
    Recht 2007, "Random features for large-scale kernel machines"), so a
    network reading φ(x) varies on the length scale ℓ from its first step,
    anywhere in the input space, where an MLP reading x (or x/ℓ) resolves
    detail of size ℓ only near the origin at first and learns it slowly (Tancik
    et al. 2020, "Fourier features let networks learn high frequency functions
    in low dimensional domains"). W is a fixed buffer drawn by ``generator``.

    Args:
        in_features: D.
        n_frequencies: F, the number of random frequencies.
        length_scale: ℓ.
        generator: draws W (default: the global generator).
    """

    def __init__(
        self,
        in_features: int,
        n_frequencies: int,
        length_scale: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or n_frequencies < 1:
            raise InvalidInput(
                f"in_features, n_frequencies: expected >= 1, got {in_features}, {n_frequencies}"
            )
        if not length_scale > 0:
            raise InvalidInput(f"length_scale: expected ℓ > 0, got {length_scale}")
        w = torch.randn(n_frequencies, in_features, generator=generator) / length_scale
        self.register_buffer("frequencies", w)
        self.length_scale = float(length_scale)

    @property
    def out_features(self) -> int:
        """2F."""
        return 2 * self.frequencies.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        phase = x @ self.frequencies.T  # (B, F)
        return torch.cat([phase.cos(), phase.sin()], dim=1)

    def extra_repr(self) -> str:
        f, d = self.frequencies.shape
        return f"in_features={d}, n_frequencies={f}, length_scale={self.length_scale:g}"


def packed_shape(event_shape: tuple[int, ...], pack: int) -> tuple[int, ...]:
    """The critic's event shape when it judges ``pack`` examples jointly: (m, *event_shape).

    ``pack`` = 1 keeps ``event_shape`` itself (one example per critic input).
    """
    shape = tuple(int(s) for s in event_shape)
    return shape if pack == 1 else (int(pack), *shape)


def build_networks(
    event_shape: tuple[int, ...],
    latent_dim: int = 8,
    hidden: Sequence[int] = (128, 128, 128),
    activation: Callable[[], nn.Module] = nn.ReLU,
    pack: int = 1,
    critic_scale: float = 1.0,
    condition: ConditionSpec | None = None,
) -> tuple[Generator, Critic | ProjectionCritic]:
    """An MLP generator with a standard normal prior N(0, I_Z) and an MLP critic.

    Generator (B, Z) -> hidden… -> (B, D); critic (B, m·D) -> hidden… -> (B, 1);
    both with ``activation`` between linear layers, D = prod(event_shape). With
    ``pack`` = m > 1 the critic judges m examples jointly: its events have shape
    (m, *event_shape) (PacGAN; Lin et al. 2018, "PacGAN: The power of two
    samples in generative adversarial networks", Section 3). The
    critic's output layer starts at zero (V ≡ 0): its first steps then follow
    the objective's linear term, whereas a random start can sit near the
    wrong-signed local maximum of the gradient-penalised dual (‖∇V‖ ≈ 1 with
    E_P[V] < E_Q[V]), which training does not leave (docs/gan.md).
    ``critic_scale`` = ℓ makes the critic read x/ℓ (``InputScale``): set it to
    the size of the finest structure the critic must resolve, e.g. 3σ for
    mixtures of Gaussians of standard deviation σ (docs/gan.md, mode collapse).

    With a ``condition`` (features of width W) the generator reads [z, h];
    the critic is a ``ProjectionCritic`` for classes (φ the hidden layers,
    F = the last hidden width; Miyato & Koyama 2018) and reads [x, h]
    concatenated for a continuous condition; with a pack of m the critic's
    condition is the m examples' features side by side (m·W).
    """
    if latent_dim < 1:
        raise InvalidInput(f"latent_dim: expected >= 1, got {latent_dim}")
    if pack < 1:
        raise InvalidInput(f"pack: expected >= 1, got {pack}")
    if not critic_scale > 0:
        raise InvalidInput(f"critic_scale: expected ℓ > 0, got {critic_scale}")
    d = math.prod(event_shape)
    w = 0 if condition is None else condition.width
    generator = Generator(
        MLP(latent_dim + w, d, hidden, activation=activation),
        StandardNormal((latent_dim,)),
        event_shape,
        condition_width=w,
    )
    shape = packed_shape(event_shape, pack)
    if condition is not None and condition.is_classes:
        phi = nn.Sequential(
            MLP(pack * d, hidden[-1], hidden[:-1], activation=activation), activation()
        )
        if critic_scale != 1.0:
            phi = nn.Sequential(InputScale(critic_scale), phi)
        return generator, ProjectionCritic(phi, hidden[-1], shape, pack * w)
    mlp = MLP(pack * (d + w), 1, hidden, activation=activation, zero_last=True)
    scale = InputScale(critic_scale, columns=pack * d if w else None)
    critic = Critic(mlp if critic_scale == 1.0 else nn.Sequential(scale, mlp), shape, pack * w)
    return generator, critic
