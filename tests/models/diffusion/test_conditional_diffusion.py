"""Conditional diffusion: condition features, dropout, classifier-free and classifier guidance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.models.diffusion import (
    DDPM,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    Conditioned,
    DDPMChain,
    Diffusion,
    ExactGaussianDenoiser,
    ExactGaussianMixtureDenoiser,
    NoisePrediction,
    PerClassDenoiser,
    ScoreSDE,
    VariancePreserving,
    condition_features,
)
from probgen.nn.time_embedding import TimeMLP

CLASSES = ConditionSpec(classes=3)
MEANS = ((1.0, -0.5), (-1.0, 0.5), (0.0, 1.5))
SIGMA = ((1.0, 0.6), (0.6, 0.8))
SAMPLER_NAMES = (
    "ancestral",
    "ddim",
    "euler_maruyama",
    "predictor_corrector",
    "probability_flow",
    "ncsn",
)


def small_model(p_uncond: float = 0.1, condition: ConditionSpec = CLASSES) -> DDPM:
    spec = DataSpec((2,), condition=condition)
    model = DDPM.for_data(spec, chain_steps=50, sample_steps=5, hidden=(16,), p_uncond=p_uncond)
    nn.init.normal_(model.denoiser.net.net[-1].weight, std=0.1)  # leave the zero start
    return model


def exact_model(process=None) -> Diffusion:
    process = process if process is not None else DDPMChain.linear(100)
    parts = [ExactGaussianDenoiser(process, torch.tensor(m), torch.tensor(SIGMA)) for m in MEANS]
    mixture = ExactGaussianMixtureDenoiser(parts, torch.ones(3) / 3)
    return Diffusion((2,), PerClassDenoiser(parts, mixture), condition=CLASSES)


class _Spy(nn.Module):
    """A conditional 'network' that records the condition features it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor, t: Tensor, condition: Tensor) -> Tensor:
        self.seen.append(condition)
        return self.scale * x


@pytest.mark.parametrize(
    ("build", "condition"),
    [
        (lambda s: DDPM.for_data(s, chain_steps=20, hidden=(16,)), torch.tensor([0, 2, 1])),
        (lambda s: ScoreSDE.for_data(s, hidden=(16,)), torch.tensor([0, 2, 1])),
        (lambda s: ScoreSDE.for_data(s, hidden=(16,)), torch.randn(3, 2)),
    ],
    ids=["ddpm-classes", "sde-classes", "sde-vector"],
)
def test_conditional_training_is_finite_and_reaches_the_condition_path(build, condition):
    """loss(x, condition=c) is finite and its gradient reaches the condition embedding W."""
    spec_c = CLASSES if not condition.is_floating_point() else ConditionSpec(shape=(2,))
    model = build(DataSpec((2,), condition=spec_c))
    assert model.condition_spec == spec_c and model.unconditional_mode
    nn.init.normal_(model.denoiser.net.net[-1].weight, std=0.1)
    loss = model.loss(torch.randn(3, 2), condition=condition)
    loss.backward()
    grad = model.denoiser.net.condition.linear.weight.grad
    assert torch.isfinite(loss) and grad is not None and grad.abs().sum() > 0


def test_conditional_unet_on_images():
    """(1, 8, 8) images with 3 classes: the U-Net reads the condition; finite loss and samples."""
    spec = DataSpec((1, 8, 8), levels=17, condition=CLASSES)
    model = DDPM.for_data(spec, chain_steps=10, sample_steps=3, likelihood="vlb")
    x = torch.randint(0, 17, (2, 1, 8, 8)).to(torch.get_default_dtype())
    loss = model.loss(x, condition=torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss) and model.denoiser.net.condition.linear.weight.grad is not None
    samples = model.sample(2, condition=1, guidance=1.0)
    assert samples.shape == (2, 1, 8, 8) and samples.max() <= 16


def test_condition_dropout_rate_is_respected():
    """Each row is null with probability p_uncond: the null fraction of 20000 rows within
    4 s.e. of p; the kept rows carry their one-hot class; condition=None makes every row null."""
    spy, p, n = _Spy(), 0.3, 20_000
    model = Diffusion((2,), NoisePrediction(spy, VariancePreserving()), condition=CLASSES,
                      p_uncond=p)  # fmt: skip
    labels = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    model.loss(torch.randn(n, 2), condition=labels)
    h = spy.seen[-1]
    null = h[:, -1] == 1
    assert abs(null.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(h[~null, :3].argmax(1), labels[~null]) and (h[null, :3] == 0).all()
    model.loss(torch.randn(5, 2))
    assert (spy.seen[-1][:, -1] == 1).all()


def test_classifier_free_guidance_is_the_formula():
    """ε̃ = (1 + w) ε̂(x, c) − w ε̂(x, ∅), and the score and x̂_0 follow from ε̃ (linear)."""
    model, w = small_model(), 1.7
    x, t = torch.randn(6, 2), torch.rand(6) * 0.9 + 0.05
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    h_c = condition_features(CLASSES, labels, 6, x)
    h_0 = condition_features(CLASSES, None, 6, x)
    assert torch.equal(h_0, torch.tensor([[0.0, 0.0, 0.0, 1.0]]).expand(6, 4))
    cond, null = Conditioned(model.denoiser, h_c), Conditioned(model.denoiser, h_0)
    guided = ClassifierFreeGuidance(cond, null, w)(x, t)
    e_c, e_0 = model.denoiser(x, t, condition=h_c).noise, model.denoiser(x, t, condition=h_0).noise
    assert not torch.allclose(e_c, e_0)
    torch.testing.assert_close(guided.noise, (1 + w) * e_c - w * e_0)
    s_c, s_0 = cond(x, t).score, null(x, t).score
    torch.testing.assert_close(guided.score, (1 + w) * s_c - w * s_0)
    torch.testing.assert_close(guided.data, (1 + w) * cond(x, t).data - w * null(x, t).data)
    assert ClassifierFreeGuidance(cond, null, w).evaluations == 2


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_accepts_guidance_and_counts_both_evaluations(name):
    """With guidance every denoiser call evaluates the network at c and at ∅: twice the
    evaluations of the unguided run for the fixed-step samplers; classifier guidance adds
    no network evaluation."""
    model = small_model()
    g = torch.Generator
    plain = model.run_sampler(4, 1, name, 4, g().manual_seed(0))
    guided = model.run_sampler(4, 1, name, 4, g().manual_seed(0), guidance=2.0)
    assert guided.samples.shape == (4, 2) and torch.isfinite(guided.samples).all()
    assert not torch.equal(plain.samples, guided.samples)
    if name != "probability_flow":  # adaptive steps: the count depends on the field
        assert guided.n_evaluations == 2 * plain.n_evaluations
    else:
        assert guided.n_evaluations % 2 == 0 and guided.n_evaluations >= 2 * 6
    classified = model.run_sampler(
        4, 1, name, 4, g().manual_seed(0), classifier=lambda x, t: torch.log_softmax(x, -1)
    )
    if name != "probability_flow":
        assert classified.n_evaluations == plain.n_evaluations


def test_no_condition_means_the_unconditional_mode():
    """condition=None scores and samples under the null condition ∅ (unconditional_mode)."""
    model = small_model()
    x = torch.randn(3, 2)
    null = Conditioned(model.denoiser, condition_features(CLASSES, None, 3, x))
    expected = model.likelihood_method(null, x, None, None)
    torch.testing.assert_close(model.log_prob(x), expected)
    assert not torch.allclose(model.log_prob(x), model.log_prob(x, condition=torch.tensor([0] * 3)))
    a = model.sample(3, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    x1 = model.process.prior_sample((3, 2), g, like=x)
    b = model.sampler.run(null, x1, model.steps, generator=g)
    torch.testing.assert_close(a, b.samples)


def test_conditional_log_prob_is_the_class_model_log_prob():
    """log p(x | c) of the per-class exact denoiser is, row by row, the ODE log-likelihood of
    that class's own exact denoiser (checked against log N(x; μ, Σ) in the theory tests),
    within 1e-3 nats (the adaptive solver's steps depend on the batch)."""
    model = exact_model(VariancePreserving())
    x = torch.tensor([[1.0, -0.5], [0.0, 0.0], [-1.0, 1.0]])
    labels = torch.tensor([0, 1, 2])
    per_class = torch.cat(
        [
            Diffusion((2,), model.denoiser.table[k]).log_prob(x[i : i + 1])
            for i, k in enumerate(labels.tolist())
        ]
    )
    assert (model.log_prob(x, condition=labels) - per_class).abs().max() < 1e-3
    unconditional = Diffusion((2,), model.denoiser.table[3]).log_prob(x)
    assert (model.log_prob(x) - unconditional).abs().max() < 1e-3


def test_conditions_and_guidance_are_validated():
    model = small_model()
    with pytest.raises(InvalidInput, match=r"class labels must lie in 0\.\.2"):
        model.sample(2, condition=3)
    with pytest.raises(InvalidInput, match="guidance: expected a scale"):
        model.sample(2, condition=1, guidance=-1.0)
    no_null = small_model(p_uncond=0.0)
    assert not no_null.unconditional_mode
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        no_null.sample(2)
    with pytest.raises(InvalidInput, match="needs a conditional model with an unconditional"):
        no_null.sample(2, condition=1, guidance=1.0)
    unconditional = DDPM.for_data(DataSpec((2,)), chain_steps=10, hidden=(8,))
    with pytest.raises(InvalidInput, match="is unconditional"):
        unconditional.sample(2, condition=1)
    with pytest.raises(InvalidInput, match="classifier_labels"):
        unconditional.sample(2, classifier=lambda x, t: torch.log_softmax(x, -1))
    with pytest.raises(InvalidInput, match=r"must lie in 0\.\.1"):
        unconditional.sample(
            2, steps=2, classifier=lambda x, t: torch.log_softmax(x, -1), classifier_labels=2
        )
    with pytest.raises(InvalidInput, match="p_uncond"):
        small_model(p_uncond=1.0)
    with pytest.raises(InvalidInput, match="taking condition="):
        Diffusion((2,), ExactGaussianDenoiser(VariancePreserving(), torch.zeros(2), torch.eye(2)),
                  condition=CLASSES)  # fmt: skip


def test_for_data_builds_the_conditional_model_when_the_data_have_a_condition():
    spec = DataSpec((2,), condition=CLASSES)
    assert DDPM.for_data(spec, chain_steps=10).condition_spec == CLASSES
    assert DDPM.for_data(spec, chain_steps=10, conditional=False).condition_spec is None
    with pytest.raises(InvalidInput, match="conditional=True needs data with a condition"):
        ScoreSDE.for_data(DataSpec((2,)), conditional=True)
    net = DDPM.for_data(spec, chain_steps=10).denoiser.net
    assert isinstance(net, TimeMLP) and net.condition.features == CLASSES.width + 1


def test_classifier_guidance_adds_the_scaled_log_likelihood_gradient():
    """ŝ + s ∇_x log p(y | x_t): against autograd of the exact mixture posterior."""
    process = VariancePreserving()
    parts = [ExactGaussianDenoiser(process, torch.tensor(m), torch.tensor(SIGMA)) for m in MEANS]
    mixture = ExactGaussianMixtureDenoiser(parts, torch.ones(3) / 3)
    x, t = torch.randn(5, 2, requires_grad=True), torch.full((5,), 0.3)
    labels = torch.tensor([0, 1, 2, 0, 1])
    log_post = mixture.class_log_posterior(x, t).gather(1, labels[:, None]).sum()
    (grad,) = torch.autograd.grad(log_post, x)
    guided = ClassifierGuidance(mixture, mixture.class_log_posterior, labels, 2.5)
    with torch.no_grad():
        score = guided(x.detach(), t).score
    torch.testing.assert_close(score, mixture(x.detach(), t).score + 2.5 * grad)
