"""The data map of continuous data: exact change of variables, fitted once, in every family."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from probgen.core import DataSpec, InvalidInput, Likelihood, OutOfRangeWarning, UnknownPlayer
from probgen.distributions import make_shape
from probgen.models import Standardized, build_model, fit_standardization
from probgen.models.gaussian import GaussianModel
from probgen.registry import MODELS

SPEC = DataSpec((2,))


def _tolerance(dtype: torch.dtype, size: float) -> float:
    """A few hundred ulps of a quantity of magnitude ``size`` (sums over layers and entries)."""
    return 256 * torch.finfo(dtype).eps * max(1.0, size)


def _data(n: int = 500, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 2, generator=g) * torch.tensor([0.5, 7.0]) + torch.tensor([3.0, 70.0])
    return x.to(dtype)


def test_mean_std_and_robust_maps_equal_numpy() -> None:
    x = _data()
    shift, scale = fit_standardization(x, "mean_std")
    v = x.numpy()
    np.testing.assert_allclose(shift.numpy(), v.mean(0), rtol=1e-12)
    np.testing.assert_allclose(scale.numpy(), v.std(0, ddof=1), rtol=1e-12)
    shift, scale = fit_standardization(x, "robust")
    q25, q75 = np.percentile(v, [25, 75], axis=0)
    np.testing.assert_allclose(shift.numpy(), np.median(v, 0), rtol=1e-12)
    np.testing.assert_allclose(scale.numpy(), (q75 - q25) / 1.3489795003921634, rtol=1e-12)


def test_constant_entries_are_shifted_not_scaled_and_given_maps_broadcast() -> None:
    x = torch.cat([torch.full((10, 1), 4.0), torch.arange(10.0)[:, None]], dim=1)
    shift, scale = fit_standardization(x, "mean_std")
    assert shift[0] == 4.0 and scale[0] == 1.0 and scale[1] > 0
    shift, scale = fit_standardization(x, {"shift": 1.0, "scale": [2.0, 3.0]})
    assert shift.tolist() == [1.0, 1.0] and scale.tolist() == [2.0, 3.0]
    assert fit_standardization(x, "none") is None


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("zscore", "unknown method 'zscore'"),
        ({"shift": 0.0, "scale": [1.0, 0.0]}, "scale finite and > 0"),
        ({"shift": [0.0, 1.0, 2.0]}, "broadcastable to the event shape"),
        ({"center": 0.0}, "unknown key 'center'"),
    ],
)
def test_bad_maps_are_named(method, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        fit_standardization(_data(), method)


def test_log_prob_is_the_change_of_variables_of_an_independent_gaussian(dtype) -> None:
    """N(0, I) seen through x = μ + s ⊙ z is N(μ, diag s²): compare with torch.distributions."""
    shift = torch.tensor([3.0, -70.0], dtype=dtype)
    scale = torch.tensor([1e-3, 1e3], dtype=dtype)
    inner = GaussianModel((2,)).to(dtype)  # initialised at N(0, I)
    model = Standardized(inner, shift, scale)
    x = shift + scale * torch.randn(64, 2, dtype=dtype)
    expected = torch.distributions.Normal(shift, scale).log_prob(x).sum(-1)
    assert model.likelihood is Likelihood.EXACT
    actual = model.log_prob(x)
    assert actual.dtype == dtype
    torch.testing.assert_close(actual, expected, atol=_tolerance(dtype, 10.0), rtol=0)
    draws = model.sample(20_000)
    z = (draws - shift) / scale  # standard normal when sample maps back correctly
    assert (z.mean(0).abs() < 5 / math.sqrt(20_000)).all()
    assert ((z.std(0) - 1).abs() < 5 / math.sqrt(2 * 20_000)).all()


def test_every_continuous_family_is_wrapped_with_its_exact_log_determinant() -> None:
    x = _data(300)
    shift, scale = fit_standardization(x)
    for name in MODELS.names():
        try:
            model = build_model(name, SPEC, train_data=x)
        except InvalidInput:
            continue  # the family does not build for 2-D points (PixelCNN, the transformer)
        assert isinstance(model, Standardized), name
        torch.testing.assert_close(model.shift, shift)
        torch.testing.assert_close(model.scale, scale)
        assert tuple(model.sample(5).shape) == (5, 2)
        if model.likelihood is Likelihood.NONE:
            continue
        model.eval()
        inner = model.model.log_prob((x[:16] - shift) / scale)
        expected = inner - scale.log().sum()
        if model.likelihood is Likelihood.EXACT:  # stochastic bounds are drawn afresh
            torch.testing.assert_close(model.log_prob(x[:16]), expected)


@pytest.mark.parametrize("name", ["maf", "nsf", "realnvp", "made", "gaussian"])
def test_exact_families_are_invariant_to_the_data_units(name: str, dtype) -> None:
    """The same seed on x and on a·x + b builds the same network on the same z, so
    log p(a·x + b) = log p(x) − D log a to rounding."""
    x = _data(300, dtype)
    a, b = 1e3, 1e3
    torch.manual_seed(0)
    model = build_model(name, SPEC, train_data=x).to(dtype).eval()
    torch.manual_seed(0)
    moved = build_model(name, SPEC, train_data=a * x + b).to(dtype).eval()
    lp, lp_moved = model.log_prob(x[:32]), moved.log_prob(a * x[:32] + b)
    d_log_a = 2 * math.log(a)
    torch.testing.assert_close(lp_moved, lp - d_log_a, atol=_tolerance(dtype, 1e3), rtol=0)


def test_no_map_without_training_data_unless_asked() -> None:
    assert not isinstance(build_model("maf", SPEC), Standardized)
    unmapped = build_model("maf", SPEC, train_data=_data(), standardize="none")
    assert not isinstance(unmapped, Standardized)
    given = build_model("maf", SPEC, standardize={"method": "mean_std", "shift": 1.0, "scale": 2.0})
    assert isinstance(given, Standardized) and given.scale.tolist() == [2.0, 2.0]
    with pytest.raises(InvalidInput, match="pass train_data"):
        build_model("maf", SPEC, standardize="robust")


def test_integer_data_are_dequantized_not_standardized() -> None:
    spec = DataSpec((2,), levels=4)
    model = build_model("maf", spec, train_data=torch.zeros(5, 2))
    assert not isinstance(model, Standardized)


def test_points_far_outside_the_training_range_are_reported() -> None:
    x = _data(400)
    model = build_model("maf", SPEC, train_data=x).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.log_prob(x[:50])  # the training data: no warning
    far = x[:50].clone()
    far[:10, 1] += 1e3  # ten of fifty points a hundred standard deviations away
    with pytest.warns(OutOfRangeWarning, match=r"20\.0% of the 50 points"):
        model.log_prob(far)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.log_prob(far)  # training losses stay quiet


def test_spline_flow_reports_inputs_outside_its_interval() -> None:
    nsf = MODELS.get("nsf")((2,), bound=3.0).eval()
    x = torch.zeros(8, 2)
    x[:2, 0] = 4.0
    with pytest.warns(OutOfRangeWarning, match=r"25\.0% of the 8 points .* \[-3, 3\]"):
        nsf.log_prob(x)


def test_bounds_and_log_partition_follow_the_map() -> None:
    x = make_shape("8gaussians").sample(200) * 50 + 10
    vae = build_model("vae", SPEC, train_data=x, hidden=(8,), latent_dim=2)
    z = vae.to_inner(x[:8])
    g = torch.Generator().manual_seed(0)
    expected = vae.model.iwae_bound(z, 4, torch.Generator().manual_seed(0)) - vae.log_det
    torch.testing.assert_close(vae.iwae_bound(x[:8], 4, g), expected)
    assert not hasattr(build_model("maf", SPEC, train_data=x), "iwae_bound")
    ebm = build_model("ebm", SPEC, train_data=x, hidden=(8,))
    assert ebm.partition_model is ebm.model


def test_a_training_step_checks_the_player_without_listing_every_parameter(monkeypatch) -> None:
    model = build_model("maf", SPEC, train_data=_data(), hidden=[8])
    assert isinstance(model, Standardized)
    x = _data(16)
    expected = model.loss(x)

    def listed(*args, **kwargs):
        raise AssertionError("players() listed the parameters")

    monkeypatch.setattr(type(model.model), "parameters", listed)
    torch.testing.assert_close(model.loss(x), expected, rtol=0, atol=0)  # the step's loss
    monkeypatch.undo()
    with pytest.raises(UnknownPlayer, match="critic"):
        model.loss(x, "critic")
