"""Small-data defaults: the EM-fitted start beneath the config's options, recorded in the run."""

from __future__ import annotations

import pytest
import torch
import yaml
from sklearn.mixture import GaussianMixture

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec
from probgen.data.base import ArrayDataset
from probgen.data.toy import ToyDataset
from probgen.models.standardize import Standardized
from probgen.train import ComponentConfig, fit, load_run
from probgen.train.build import build
from probgen.train.config import SMALL_DATA
from probgen.train.small_data import is_small_vector_data, with_small_data_defaults


def _clusters(n: int, d: int = 2, seed: int = 0) -> torch.Tensor:
    """Two well-separated Gaussian clusters in R^d, in raw units far from 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(2, d)
    centres[1, 0] = 6.0
    x = centres[torch.arange(n) % 2] + torch.randn(n, d, generator=g, dtype=torch.float64)
    return x * 10.0 + 50.0


def _data(n: int, d: int = 2, condition: ConditionSpec | None = None) -> ArrayDataset:
    x = _clusters(n + 100, d)
    spec = DataSpec((d,), condition=condition)
    if condition is None:
        return ArrayDataset(x[:n], x[n : n + 50], x[n + 50 :], spec)
    c = torch.randn(n + 100, *condition.shape, dtype=torch.float64)
    return ArrayDataset(x[:n], x[n : n + 50], x[n + 50 :], spec,
                        conditions=(c[:n], c[n : n + 50], c[n + 50 :]))  # fmt: skip


@pytest.mark.parametrize(
    ("family", "defaults"),
    [
        ("maf", {"base": "mixture"}),
        ("nsf", {"base": "mixture"}),
        ("realnvp", {"base": "mixture"}),
        ("ensemble", {"base": "mixture"}),
        ("vae", {"prior": "gmm", "start": "identity"}),
        ("ddpm", {"reference": "mixture"}),
        ("score_sde", {"reference": "mixture"}),
        ("flow_matching", {}),
        ("made", {}),
        ("gaussian", {}),
        ("gan", {}),
    ],
)
def test_each_family_says_its_small_data_defaults(family: str, defaults: dict) -> None:
    assert with_small_data_defaults(family, {}, _data(200)) == defaults


def test_the_configs_own_options_win() -> None:
    data = _data(200)
    assert with_small_data_defaults("maf", {"base": "normal"}, data) == {"base": "normal"}
    assert with_small_data_defaults("ddpm", {"hidden": [8]}, data) == {
        "reference": "mixture", "hidden": [8],
    }  # fmt: skip
    # a VAE whose prior, start or decoder is chosen, or whose latents are fewer than D,
    # cannot start at the identity: it keeps its own defaults
    for options in ({"prior": "vamp"}, {"start": "random"}, {"decoder": "gaussian"},
                    {"latent_dim": 1}):  # fmt: skip
        assert with_small_data_defaults("vae", options, data) == options
    assert with_small_data_defaults("ensemble", {"family": "vae"}, data) == {
        "family": "vae", "prior": "gmm", "start": "identity",
    }  # fmt: skip


def test_only_small_finite_unconditional_vectors_are_small() -> None:
    assert is_small_vector_data(_data(200))
    assert not is_small_vector_data(ToyDataset("8gaussians"))  # infinite: every batch fresh
    assert is_small_vector_data(ToyDataset("8gaussians", n_train=SMALL_DATA))
    assert not is_small_vector_data(ToyDataset("8gaussians", n_train=SMALL_DATA + 1))
    assert not is_small_vector_data(_data(200, condition=ConditionSpec(shape=(1,))))
    levels = _data(200)
    levels.spec = DataSpec((2,), levels=256)
    assert not is_small_vector_data(levels)
    # D = 10: a full-covariance component has 1 + 10 + 55 = 66 parameters, so 660 points
    assert not is_small_vector_data(_data(659, d=10))
    assert is_small_vector_data(_data(660, d=10))


def test_an_infinite_stream_builds_the_plain_family(make_config) -> None:
    config = make_config()
    config.model, config.data = ComponentConfig("maf"), ComponentConfig("8gaussians")
    model, _ = build(config)
    assert config.model.options == {}
    assert type(model.model.base).__name__ == "StandardNormal"


def test_a_small_run_starts_at_the_em_mixture_records_it_and_reloads_it(
    make_config, tmp_path
) -> None:
    """log p(x) at step 0 = the BIC-chosen GMM's log-density of the standardised data
    − Σ log s; the resolved base is in config.yaml, and load_run rebuilds that model."""
    data = _data(300)
    config = make_config(early_stopping=False)
    config.model = ComponentConfig("maf")
    model, _ = build(config, data)
    assert config.model.options == {"base": "mixture"}
    assert isinstance(model, Standardized)
    x = data.split("test")
    z = ((x - model.shift) / model.scale).double()
    train_z = ((data.split("train") - model.shift) / model.scale).double().numpy()
    fits = [GaussianMixture(k, random_state=0).fit(train_z) for k in range(1, 6)]
    best = min(fits, key=lambda f: f.bic(train_z))
    assert best.n_components == 2
    expected = torch.as_tensor(best.score_samples(z.numpy())) - model.scale.log().sum()
    torch.testing.assert_close(model.log_prob(x).detach().double(), expected, rtol=0, atol=1e-5)

    config = make_config(steps=3, early_stopping=False)
    config.model = ComponentConfig("maf")
    fit(config, tmp_path, progress=False, dataset=data)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["model"]["options"] == {"base": "mixture"}
    again, _, _ = load_run(tmp_path)
    assert type(again.model.base).__name__ == "MixtureNormal"


@pytest.mark.parametrize(("family", "explicit"), [
    ("ddpm", {"reference": "mixture"}),
    ("vae", {"prior": "gmm", "start": "identity"}),
    ("nsf", {"base": "mixture"}),
])  # fmt: skip
def test_the_default_is_the_explicit_option(make_config, family: str, explicit: dict) -> None:
    """The engine's small-data build equals the build that names the options: same weights."""
    data = _data(300)
    built = {}
    for options in ({}, explicit):
        config = make_config(early_stopping=False)
        config.model = ComponentConfig(family, dict(options))
        built[bool(options)], _ = build(config, data)
        assert config.model.options == explicit
    default, named = built[False].state_dict(), built[True].state_dict()
    assert default.keys() == named.keys()
    for key in default:
        torch.testing.assert_close(default[key], named[key], rtol=0, atol=0)
