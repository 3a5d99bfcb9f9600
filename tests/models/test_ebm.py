"""The energy-based model: protocol, replay buffer, loss, sampling, divergence, fitting."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from probgen.core import DataSpec, InvalidInput, Likelihood, UnknownPlayer
from probgen.data.base import ArrayDataset
from probgen.distributions import DiagonalGaussian
from probgen.models import Dequantized, build_model
from probgen.models.ebm import EBM, contrastive_loss
from probgen.registry import MODELS
from probgen.sampling import MALA


class Quadratic(nn.Module):
    """E(x) = ½ ((x − m)/s)² summed over entries: the Gaussian family N(m, s²)."""

    def __init__(self, m: float = 0.0, s: float = 1.0) -> None:
        super().__init__()
        self.m = nn.Parameter(torch.tensor(m))
        self.log_s = nn.Parameter(torch.tensor(math.log(s)))

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * ((x - self.m) / self.log_s.exp()).square().flatten(1).sum(1)


def _ebm(**options) -> EBM:
    return EBM((2,), **{"hidden": (16,), "buffer_size": 64, **options})


def test_protocol_unnormalised_log_prob_is_minus_the_energy() -> None:
    model = _ebm()
    x = torch.randn(5, 2)
    assert model.likelihood is Likelihood.UNNORMALIZED
    assert model.log_prob(x).shape == (5,)
    torch.testing.assert_close(model.log_prob(x), -model.energy(x))
    assert set(model.players()) == {"model"}
    with pytest.raises(UnknownPlayer, match="critic"):
        model.loss(x, "critic")


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.zeros(3, 3), r"expected shape \(B, 2\), got \(3, 3\)"),
        (torch.zeros(3, 2, dtype=torch.long), "floating-point"),
        (torch.full((3, 2), math.nan), "non-finite"),
    ],
)
def test_bad_input_names_what_was_expected(x: Tensor, message: str) -> None:
    model = _ebm()
    for call in (model.log_prob, model.loss):
        with pytest.raises(InvalidInput, match=message):
            call(x)


@pytest.mark.parametrize(
    "options",
    [
        {"train_steps": -1},
        {"sample_steps": 1.5},
        {"buffer_size": 0},
        {"reinit_prob": 1.5},
        {"alpha": -1.0},
        {"step_size": 0.0},
        {"init": DiagonalGaussian(torch.zeros(3), torch.ones(3))},
    ],
)
def test_bad_options_are_rejected(options: dict) -> None:
    with pytest.raises(InvalidInput):
        _ebm(**options)


def test_registry_and_for_data() -> None:
    assert MODELS.get("ebm") is EBM
    model = EBM.for_data(DataSpec((2,)), hidden=(8,), buffer_size=10)
    assert model.event_shape == (2,) and model.chains.shape == (10, 2)


def test_a_dequantized_ebm_stays_unnormalized_and_trains_on_levels() -> None:
    model = build_model("ebm", DataSpec((1, 4, 4), levels=17), hidden=(8,), sample_steps=3)
    assert isinstance(model, Dequantized) and isinstance(model.model, EBM)
    assert model.likelihood is Likelihood.UNNORMALIZED  # −E(y) − D log K, still off by log Z
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    loss = model.loss(x)
    loss.backward()
    assert torch.isfinite(loss)


def test_sample_shapes_any_event_shape_and_reproducibility() -> None:
    model = EBM((1, 3, 3), hidden=(8,), buffer_size=16, sample_steps=5)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    x = model.sample(4, generator=g())
    assert x.shape == (4, 1, 3, 3) and not x.requires_grad
    assert torch.equal(x, model.sample(4, generator=g()))
    # with no steps, samples are the starts: fresh draws of init, or buffer rows
    torch.testing.assert_close(
        model.sample(4, steps=0, generator=g()), model.init.sample(4, generator=g())
    )
    rows = model.sample(6, steps=0, persistent=True, generator=g())
    assert all((model.chains == r).flatten(1).all(1).any() for r in rows)


def test_sample_with_another_kernel_reports_its_acceptance() -> None:
    model = _ebm()
    result = model.sample_chains(50, steps=10, sampler=MALA(0.3))
    assert result.samples.shape == (50, 2)
    assert 0 < result.acceptance_rate <= 1 and result.n_evaluations == 20


def test_negatives_come_from_the_buffer_and_are_written_back() -> None:
    model = _ebm(reinit_prob=0.0, train_steps=0)
    before = model.chains.clone()
    x = model.negatives(20)
    assert torch.equal(model.chains, before)  # zero steps: the chains did not move
    assert all((before == r).all(1).any() for r in x)

    far = DiagonalGaussian(torch.full((2,), 100.0), torch.ones(2))
    model = _ebm(reinit_prob=1.0, train_steps=3, init=far)
    before = model.chains.clone()
    x = model.negatives(20)
    assert (x > 90).all()  # every chain restarted from init
    changed = model.chains[(model.chains != before).any(1)]
    assert len(changed) >= 1  # the advanced chains were stored (a repeated index keeps one)
    assert all((x == r).all(1).any() for r in changed)


def test_loss_is_the_contrastive_loss_on_detached_negatives() -> None:
    """loss = mean E(x⁺) − mean E(x⁻) + α mean(E(x⁺)² + E(x⁻)²), x⁻ fixed."""
    model = _ebm(alpha=0.3, train_steps=4)
    replay = copy.deepcopy(model)
    x = torch.randn(16, 2)
    torch.manual_seed(11)
    negatives = replay.negatives(16)  # the same draws the loss will make
    torch.manual_seed(11)
    loss = model.loss(x)
    expected = contrastive_loss(model.energy(x), model.energy(negatives), 0.3)
    e_pos, e_neg = model.energy(x), model.energy(negatives)
    by_hand = e_pos.mean() - e_neg.mean() + 0.3 * (e_pos.square().mean() + e_neg.square().mean())
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(expected, by_hand)
    params = list(model.parameters())
    for got, want in zip(
        torch.autograd.grad(loss, params), torch.autograd.grad(expected, params), strict=True
    ):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(model.chains, replay.chains)


class _Unbounded(nn.Module):
    """E(x) = −‖x‖⁴ + 0·w: unbounded below, so Langevin chains run off to infinity."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return -x.square().sum(1).square() + self.w


def test_exploding_chains_make_the_loss_non_finite_and_training_stop(tmp_path) -> None:
    from probgen.train import ComponentConfig, RunConfig, TrainConfig, TrainingDiverged, fit

    model = EBM((2,), energy=_Unbounded(), step_size=0.5, train_steps=30, buffer_size=32)
    assert not math.isfinite(model.loss(torch.zeros(8, 2)).item())
    config = RunConfig(
        model=ComponentConfig("ebm"),
        data=ComponentConfig("8gaussians"),
        train=TrainConfig(steps=3, batch_size=8, log_every=1, device="cpu"),
    )
    data = ArrayDataset(torch.randn(32, 2), torch.randn(8, 2), torch.randn(8, 2), DataSpec((2,)))
    with pytest.raises(TrainingDiverged, match=r"player 'model' is (nan|-?inf) at step 1"):
        fit(config, tmp_path, model=model, dataset=data, progress=False)


def test_training_recovers_a_gaussian_through_persistent_chains() -> None:
    """With E = ½((x − m)/s)², the CD fixed point E_pdata[∇E] = E_chains[∇E] is the data's
    mean and variance, up to the ULA bias: chains at stationarity have variance
    s²/(1 − ε²/(4s²)), so s² = 0.49 − ε²/4, s = 0.684 at ε = 0.3.

    Data N(1.5, 0.7²); starting from m = 0, s = 1, 400 Adam steps (lr 0.01) on
    batches of 256 must bring m within 0.1 of 1.5 and s within 0.1 of 0.684.
    Ten steps of ε = 0.3 per update contract the chains' lag by
    (1 − ε²/(2s²))¹⁰ ≈ 0.4, so they track parameters that move ~0.01 per step.
    """
    g = torch.Generator().manual_seed(0)
    model = EBM(
        (1,), energy=Quadratic(), alpha=0.0, step_size=0.3, train_steps=10, buffer_size=1000
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(400):
        loss = model.loss(1.5 + 0.7 * torch.randn(256, 1, generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m, s = model.net.m.item(), model.net.log_s.exp().item()
    assert abs(m - 1.5) < 0.1 and abs(s - math.sqrt(0.49 - 0.3**2 / 4)) < 0.1, (m, s)
