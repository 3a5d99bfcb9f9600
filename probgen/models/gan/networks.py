"""The two players of an adversarial game: a generator G_θ(z) with its prior p(z), a critic V_ψ."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput, check_input
from probgen.distributions import Distribution, StandardNormal
from probgen.nn.mlp import MLP
from probgen.tensors import flatten_events

__all__ = [
    "Critic",
    "FourierFeatures",
    "Generator",
    "InputScale",
    "build_networks",
    "packed_shape",
]


class Generator(nn.Module):
    """An implicit sampler x = G_θ(z), z ~ p(z): a push-forward with no tractable density.

    The network maps latent vectors (B, Z) to (B, D) with D = prod(event_shape);
    its output is reshaped to (B, *event_shape), so the same class serves points,
    images and sequences.

    Args:
        network: module (B, Z) -> (B, D).
        prior: p(z), a distribution over (Z,) with exact ``sample``; its
            buffers set the dtype and device of the noise.
        event_shape: shape of one generated example.

    Reference: Goodfellow et al. 2014, "Generative Adversarial Nets", Section 3.
    """

    def __init__(
        self, network: nn.Module, prior: Distribution, event_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        if len(prior.event_shape) != 1:
            raise InvalidInput(
                f"prior: expected events of shape (Z,), got {tuple(prior.event_shape)}"
            )
        self.network = network
        self.prior = prior
        self.event_shape = tuple(int(s) for s in event_shape)

    @property
    def latent_dim(self) -> int:
        """Z, the size of the latent vector."""
        return self.prior.event_shape[0]

    def forward(self, z: Tensor) -> Tensor:
        """G_θ(z): (B, Z) -> (B, *event_shape)."""
        z = check_input(z, self.prior.event_shape, name="z")
        return self.network(z).reshape(len(z), *self.event_shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """x = G_θ(z), z ~ p(z) drawn by ``generator``: (n, *event_shape), differentiable in θ."""
        return self(self.prior.sample(n, generator=generator))


class Critic(nn.Module):
    """The critic's raw output V_ψ(x) ∈ ℝ, one number per example: (B, *event_shape) -> (B,).

    What V means is set by the game's objective: for an f-GAN the critic's
    value is T(x) = g_f(V(x)) (for the GAN, V is the logit of D(x) = σ(V(x)));
    for a Wasserstein GAN, V itself is the 1-Lipschitz potential.

    Args:
        network: module (B, D) -> (B, 1) acting on flattened examples.
        event_shape: shape of one example.

    Reference: Nowozin, Cseke & Tomioka 2016, "f-GAN", Section 3.
    """

    def __init__(self, network: nn.Module, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.network = network
        self.event_shape = tuple(int(s) for s in event_shape)

    def forward(self, x: Tensor) -> Tensor:
        """V_ψ(x): (B, *event_shape) -> (B,)."""
        return self.network(flatten_events(x)).reshape(len(x))


class InputScale(nn.Module):
    """x ↦ x / ℓ: expresses the input in units of the length scale ℓ, (B, D) -> (B, D).

    A network with PyTorch's default initialisation varies on input scales of
    order 1 and learns finer detail slowly (spectral bias; Rahaman et al. 2019,
    "On the spectral bias of neural networks"). A critic that must resolve
    structure of size ℓ ≪ 1 (modes of standard deviation σ, ℓ ≈ 3σ) therefore
    starts blind to it; read in units of ℓ, that structure is of order 1.
    """

    def __init__(self, length_scale: float) -> None:
        super().__init__()
        if not length_scale > 0:
            raise InvalidInput(f"length_scale: expected ℓ > 0, got {length_scale}")
        self.length_scale = float(length_scale)

    def forward(self, x: Tensor) -> Tensor:
        return x / self.length_scale

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
) -> tuple[Generator, Critic]:
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
    """
    if latent_dim < 1:
        raise InvalidInput(f"latent_dim: expected >= 1, got {latent_dim}")
    if pack < 1:
        raise InvalidInput(f"pack: expected >= 1, got {pack}")
    if not critic_scale > 0:
        raise InvalidInput(f"critic_scale: expected ℓ > 0, got {critic_scale}")
    d = math.prod(event_shape)
    generator = Generator(
        MLP(latent_dim, d, hidden, activation=activation),
        StandardNormal((latent_dim,)),
        event_shape,
    )
    mlp = MLP(pack * d, 1, hidden, activation=activation, zero_last=True)
    critic = Critic(
        mlp if critic_scale == 1.0 else nn.Sequential(InputScale(critic_scale), mlp),
        packed_shape(event_shape, pack),
    )
    return generator, critic
