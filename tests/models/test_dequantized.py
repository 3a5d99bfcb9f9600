"""Dequantized: densities on [0, 1)^D as models of integer data, against exact bin masses."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from torch import Tensor

from probgen.core import (
    DataSpec,
    GenerativeModel,
    IntractableLikelihood,
    InvalidInput,
    Likelihood,
)
from probgen.data.dequantize import uniform_dequantize
from probgen.evaluate.likelihood import bits_per_dim
from probgen.models import Dequantized, build_model
from probgen.models.autoregressive import MixtureOfGaussians, PixelCNN
from probgen.models.gaussian import GaussianModel
from probgen.registry import MODELS


class BinConstant(GenerativeModel):
    """p(y) = K^D P(⌊K y⌋) on [0, 1)^D: constant on every bin, so the bound is tight."""

    likelihood = Likelihood.EXACT

    def __init__(self, probs: Tensor) -> None:
        super().__init__((probs.dim(),))
        self.levels = probs.shape[0]
        self.register_buffer("probs", probs)

    def log_mass(self, x: Tensor) -> Tensor:
        """log P(x) for integer x (B, D)."""
        return self.probs[tuple(x.long().T)].log()

    def log_prob(self, y: Tensor) -> Tensor:
        x = (self._check(y) * self.levels).floor().clamp(0, self.levels - 1)
        return self.log_mass(x) + self.event_shape[0] * math.log(self.levels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        flat = torch.multinomial(self.probs.flatten(), n, replacement=True, generator=generator)
        x = torch.stack(torch.unravel_index(flat, self.probs.shape), dim=1)
        return uniform_dequantize(x.to(self.probs.dtype), self.levels, generator)


class Kumaraswamy(GenerativeModel):
    """Independent Kumaraswamy(a_d, b_d) entries on [0, 1): not constant on any bin.

    p(y) = a b y^{a-1} (1 - y^a)^{b-1}, F(y) = 1 - (1 - y^a)^b (Kumaraswamy 1980).
    """

    likelihood = Likelihood.EXACT

    def __init__(self, a: Tensor, b: Tensor) -> None:
        super().__init__(a.shape)
        self.register_buffer("a", a)
        self.register_buffer("b", b)

    def log_prob(self, y: Tensor) -> Tensor:
        a, b = self.a, self.b
        y = self._check(y)
        return (a.log() + b.log() + (a - 1) * y.log() + (b - 1) * torch.log1p(-(y**a))).sum(-1)

    def cdf(self, y: Tensor) -> Tensor:
        return 1 - (1 - y.clamp(0, 1) ** self.a) ** self.b

    def log_mass(self, x: Tensor, levels: int) -> Tensor:
        """log P(x) = Σ_d log(F((x_d + 1)/K) - F(x_d/K)), the exact bin masses."""
        return (self.cdf((x + 1) / levels) - self.cdf(x / levels)).log().sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(n, *self.event_shape, generator=generator, dtype=self.a.dtype)
        return (1 - (1 - u) ** (1 / self.b)) ** (1 / self.a)

    def expected_log_density(self, x: Tensor, levels: int) -> Tensor:
        """E_u[log p((x + u)/K)] by adaptive quadrature over u ∈ [0, 1], per entry summed."""
        out = []
        for row in x.tolist():
            total = 0.0
            for d, value in enumerate(row):
                a, b = self.a[d].item(), self.b[d].item()

                def log_p(u: float, a: float = a, b: float = b, v: float = value) -> float:
                    y = (v + u) / levels
                    return math.log(a * b) + (a - 1) * math.log(y) + (b - 1) * math.log1p(-(y**a))

                total += integrate.quad(log_p, 0.0, 1.0, epsabs=1e-13, epsrel=1e-13)[0]
            out.append(total)
        return torch.tensor(out)


def grid(levels: int, dim: int) -> Tensor:
    """Every x ∈ {0, …, K-1}^D, (K^D, D)."""
    axes = torch.meshgrid(*[torch.arange(levels, dtype=torch.float64)] * dim, indexing="ij")
    return torch.stack([t.flatten() for t in axes], dim=1)


K = 4


def kumaraswamy() -> Kumaraswamy:
    """Kumaraswamy(2, 5) × Kumaraswamy(1.5, 2) on [0, 1)^2, in the test's float64."""
    return Kumaraswamy(torch.tensor([2.0, 1.5]), torch.tensor([5.0, 2.0]))


def test_bin_constant_density_gives_the_exact_log_mass_for_every_draw() -> None:
    probs = torch.rand(K, K) + 0.1
    inner = BinConstant(probs / probs.sum())
    model = Dequantized(inner, K)
    x = grid(K, 2).repeat(50, 1)  # 50 dequantization draws of every cell
    torch.testing.assert_close(model.log_prob(x), inner.log_mass(x), rtol=0, atol=1e-12)


def test_log_prob_averages_to_the_quadrature_bound_below_the_exact_log_mass() -> None:
    inner = kumaraswamy()
    model = Dequantized(inner, K)
    x = grid(K, 2)
    draws = 4000
    values = model.log_prob(x.repeat(draws, 1)).reshape(draws, len(x))  # (draws, K^D)
    mean, se = values.mean(0), values.std(0) / math.sqrt(draws)
    bound = inner.expected_log_density(x, K) - 2 * math.log(K)
    exact = inner.log_mass(x, K)
    assert ((mean - bound).abs() < 4 * se).all(), (mean - bound) / se
    assert (bound < exact).all()  # Jensen, strict: p is not constant on any bin
    assert (mean < exact + 4 * se).all()
    # the gap is resolved by the Monte Carlo estimate, so the comparison above has power
    assert ((exact - bound) > 5 * se).sum() >= len(x) // 2


def test_samples_are_integers_with_the_bin_masses_of_the_density() -> None:
    inner = kumaraswamy()
    model = Dequantized(inner, K)
    n = 20_000
    x = model.sample(n, generator=torch.Generator().manual_seed(1))
    assert x.shape == (n, 2) and x.dtype == torch.float64
    assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= K - 1
    cells = grid(K, 2)
    counts = (x[:, None, :] == cells[None]).all(-1).sum(0).numpy()
    expected = n * inner.log_mass(cells, K).exp().numpy()
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    uniform = torch.full((len(cells),), n / len(cells)).numpy()
    assert stats.chisquare(counts, uniform).pvalue < 1e-6  # the test tells densities apart


def test_samples_outside_the_unit_cube_fall_in_the_end_levels() -> None:
    inner = GaussianModel((1,))
    with torch.no_grad():
        inner.loc.fill_(0.5)  # N(0.5, 1): most mass outside [0, 1)
    levels, n = 5, 20_000
    x = Dequantized(inner, levels).sample(n, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, x.round()) and x.min() == 0 and x.max() == levels - 1
    edges = [-math.inf, *[k / levels for k in range(1, levels)], math.inf]
    expected = n * torch.tensor(stats.norm.cdf(edges, loc=0.5)).diff().numpy()
    counts = torch.bincount(x.flatten().long(), minlength=levels).numpy()
    assert stats.chisquare(counts, expected).pvalue > 1e-3


@settings(max_examples=20, deadline=None)
@given(
    levels=st.integers(2, 6),
    dim=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_bin_constant_bound_is_exact_and_dequantization_inverts(
    levels: int, dim: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand((levels,) * dim, generator=g, dtype=torch.float64) + 0.05
    inner = BinConstant(probs / probs.sum())
    model = Dequantized(inner, levels)
    x = inner.sample(64, generator=g).mul(levels).floor()
    torch.testing.assert_close(model.log_prob(x, generator=g), inner.log_mass(x))
    assert torch.equal((model.dequantize(x, g) * levels).floor(), x)


def test_bits_per_dim_of_a_uniform_density_is_log2_levels() -> None:
    levels, dim = 17, 3
    model = Dequantized(BinConstant(torch.full((levels,) * dim, levels**-dim)), levels)
    x = torch.randint(0, levels, (100, dim)).double()
    bpd = bits_per_dim(model, x, levels=levels, dequantized=False)
    assert bpd.value == pytest.approx(math.log2(levels), abs=1e-12)
    assert bpd.kind == "bound"


@pytest.mark.parametrize(
    ("inner", "wrapped"),
    [
        (Likelihood.EXACT, Likelihood.BOUND),
        (Likelihood.ESTIMATE, Likelihood.BOUND),
        (Likelihood.BOUND, Likelihood.BOUND),
        (Likelihood.UNNORMALIZED, Likelihood.UNNORMALIZED),
        (Likelihood.NONE, Likelihood.NONE),
    ],
)
def test_likelihood_label(inner: Likelihood, wrapped: Likelihood) -> None:
    model = BinConstant(torch.full((3,), 1 / 3))
    model.likelihood = inner
    assert Dequantized(model, 3).likelihood is wrapped


def test_no_likelihood_stays_intractable() -> None:
    gan = build_model("gan", DataSpec((2,), levels=4), hidden=(8,), latent_dim=2)
    assert isinstance(gan, Dequantized) and gan.likelihood is Likelihood.NONE
    with pytest.raises(IntractableLikelihood):
        gan.log_prob(torch.zeros(3, 2))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (
            torch.tensor([[0.0, 4.0]]),
            r"expected integer values in \{0, …, 3\}, got values in \[0, 4\]",
        ),
        (torch.tensor([[-1.0, 2.0]]), r"got values in \[-1, 2\]$"),
        (torch.tensor([[0.5, 2.0]]), "with non-integers"),
        (torch.tensor([[0, 2]]), "expected a floating-point tensor, got torch.int64"),
        (torch.zeros(2, 3), r"expected shape \(B, 2\), got \(2, 3\)"),
    ],
)
def test_invalid_input(x: Tensor, match: str) -> None:
    model = Dequantized(kumaraswamy(), K)
    with pytest.raises(InvalidInput, match=match):
        model.log_prob(x)
    with pytest.raises(InvalidInput, match=match):
        model.loss(x)


def test_constructor_rejects_bad_levels_and_models_of_levels() -> None:
    with pytest.raises(InvalidInput, match="levels an integer >= 2, got 1"):
        Dequantized(kumaraswamy(), 1)
    with pytest.raises(InvalidInput, match="PixelCNN already defines probabilities"):
        Dequantized(PixelCNN((1, 4, 4), levels=4, hidden=4, layers=1), 4)


def test_loss_is_the_inner_loss_on_dequantized_data_for_every_player() -> None:
    spec = DataSpec((2,), levels=K)
    gan = build_model("gan", spec, hidden=(8,), latent_dim=2)
    assert set(gan.players()) == {"generator", "critic"}
    assert all(
        p is q for p, q in zip(gan.players()["critic"], gan.model.critic.parameters(), strict=True)
    )
    x = torch.randint(0, K, (16, 2)).double()
    for player in ("generator", "critic"):
        torch.manual_seed(3)
        got = gan.loss(x, player)
        torch.manual_seed(3)
        want = gan.model.loss(uniform_dequantize(x, K), player)
        torch.testing.assert_close(got, want)
    inner = kumaraswamy()
    torch.manual_seed(4)
    got = Dequantized(inner, K).loss(x)
    torch.manual_seed(4)
    torch.testing.assert_close(got, -inner.log_prob(uniform_dequantize(x, K)).mean())


WRAPPED = {"gaussian", "realnvp", "maf", "nsf", "glow", "ensemble"} | {
    "gan", "fgan", "wgan", "wgan_gp", "ebm",
}  # fmt: skip
"""Density models and samplers of continuous data (an ensemble of MAFs too): dequantized."""
OWN_LEVELS = {"made", "pixelcnn", "vae", "ddpm", "score_sde", "flow_matching"}
"""Models that define probabilities over the 17 levels themselves."""


@pytest.mark.parametrize("name", MODELS.names())
def test_build_model_dequantizes_exactly_the_density_models(name: str) -> None:
    spec = DataSpec((1, 8, 8), levels=17)
    try:
        model = build_model(name, spec)
    except InvalidInput:
        pytest.skip(f"{name} does not model {spec}")
    assert name in WRAPPED | OWN_LEVELS, f"classify the new model {name!r} in this test"
    assert isinstance(model, Dequantized) == (name in WRAPPED)
    assert model.handles_levels
    if name in WRAPPED:
        assert type(model.model) is MODELS.get(name)
        x = model.sample(3)
        assert x.shape == (3, 1, 8, 8) and torch.equal(x, x.round())
        assert x.min() >= 0 and x.max() <= 16
    if name not in {"pixelcnn"}:  # the one family here that needs levels
        assert not isinstance(build_model(name, DataSpec((1, 8, 8))), Dequantized)


def test_build_model_follows_the_chosen_decoder_or_conditional() -> None:
    spec = DataSpec((1, 4, 4), levels=5)
    small = {"hidden": (8,), "channels": (4, 4), "latent_dim": 2}
    assert not isinstance(build_model("vae", spec, **small), Dequantized)
    assert isinstance(build_model("vae", spec, decoder="gaussian", **small), Dequantized)
    assert not isinstance(build_model("made", spec, hidden=(8,)), Dequantized)
    mog = build_model("made", spec, hidden=(8,), conditional=MixtureOfGaussians(2))
    assert isinstance(mog, Dequantized) and mog.likelihood is Likelihood.BOUND


def test_training_and_comparison_build_through_build_model() -> None:
    from probgen.compare.config import applicable_models
    from probgen.train.build import build
    from probgen.train.config import ComponentConfig, RunConfig

    config = RunConfig(
        model=ComponentConfig("realnvp", {"transforms": 1, "hidden": [8]}),
        data=ComponentConfig("digits"),
    )
    model, dataset = build(config)
    assert isinstance(model, Dequantized) and model.levels == dataset.spec.levels == 17
    x = dataset.split("test")[:4]
    assert model.log_prob(x).shape == (4,)
    assert "realnvp" in applicable_models(dataset.spec)
