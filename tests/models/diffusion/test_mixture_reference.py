"""The ``reference: mixture`` option of the diffusion families: build, train, save, errors."""

from __future__ import annotations

import pytest
import torch
from sklearn.mixture import GaussianMixture

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.models.build import build_model
from probgen.models.diffusion import DDPM, FlowMatchingModel, ScoreSDE
from probgen.models.diffusion.reference import MixtureReference
from probgen.models.standardize import Standardized
from probgen.pretrained import from_pretrained, save_pretrained

FAMILIES = {"ddpm": {}, "score_sde": {}, "flow_matching": {}}
SMALL = {"hidden": (16,)}


def _clusters(n: int = 200, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n // 2, 2, generator=g) * torch.tensor([0.3, 0.2]) + torch.tensor([2.0, 1.0])
    b = torch.randn(n - n // 2, 2, generator=g) * 0.4 - 1.0
    return torch.cat([a, b]) * torch.tensor([1.0, 12.0]) + torch.tensor([3.0, 70.0])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_build_model_fits_the_reference_by_em_on_the_standardized_data(family):
    """The reference's mixture is scikit-learn's BIC-chosen fit of the standardised data
    (the same optimum from any start): its log-density equals score_samples to 1e-6."""
    x = _clusters()
    torch.manual_seed(0)
    model = build_model(
        family, DataSpec((2,)), train_data=x, reference="mixture", **FAMILIES[family], **SMALL
    )
    assert isinstance(model, Standardized)
    z = ((x - model.shift) / model.scale).double()
    mixture = model.model.denoiser.reference.mixture
    assert int(mixture.active.sum()) == 2
    fit = GaussianMixture(2, random_state=0).fit(z.numpy())
    expected = torch.as_tensor(fit.score_samples(z.numpy()))
    torch.testing.assert_close(mixture.log_prob(z).double(), expected, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in mixture.parameters())  # fixed after EM


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_untrained_model_scores_like_its_mixture_and_training_moves_only_the_residual(family):
    """At the start log p(x) is the mixture's (to 0.01 nats: t_min and the prior at t = 1),
    far from the plain family's; a few optimizer steps change the network, not the mixture."""
    x = _clusters()
    torch.manual_seed(0)
    model = build_model(
        family, DataSpec((2,)), train_data=x, reference="mixture", **FAMILIES[family], **SMALL
    )
    z = (x[:20] - model.shift) / model.scale
    mixture = model.model.denoiser.reference.mixture
    start = mixture.log_prob(z) - model.scale.log().sum()
    torch.testing.assert_close(model.log_prob(x[:20]), start, rtol=0, atol=1e-2)
    before = {k: v.clone() for k, v in mixture.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model.loss(x).backward()
        optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in mixture.state_dict().items())
    assert not torch.allclose(model.log_prob(x[:20]), start, rtol=0, atol=1e-2)


def test_a_saved_model_with_a_mixture_reference_is_rebuilt_without_its_data(tmp_path):
    torch.manual_seed(0)
    model = build_model(
        "ddpm", DataSpec((2,)), train_data=_clusters(), reference="mixture", **SMALL
    )
    save_pretrained(model, tmp_path / "m")
    again = from_pretrained(tmp_path / "m")
    x = _clusters(16, seed=1)
    active = again.model.denoiser.reference.mixture.active
    assert torch.equal(active, model.model.denoiser.reference.mixture.active)
    torch.testing.assert_close(again.log_prob(x), model.log_prob(x), rtol=0, atol=0)


def test_a_conditional_model_starts_at_the_marginal_mixture_for_every_condition():
    """The reference is the mixture of p(x) (conditions ignored by the fit); the residual
    starts at zero for every condition, so log p(x | c) = log p(x) at the start."""
    spec = DataSpec((2,), condition=ConditionSpec(classes=2))
    x, c = _clusters(), torch.cat([torch.zeros(100), torch.ones(100)]).long()
    torch.manual_seed(0)
    model = build_model(
        "ddpm", spec, train_data=x, train_conditions=c, reference="mixture", **SMALL
    )
    assert int(model.model.denoiser.reference.mixture.active.sum()) == 2
    marginal = model.log_prob(x[:8])
    for label in (0, 1):
        given = model.log_prob(x[:8], condition=torch.full((8,), label))
        torch.testing.assert_close(given, marginal, rtol=0, atol=0)


def test_bad_reference_options_are_named():
    with pytest.raises(InvalidInput, match="unknown reference 'gmm'; choose one of: mixture, none"):
        ScoreSDE((2,), reference="gmm")
    with pytest.raises(InvalidInput, match="reference: 'mixture' is for continuous data"):
        DDPM.for_data(DataSpec((2,), levels=16), reference="mixture")
    with pytest.raises(InvalidInput, match="components must be >= 1"):
        FlowMatchingModel((2,), reference="mixture", components=0)
    reference = MixtureReference((2,))
    with pytest.raises(InvalidInput, match="expected examples"):
        reference.initialize_from_data(torch.zeros(10, 3))
    with pytest.raises(InvalidInput, match="kind: expected one of"):
        reference(torch.zeros(4, 2), "x0", 1.0, 0.5)
    with pytest.raises(InvalidInput, match="a velocity needs d_alpha and d_sigma"):
        reference(torch.zeros(4, 2), "velocity", 1.0, 0.5)
