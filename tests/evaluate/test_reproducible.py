"""``evaluate_model`` is reproducible: one seed, the same numbers bit for bit; another, others.

Each family here draws noise inside ``log_prob`` (a dequantized flow draws u, a
VAE draws z ~ q(z|x), a diffusion model's Hutchinson trace draws probes), so a
``log_prob`` that ignored the evaluation's generator would give other numbers
on a second evaluation with the same seed.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from probgen.core import GenerativeModel, Likelihood, call_log_prob
from probgen.data.base import Dataset
from probgen.data.digits import Digits
from probgen.data.toy import ToyDataset
from probgen.evaluate.suite import evaluate_model
from probgen.models import build_model

MEASURED = {"sampling_seconds"}  # wall time, the one result that is not a function of the seed


def trained(name: str, dataset: Dataset, steps: int = 20, **options: object) -> GenerativeModel:
    """``name`` built for ``dataset`` and trained ``steps`` Adam steps (seeded)."""
    torch.manual_seed(0)
    model = build_model(name, dataset.spec, **options)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(dataset.batch("train", 64, g)).backward()
        optimizer.step()
    return model.eval()


def evaluation(model: GenerativeModel, dataset: Dataset, seed: int) -> dict[str, object]:
    results = evaluate_model(
        model,
        dataset,
        n_samples=200,
        generator=torch.Generator().manual_seed(seed),
        max_examples=40,
    )
    return {k: v for k, v in results.items() if k not in MEASURED}


CASES = {
    "dequantized flow on digits": lambda: (Digits(), "realnvp", {"hidden": (16,)}),
    "vae": lambda: (ToyDataset("8gaussians", n_test=200), "vae", {"hidden": (16,)}),
    "diffusion (hutchinson)": lambda: (
        ToyDataset("8gaussians", n_test=200),
        "ddpm",
        {"chain_steps": 20, "sample_steps": 20, "likelihood": "hutchinson", "hidden": (16,)},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_ones(case: str) -> None:
    dataset, name, options = CASES[case]()
    model = trained(name, dataset, **options)
    assert model.likelihood in (Likelihood.BOUND, Likelihood.ESTIMATE)  # log_prob draws noise
    first, again, other = (evaluation(model, dataset, seed) for seed in (1, 1, 2))
    assert first == again  # Estimates and counts compare exactly: bit for bit
    assert first["nll"] != other["nll"]  # the likelihood's own draws follow the seed


def test_call_log_prob_passes_the_generator_only_to_a_log_prob_that_takes_it() -> None:
    class OneArgument(GenerativeModel):  # the protocol without the keyword
        likelihood = Likelihood.EXACT

        def log_prob(self, x: Tensor) -> Tensor:
            return -x.square().sum(dim=1)

        def sample(self, n: int, **options: object) -> Tensor:
            return torch.zeros(n, 2)

    class Noisy(OneArgument):
        def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
            return super().log_prob(x) + torch.randn(len(x), generator=generator)

    x = torch.ones(3, 2)
    g = torch.Generator()
    assert torch.equal(call_log_prob(OneArgument((2,)), x, g), torch.full((3,), -2.0))
    draws = [call_log_prob(Noisy((2,)), x, g.manual_seed(5)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], call_log_prob(Noisy((2,)), x, g.manual_seed(6)))
