"""p(x | c) in the one protocol: condition specs, the keyword on every call, the engine on pairs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from probgen.core import ConditionSpec, DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.data.base import ArrayDataset
from probgen.evaluate.suite import evaluate_model
from probgen.models import Standardized, build_model
from probgen.models.flows import MAF
from probgen.train import ComponentConfig, RunConfig, TrainConfig, fit


class ClassGaussians(GenerativeModel):
    """p(x | c = k) = N(x; μ_k, σ² I): a learnable class-conditional law with an exact density."""

    likelihood = Likelihood.EXACT

    def __init__(self, means: Tensor, std: float = 1.0) -> None:
        super().__init__((means.shape[1],))
        self.means = nn.Parameter(means.clone())
        self.std = std
        self.condition_spec = ConditionSpec(classes=len(means))

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        c = self._condition(condition, len(x))
        z = (self._check(x) - self.means[c]) / self.std
        d = self.event_shape[0]
        return -0.5 * z.square().sum(-1) - d * math.log(self.std) - 0.5 * d * math.log(2 * math.pi)

    def sample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        c = self._condition(condition, n, expand=True)
        noise = torch.randn(n, self.event_shape[0], generator=generator, dtype=self.means.dtype)
        return (self.means[c] + self.std * noise).detach()


def _pairs(n: int, means: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(len(means), (n,), generator=g)
    return means[c] + torch.randn(n, means.shape[1], generator=g), c


@pytest.mark.parametrize(
    ("spec", "c", "message"),
    [
        (ConditionSpec(classes=3), torch.tensor([0.0, 1.0]), "expected integer class labels"),
        (
            ConditionSpec(classes=3),
            torch.tensor([0, 3]),
            r"must lie in 0\.\.2, got values in \[0, 3\]",
        ),
        (ConditionSpec(classes=3), torch.tensor([[0, 1]]), r"expected labels of shape \(2,\)"),
        (ConditionSpec(shape=(2,)), torch.zeros(2, 3), r"expected shape \(2, 2\), got \(2, 3\)"),
        (
            ConditionSpec(shape=(2,)),
            torch.tensor([[0.0, math.nan]] * 2),
            r"contains 2 non-finite value\(s\)",
        ),
        (ConditionSpec(shape=(2,)), torch.zeros(2, 2, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_conditions_get_one_line_errors(spec: ConditionSpec, c: Tensor, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        spec.check(c, 2)


def test_one_condition_is_expanded_to_every_sample() -> None:
    assert ConditionSpec(classes=4).expand(3, 5).tolist() == [3] * 5
    assert ConditionSpec(shape=(2,)).expand([1.0, 2.0], 3).tolist() == [[1.0, 2.0]] * 3
    with pytest.raises(InvalidInput, match="exactly one"):
        ConditionSpec(classes=3, shape=(1,))


def test_the_condition_keyword_on_unconditional_and_conditional_models() -> None:
    flow, x = MAF((2,)), torch.zeros(4, 2)
    flow.log_prob(x, condition=None)  # every model takes the keyword
    for call in (
        lambda: flow.log_prob(x, condition=torch.zeros(4, dtype=torch.long)),
        lambda: flow.sample(4, condition=1),
        lambda: flow.loss(x, condition=torch.zeros(4, dtype=torch.long)),
    ):
        with pytest.raises(InvalidInput, match="MAF is unconditional"):
            call()
    model = ClassGaussians(torch.eye(2))
    with pytest.raises(
        InvalidInput, match=r"models p\(x \| c\) with c 2 classes .* pass condition"
    ):
        model.log_prob(x)
    wrapped = build_model("maf", DataSpec((2,)), train_data=torch.randn(50, 2))
    with pytest.raises(InvalidInput, match="MAF is unconditional"):
        wrapped.log_prob(x, condition=torch.zeros(4, dtype=torch.long))


def test_conditional_sampling_follows_each_class() -> None:
    means = torch.tensor([[-4.0, 0.0], [4.0, 1.0]])
    model = ClassGaussians(means)
    for k in range(2):
        draws = model.sample(20_000, condition=k, generator=torch.Generator().manual_seed(k))
        error = (draws.mean(0) - means[k]).abs().max().item()
        assert error < 4 / math.sqrt(20_000)


def test_the_engine_trains_on_pairs_to_the_class_means(tmp_path) -> None:
    """The maximum-likelihood μ_k of N(μ_k, I) is the class mean of the training pairs."""
    means = torch.tensor([[-2.0, 0.0], [0.0, 3.0], [2.0, -1.0]])
    (x, c), (xv, cv) = _pairs(600, means, 0), _pairs(100, means, 1)
    spec = DataSpec((2,), condition=ConditionSpec(classes=3))

    class FullBatch(ArrayDataset):
        """Every training batch is every training pair: Adam minimises the exact NLL."""

        def draw(self, split, batch_size, generator):
            return self.split(split), self.conditions(split)

    data = FullBatch(x, xv, xv, spec, conditions=(c, cv, cv))
    config = RunConfig(
        model=ComponentConfig("gaussian"),
        data=ComponentConfig("pairs"),
        train=TrainConfig(
            steps=600, batch_size=600, lr=0.05, log_every=600, device="cpu",
            early_stopping=False, lr_schedule="cosine",
        ),
    )  # fmt: skip
    model = ClassGaussians(torch.zeros(3, 2))
    result = fit(config, tmp_path, model=model, dataset=data, progress=False)
    expected = torch.stack([x[c == k].mean(0) for k in range(3)])
    torch.testing.assert_close(result.model.means.detach(), expected, atol=1e-6, rtol=0)
    results = evaluate_model(result.model, data, n_samples=100)
    assert {"nll", "classifier_accuracy", "classifier_ece", "classifier_nll"} <= set(results)


def test_a_continuous_condition_is_standardised_like_data() -> None:
    spec = DataSpec((2,), condition=ConditionSpec(shape=(1,)))

    class Echo(ClassGaussians):
        """Reads a continuous condition and reports what it was given."""

        def __init__(self) -> None:
            super().__init__(torch.zeros(2, 2))
            self.condition_spec = ConditionSpec(shape=(1,))
            self.seen: list[Tensor] = []

        def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
            self.seen.append(self._condition(condition, len(x)))
            return -self._check(x).square().sum(-1)

    inner = Echo()
    c = torch.tensor([[10.0], [30.0]])
    model = Standardized(
        inner, torch.zeros(2), torch.ones(2),
        condition_shift=torch.tensor([20.0]), condition_scale=torch.tensor([10.0]),
    )  # fmt: skip
    assert model.condition_spec == spec.condition
    model.log_prob(torch.zeros(2, 2), condition=c)
    assert inner.seen[-1].tolist() == [[-1.0], [1.0]]


def test_an_unnormalized_model_of_a_continuous_condition_is_evaluated_without_log_z() -> None:
    from probgen.data.toy import ToyDataset

    data = ToyDataset("two_moons", condition="rotation", n_test=64, n_validation=64)
    x, c = data.fitting_sample(n=256)
    model = build_model("ebm", data.spec, train_data=x, train_conditions=c, hidden=(8,))
    results = evaluate_model(model, data, n_samples=64)
    assert "one AIS run per row" in results.skipped["nll"]
    assert "sliced_wasserstein" in results
