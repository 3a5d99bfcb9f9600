"""The Gaussian-mixture base of the vector flows: its density, its EM start, and its build path."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.mixture import GaussianMixture as SklearnMixture

from probgen.core import DataSpec, InvalidInput
from probgen.distributions import GaussianMixture
from probgen.models import Standardized, build_model
from probgen.models.flows import MAF, MixtureNormal
from probgen.pretrained import from_pretrained, save_pretrained


def _clusters(n: int = 400) -> torch.Tensor:
    """Two well-separated, differently shaped clusters in 2-D, 60/40."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(int(0.6 * n), 2, generator=g) @ torch.tensor([[1.0, 0.0], [0.8, 0.4]]) + 4
    b = torch.randn(n - len(a), 2, generator=g) * torch.tensor([0.5, 1.5]) - 3
    return torch.cat([a, b])


def _randomized(base: MixtureNormal) -> MixtureNormal:
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.7 * torch.randn_like(p))
    return base


def test_log_prob_is_the_mixture_density(dtype: torch.dtype) -> None:
    """Against the analytic GaussianMixture with π = softmax(a), Σ_k = L_k L_kᵀ (float64)."""
    base = _randomized(MixtureNormal(3, components=4)).to(dtype)
    tril = base.scale_tril().detach().double()
    reference = GaussianMixture(
        base.logits.detach().double().softmax(0), base.means.detach().double(), tril @ tril.mT
    )
    x = torch.randn(64, 3, dtype=torch.float64) * 2
    expected = reference.log_prob(x)
    got = base.log_prob(x.to(dtype)).double()
    tol = 256 * torch.finfo(dtype).eps * (1 + expected.abs() + x.abs().sum(1) ** 2)
    assert ((got - expected).abs() <= tol).all()


def test_samples_have_the_mixture_moments() -> None:
    """Sample mean and covariance against Σ π_k μ_k and Σ π_k (Σ_k + μ_k μ_kᵀ) − μμᵀ, to 5 se."""
    base = _randomized(MixtureNormal(2, components=3))
    with torch.no_grad():
        z = base.sample(200_000, generator=torch.Generator().manual_seed(0))
        pi, mu, tril = base.log_weights().exp(), base.means, base.scale_tril()
        mean = pi @ mu
        cov = (pi[:, None, None] * (tril @ tril.mT + mu[:, :, None] * mu[:, None, :])).sum(0)
        cov = cov - mean[:, None] * mean[None, :]
    se = (cov.diagonal() / len(z)).sqrt()
    assert ((z.mean(0) - mean).abs() <= 5 * se).all()
    # sd of a sample variance entry ≈ sqrt(E(z-μ)⁴ / n); 5 of them with the empirical 4th moment
    centred = z - mean
    fourth = (centred[:, :, None] * centred[:, None, :]).square().mean(0)
    assert ((torch.cov(z.T) - cov).abs() <= 5 * (fourth / len(z)).sqrt()).all()


def test_initialization_is_the_bic_chosen_em_fit() -> None:
    """After the EM start: BIC's k (here 2), inactive weights exactly 0, sklearn's density."""
    x = _clusters()
    base = MixtureNormal(2, components=5)
    torch.manual_seed(7)
    base.initialize_from_data(x)
    torch.manual_seed(7)  # the random state the base drew
    seed = int(torch.randint(2**31 - 1, ()).item())
    fits = [SklearnMixture(k, random_state=seed).fit(x.numpy()) for k in range(1, 6)]
    best = min(fits, key=lambda m: m.bic(x.numpy()))
    assert best.n_components == 2 and base.active.tolist() == [True, True, False, False, False]
    assert (base.log_weights()[2:] == -math.inf).all()
    expected = torch.as_tensor(best.score_samples(x.numpy()))
    torch.testing.assert_close(base.log_prob(x).detach(), expected, rtol=0, atol=1e-9)
    with torch.no_grad():
        assert len(base.sample(1000).unique(dim=0)) == 1000


def test_without_selection_every_component_is_used() -> None:
    base = MixtureNormal(2, components=4, select=False)
    base.initialize_from_data(_clusters())
    assert base.active.all() and torch.isfinite(base.log_weights()).all()


def test_inactive_components_get_no_gradient() -> None:
    base = MixtureNormal(2, components=5)
    base.initialize_from_data(_clusters())
    base.log_prob(_clusters(50)).sum().backward()
    for p in (base.logits, base.means, base.log_diagonal, base.lower):
        assert (p.grad[2:] == 0).all() and (p.grad[:2] != 0).any()


def test_build_model_starts_the_flow_at_the_em_fit_of_the_standardized_data() -> None:
    """log p(x) = log p_GMM((x − μ)/s) − Σ log s at the start (the MAF layers are the identity)."""
    x = _clusters() * torch.tensor([100.0, 0.01]) + torch.tensor([1e3, -5.0])
    torch.manual_seed(0)
    model = build_model("maf", DataSpec((2,)), train_data=x, base="mixture")
    assert isinstance(model, Standardized)
    z = ((x - model.shift) / model.scale).double()
    assert model.model.base.active.sum() == 2
    fit = SklearnMixture(2, random_state=0).fit(z.numpy())  # the same optimum from any start
    expected = torch.as_tensor(fit.score_samples(z.numpy())) - model.scale.log().sum()
    torch.testing.assert_close(model.log_prob(x).detach(), expected, rtol=0, atol=1e-6)


def test_a_saved_mixture_flow_is_rebuilt_without_its_data(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("nsf", DataSpec((2,)), train_data=_clusters(), base="mixture")
    save_pretrained(model, tmp_path / "m")
    again = from_pretrained(tmp_path / "m")
    x = _clusters(32)
    assert torch.equal(again.model.base.active, model.model.base.active)
    torch.testing.assert_close(again.log_prob(x), model.log_prob(x), rtol=0, atol=0)


def test_unknown_base_and_bad_component_count_are_named() -> None:
    with pytest.raises(InvalidInput, match="unknown base 'gmm'; choose one of: mixture, normal"):
        MAF((2,), base="gmm")
    with pytest.raises(InvalidInput, match="components must be >= 1"):
        MixtureNormal(2, components=0)
