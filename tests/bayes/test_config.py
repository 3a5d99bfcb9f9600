"""The ``bayes:`` run-config switch: validation, build, a short fit and reload."""

from __future__ import annotations

import pytest
import torch

from probgen.bayes import SGLD, BayesianModel, MeanField
from probgen.models import Standardized
from probgen.train import ConfigError, build, config_to_dict, fit, load_config, load_run

BASE = {
    "model": {"name": "gaussian"},
    "data": {"name": "two_moons", "options": {"n_train": 50, "n_validation": 64, "n_test": 64}},
    "train": {"steps": 4, "batch_size": 16, "device": "cpu", "log_every": 1},
}


def _config(bayes: dict, **train):
    overrides = {**BASE, "bayes": bayes, "train": {**BASE["train"], **train}}
    return load_config(None, overrides)


def _family(model):
    """The Bayesian family inside the data map that continuous data get (Standardized)."""
    assert isinstance(model, Standardized)
    return model.model


def test_config_builds_a_bayesian_model():
    config = _config({"method": "mean_field", "layers": ["loc"], "prior_std": 2.0, "samples": 3})
    model = _family(build(config)[0])
    assert isinstance(model, BayesianModel) and isinstance(model.posterior, MeanField)
    assert model.posterior.names == ["loc"] and model.posterior.prior_std == 2.0
    assert model.posterior.num_data == 50 and model.samples == 3
    assert config_to_dict(config)["bayes"]["layers"] == ["loc"]
    assert "bayes" not in config_to_dict(load_config(None, BASE))


def test_sgld_takes_its_step_from_the_optimizer():
    config = _config({"method": "sgld", "options": {"burn_in": 2}}, optimizer="sgd", betas=[0, 0])
    model = _family(build(config)[0])
    assert isinstance(model.posterior, SGLD) and model.posterior.step_size == config.train.lr


@pytest.mark.parametrize(
    ("bayes", "train", "message"),
    [
        ({"method": "laplace"}, {}, "unknown value 'laplace'; choose one of: mean_field, sgld"),
        ({"method": "sgld"}, {}, "optimizer must be sgd"),
        ({"options": {"temperature": 2}}, {}, "bayes.options: .*temperature"),
        ({"samples": 0}, {}, "bayes.samples"),
        ({"layers": "loc"}, {}, "bayes.layers"),
        ({"prior_std": 0}, {}, "prior_std"),
    ],
)
def test_invalid_bayes_sections_are_config_errors(bayes: dict, train: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        _config(bayes, **train)


def test_fit_and_reload(tmp_path):
    config = _config({"method": "mean_field", "layers": ["loc"], "samples": 2})
    result = fit(config, tmp_path / "run", progress=False)
    assert isinstance(_family(result.model), BayesianModel)
    model, reloaded, _ = load_run(tmp_path / "run")
    assert isinstance(_family(model), BayesianModel) and reloaded.bayes == config.bayes
    for a, b in zip(model.state_dict().values(), result.model.state_dict().values(), strict=True):
        assert torch.equal(a.cpu(), b.cpu())
