"""Models as torch.distributions: log_prob, sample, rsample, support inside torch's own workflows.

Ground truth throughout: torch's closed-form Gaussians and mixtures, the
change-of-variables formula written out by hand, the closed-form KL of two
Gaussians, and finite differences for the pathwise gradients of ``rsample``.
Float64 (the tests' default dtype); tolerances are multiples of its epsilon
scaled by the size of the quantity, or of a Monte Carlo standard error.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.distributions import (
    AffineTransform,
    Categorical,
    ComposeTransform,
    Distribution,
    ExpTransform,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    TransformedDistribution,
    constraints,
    kl_divergence,
)

from probgen.core import (
    ConditionSpec,
    DataSpec,
    GenerativeModel,
    IntractableLikelihood,
    InvalidInput,
)
from probgen.distributions import ConditionalMixture, EightGaussians
from probgen.models import build_model
from probgen.registry import MODELS

EPS = torch.finfo(torch.float64).eps


def _gaussian(loc: list[float], tril: list[list[float]]) -> GenerativeModel:
    """The analytic GaussianModel N(loc, L Lᵀ) with the given Cholesky factor L."""
    model = MODELS.get("gaussian")(event_shape=(len(loc),))
    L = torch.tensor(tril)
    with torch.no_grad():
        model.loc.copy_(torch.tensor(loc))
        model.tril.copy_(L)
        model.log_diag.copy_(L.diagonal().log())
    return model


def _close(a: torch.Tensor, b: torch.Tensor, ulps: float = 64) -> bool:
    return bool(((a - b).abs() <= ulps * EPS * (1 + b.abs())).all())


def _p() -> GenerativeModel:
    return _gaussian([0.5, -1.0], [[1.2, 0.0], [0.4, 0.7]])


def _q() -> GenerativeModel:
    return _gaussian([-0.3, 0.2], [[0.9, 0.0], [-0.5, 1.1]])


def _torch_twin(model: GenerativeModel) -> MultivariateNormal:
    return MultivariateNormal(model.loc.detach(), scale_tril=model.scale_tril.detach())


def test_an_analytic_gaussian_is_torchs_gaussian() -> None:
    P = _p()
    p = P.as_distribution()
    assert isinstance(p, Distribution)
    assert p.event_shape == (2,) and p.batch_shape == () and p.has_rsample
    x = torch.randn(5, 3, 2)
    assert p.log_prob(x).shape == (5, 3)
    assert _close(p.log_prob(x), _torch_twin(P).log_prob(x))
    assert _close(p.entropy(), _torch_twin(P).entropy())
    assert p.support.check(x).all() and p.sample((4,)).shape == (4, 2)


def test_kl_divergence_by_monte_carlo_matches_the_closed_form() -> None:
    """KL(p‖q) = E_p[log p(x) − log q(x)] from the views vs torch's closed form."""
    P, Q = _p(), _q()
    p, q = P.as_distribution(), Q.as_distribution()
    torch.manual_seed(3)
    x = p.sample((40_000,))
    terms = p.log_prob(x) - q.log_prob(x)
    mc, stderr = terms.mean(), terms.std() / math.sqrt(len(terms))
    exact = kl_divergence(_torch_twin(P), _torch_twin(Q))
    assert stderr < 0.02 * exact  # the check below can fail
    assert abs(mc - exact) < 4 * stderr


def test_a_flow_inside_transformed_distribution_follows_the_change_of_variables() -> None:
    """y = exp(a + s ⊙ x): log p_Y(y) = log p_X(x) − Σ log s − Σ log y, x = (log y − a)/s."""
    torch.manual_seed(0)
    flow = build_model(
        "realnvp", DataSpec((2,)), train_data=torch.randn(64, 2), transforms=2, hidden=[8]
    )
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    shift, scale = torch.tensor([0.3, -0.2]), torch.tensor([0.5, 2.0])
    transform = ComposeTransform([AffineTransform(shift, scale, event_dim=1), ExpTransform()])
    prior = TransformedDistribution(flow.as_distribution(), transform)
    y = prior.sample((7,))
    assert y.shape == (7, 2) and (y > 0).all()
    x = (y.log() - shift) / scale
    by_hand = flow.log_prob(x) - scale.log().sum() - y.log().sum(-1)
    assert _close(prior.log_prob(y), by_hand, ulps=256)
    assert prior.has_rsample
    y = prior.rsample((3,))
    y.sum().backward()
    assert all(p.grad is not None for p in flow.parameters())


def test_conditions_form_a_batch_that_independent_sums_over() -> None:
    """p(x | k) of 8gaussians for k = 0…7: Independent over k is Σ_k log N(x_k; μ_k, Σ_k)."""
    law = ConditionalMixture(EightGaussians())
    view = law.as_distribution(torch.arange(8))
    assert view.batch_shape == (8,) and view.event_shape == (2,)
    components = MultivariateNormal(law.means, scale_tril=law.scale_tril)
    x = torch.randn(5, 8, 2)
    joint = Independent(view, 1)
    assert joint.event_shape == (8, 2) and joint.log_prob(x).shape == (5,)
    assert _close(joint.log_prob(x), components.log_prob(x).sum(-1), ulps=256)
    torch.manual_seed(1)
    draws = view.sample((4000,))  # (4000, 8, 2): column k drawn from p(· | k)
    stderr = draws.std(0) / math.sqrt(len(draws))
    assert ((draws.mean(0) - law.means).abs() < 4 * stderr).all()
    one = law.as_distribution(3)  # one condition: batch_shape ()
    assert one.batch_shape == () and _close(
        one.log_prob(x[0]),
        MultivariateNormal(law.means[3], scale_tril=law.scale_tril[3]).log_prob(x[0]),
    )
    marginal = MixtureSameFamily(Categorical(law.weights), components)
    assert _close(law.as_distribution().log_prob(x), marginal.log_prob(x), ulps=256)


class _Directional:
    """f(θ) = Σ rsample(n)² at a fixed seed, and its derivative along a random direction v."""

    def __init__(self, model: GenerativeModel, n: int = 5) -> None:
        self.model, self.n = model, n
        g = torch.Generator().manual_seed(7)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.v = [torch.randn(p.shape, generator=g) for p in self.params]

    def f(self) -> torch.Tensor:
        torch.manual_seed(11)
        return self.model.as_distribution(implicit=True).rsample((self.n,)).square().sum()

    def autograd(self) -> float:
        grads = torch.autograd.grad(self.f(), self.params, allow_unused=True)
        return sum(
            float((g * v).sum()) for g, v in zip(grads, self.v, strict=True) if g is not None
        )

    def finite_difference(self, h: float = 1e-6) -> float:
        with torch.no_grad():
            values = []
            for sign in (1.0, -1.0):
                for p, v in zip(self.params, self.v, strict=True):
                    p.add_(sign * h * v)
                values.append(float(self.f()))
                for p, v in zip(self.params, self.v, strict=True):
                    p.sub_(sign * h * v)
        return (values[0] - values[1]) / (2 * h)


RSAMPLED: dict[str, dict[str, Any]] = {
    "gaussian": {},
    "realnvp": {"transforms": 2, "hidden": [8]},
    "nsf": {"transforms": 1, "hidden": [8]},
    "gan": {"hidden": [8]},
    "vae": {"hidden": [8], "latent_dim": 2},
}


@pytest.mark.parametrize("name", sorted(RSAMPLED))
def test_rsample_gradients_are_the_pathwise_derivative(name: str) -> None:
    """∇_θ f · v by autograd equals the central difference (f(θ + hv) − f(θ − hv)) / 2h."""
    torch.manual_seed(0)
    model = build_model(
        name, DataSpec((2,)), train_data=torch.randn(64, 2) * 2 + 1, **RSAMPLED[name]
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    d = _Directional(model)
    exact, approx = d.autograd(), d.finite_difference()
    # central differences err by O(h²) f''' plus O(eps f / h) rounding
    assert abs(exact - approx) <= 1e-6 * (1 + abs(exact)), (exact, approx)
    assert abs(exact) > 1e-3  # the gradient reaches the parameters
    view = model.as_distribution(implicit=True)
    assert view.has_rsample and not view.sample((3,)).requires_grad


def test_a_gan_is_an_implicit_sampler_without_a_log_prob() -> None:
    gan = build_model("gan", DataSpec((2,)), hidden=[8])
    with pytest.raises(
        IntractableLikelihood, match=r"likelihood is none .*as_distribution\(implicit=True\)"
    ):
        gan.as_distribution()
    view = gan.as_distribution(implicit=True)
    assert view.sample((4,)).shape == (4, 2) and view.rsample((4,)).requires_grad
    assert view.support is not None and view.support.event_dim == 1
    with pytest.raises(NotImplementedError, match="implicit view of GAN has no log_prob"):
        view.log_prob(torch.zeros(1, 2))


@pytest.mark.parametrize(
    ("name", "options", "kind"),
    [
        ("vae", {"hidden": [8], "latent_dim": 2}, "bound"),
        ("ebm", {"hidden": [8], "train_steps": 1}, "unnormalized"),
    ],
)
def test_likelihoods_that_cannot_back_a_distribution_are_refused(name, options, kind) -> None:
    model = build_model(name, DataSpec((2,)), **options)
    with pytest.raises(IntractableLikelihood, match=f"likelihood is {kind}"):
        model.as_distribution()
    assert model.as_distribution(implicit=True).sample((2,)).shape == (2, 2)


def test_models_of_levels_have_an_integer_support() -> None:
    made = build_model("made", DataSpec((4,), levels=3), hidden=[8])
    view = made.as_distribution(validate_args=True)
    assert not view.has_rsample
    x = view.sample((6,))
    assert view.support.check(x).all() and view.log_prob(x).shape == (6,)
    with pytest.raises(ValueError, match="support"):
        view.log_prob(torch.full((1, 4), 3.0))
    with pytest.raises(NotImplementedError, match="no reparameterised sampler"):
        view.rsample()
    flow = build_model("realnvp", DataSpec((4,), levels=3), transforms=1, hidden=[8])
    assert flow.as_distribution(implicit=True).support.check(flow.sample(5)).all()


def test_a_bad_condition_gets_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="unconditional"):
        _p().as_distribution(condition=1)
    flow = build_model("maf", DataSpec((2,), condition=ConditionSpec(classes=3)), hidden=[8])
    with pytest.raises(InvalidInput, match="pass condition="):
        flow.as_distribution()
    with pytest.raises(InvalidInput, match=r"0\.\.2"):
        flow.as_distribution(torch.tensor([0, 5]))
    view = flow.as_distribution([0, 2])
    assert view.batch_shape == (2,) and view.sample((3,)).shape == (3, 2, 2)
    assert view.log_prob(torch.zeros(2)).shape == (2,)  # a value broadcasts over the batch
    assert constraints.real.check(view.sample()).all()


def test_an_estimated_likelihood_backs_a_view() -> None:
    """ESTIMATE (a Hutchinson trace; its unbiasedness is tested with the estimators) is accepted."""
    model = build_model("score_sde", DataSpec((2,)), likelihood="hutchinson", hidden=[8])
    view = model.as_distribution()
    assert view.likelihood.value == "estimate" and not view.has_rsample
