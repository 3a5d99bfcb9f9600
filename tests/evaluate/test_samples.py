"""Sample metrics: ideal values on identical sets, monotone under noise and mode dropping,
FD against a direct SciPy computation, PRDC against brute force, the shipped feature nets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from probgen.core import InvalidInput
from probgen.data.digits import Digits
from probgen.distributions import GaussianMixture
from probgen.evaluate.features import (
    ClassifierFeatures,
    FlatFeatures,
    default_features,
    load_classifier,
)
from probgen.evaluate.samples import (
    embed,
    frechet_distance,
    kernel_inception_distance,
    prdc,
    precision,
)


def ring(n_modes: int = 8) -> GaussianMixture:
    angles = torch.arange(n_modes) * 2 * math.pi / n_modes
    means = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture.isotropic(torch.ones(n_modes), means, 0.1)


def draw(n: int, seed: int) -> Tensor:
    return ring().sample(n, generator=torch.Generator().manual_seed(seed))


def test_a_set_against_itself_is_ideal_for_every_metric() -> None:
    x = draw(500, 0)
    assert frechet_distance(x, x).item() == pytest.approx(0.0, abs=1e-9)
    for k in (1, 3, 5):  # k = 1 catches radii that include the point itself (radius 0)
        assert prdc(x, x, k=k).as_dict() == {
            "precision": 1.0,
            "recall": 1.0,
            "density": 1.0,
            "coverage": 1.0,
        }
    # KID is unbiased for independent sets, so its check is test_kid_grows_with_the_distance…


def test_frechet_distance_matches_the_formula_computed_with_scipy() -> None:
    digits = Digits()
    x, y = digits.split("train")[:400], digits.split("test")[:300]
    net = default_features((1, 8, 8))
    fx, fy = embed(x, net).numpy(), embed(y, net).numpy()
    mu_x, mu_y = fx.mean(0), fy.mean(0)
    cov_x, cov_y = np.cov(fx, rowvar=False), np.cov(fy, rowvar=False)
    root = scipy.linalg.sqrtm(cov_x @ cov_y).real
    direct = ((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2 * root)
    assert frechet_distance(y, x, net).item() == pytest.approx(direct, rel=1e-6)
    assert direct > 0.1


def test_frechet_distance_of_gaussians_is_the_closed_form_w2() -> None:
    # Large samples of N(0, I) and N(m, 4 I) in 2-D: FD → ‖m‖² + 2 (1 + 4 − 2·2) = ‖m‖² + 2.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20_000, 2, generator=g)
    y = torch.tensor([1.0, -1.0]) + 2.0 * torch.randn(20_000, 2, generator=g)
    assert frechet_distance(y, x).item() == pytest.approx(4.0, abs=0.1)


def test_metrics_worsen_monotonically_with_gaussian_noise() -> None:
    data, clean = draw(600, 1), draw(600, 2)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))
    results = [
        (frechet_distance(clean + s * noise, data).item(), prdc(clean + s * noise, data))
        for s in (0.0, 0.1, 0.3, 1.0)
    ]
    fd = [r[0] for r in results]
    assert all(a < b for a, b in itertools.pairwise(fd))
    for field in ("precision", "density"):
        values = [getattr(r[1], field) for r in results]
        assert all(a > b for a, b in itertools.pairwise(values)), (field, values)
    assert results[0][1].precision > 0.9 and results[-1][1].precision < 0.5


def test_metrics_worsen_monotonically_as_modes_are_dropped() -> None:
    data = draw(800, 4)
    model = ring()
    results = []
    for kept in (8, 6, 4, 2):
        weights = torch.tensor([1.0] * kept + [0.0] * (8 - kept))
        dropped = GaussianMixture(weights, model.means, model.covariances)
        y = dropped.sample(800, generator=torch.Generator().manual_seed(5))
        results.append((frechet_distance(y, data).item(), prdc(y, data)))
    fd = [r[0] for r in results]
    assert all(a < b for a, b in itertools.pairwise(fd))
    for field in ("recall", "coverage"):
        values = [getattr(r[1], field) for r in results]
        assert all(a > b for a, b in itertools.pairwise(values)), (field, values)
    assert results[-1][1].coverage == pytest.approx(2 / 8, abs=0.05)
    assert results[-1][1].precision > 0.9  # what is generated is still good


@settings(max_examples=10, deadline=None)
@given(
    n=st.integers(8, 30),
    m=st.integers(8, 30),
    k=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_prdc_matches_a_brute_force_count(n: int, m: int, k: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, generator=g), 0.5 + torch.randn(m, 3, generator=g)
    dxx, dyy, dyx = torch.cdist(x, x), torch.cdist(y, y), torch.cdist(y, x)
    r_x = dxx.sort(dim=1).values[:, k]  # index 0 is the point itself
    r_y = dyy.sort(dim=1).values[:, k]
    inside = dyx < r_x[None, :]  # (M, N)
    expected = {
        "precision": inside.any(1).double().mean().item(),
        "recall": (dyx.T < r_y[None, :]).any(1).double().mean().item(),
        "density": inside.sum().item() / (k * m),
        "coverage": inside.any(0).double().mean().item(),
    }
    result = prdc(y, x, k=k).as_dict()
    assert result == pytest.approx(expected, abs=1e-12)


def test_independent_samples_of_one_law_have_density_near_one() -> None:
    # E[density] = 1 when samples and data share a law (Naeem et al. 2020, Section 4).
    values = [prdc(draw(400, s), draw(400, 100 + s), k=5).density for s in range(3)]
    assert np.mean(values) == pytest.approx(1.0, abs=0.1)


def test_kid_grows_with_the_distance_between_laws() -> None:
    x, y = draw(400, 6), draw(400, 7)
    kids = [
        kernel_inception_distance(y + shift, x, subset_size=200, generator=torch.Generator())
        for shift in (0.0, 0.3, 1.0)
    ]
    assert abs(kids[0].value) < 3 * kids[0].stderr + 1e-3
    assert kids[0].value < kids[1].value < kids[2].value


def test_shipped_feature_networks_classify_held_out_digits() -> None:
    digits = Digits()
    net = default_features(digits.spec.event_shape)
    assert isinstance(net, ClassifierFeatures) and net.num_features == 64
    with torch.no_grad():
        predicted = net.logits(digits.split("test")).argmax(dim=1)
    assert (predicted == digits.labels("test")).double().mean() > 0.85
    assert embed(digits.split("test")[:7], net).shape == (7, 64)


def test_default_features_and_round_trip(tmp_path) -> None:
    assert isinstance(default_features((2,)), FlatFeatures)
    assert default_features((3, 4)).num_features == 12
    net = ClassifierFeatures((1, 4, 4), levels=5, hidden=(6, 3))
    net.save(tmp_path / "f.safetensors", metadata={"note": "test"})
    loaded = load_classifier(tmp_path / "f.safetensors")
    x = torch.randint(5, (4, 1, 4, 4)).double()
    assert torch.allclose(loaded(x), net.float()(x), atol=1e-6)
    with pytest.raises(InvalidInput, match=r"\(B, 1, 4, 4\)"):
        loaded(torch.zeros(2, 16))


def test_bad_inputs_are_rejected() -> None:
    x = draw(20, 8)
    with pytest.raises(InvalidInput, match="shape"):
        frechet_distance(x, torch.zeros(10, 3))
    with pytest.raises(InvalidInput, match="k"):
        prdc(x, x, k=0)
    with pytest.raises(InvalidInput, match="more than k"):
        prdc(x[:3], x, k=5)
    assert precision(x, x) == 1.0
