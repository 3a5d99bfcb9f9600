"""Run configs: YAML + overrides, strict validation with one-line messages, lossless round trip."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from probgen.core import ProbgenError
from probgen.train import ConfigError, load_config, parse_overrides, save_config

BASE = {"model": {"name": "gaussian"}, "data": {"name": "8gaussians", "options": {"n_train": 64}}}


def _write(tmp_path, content: dict) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(content))
    return str(path)


def test_yaml_with_overrides(tmp_path) -> None:
    path = _write(tmp_path, {**BASE, "seed": 3, "train": {"steps": 50, "lr": "1e-3"}})
    config = load_config(path, {"train.steps": 70, "train": {"batch_size": 16}})
    assert (config.seed, config.train.steps, config.train.batch_size) == (3, 70, 16)
    assert config.train.lr == 1e-3  # PyYAML reads "1e-3" as a string; accepted for floats
    assert config.data.options == {"n_train": 64}


def test_overrides_alone_and_free_form_options() -> None:
    overrides = parse_overrides(
        [
            "model.name=gaussian",
            "data.name=8gaussians",
            "data.options.n_train=32",
            "train.betas=[0.5, 0.9]",
            "train.ema_decay=null",
            "train.steps_per_round={model: 2}",
        ]
    )
    config = load_config(None, overrides)
    assert config.data.options == {"n_train": 32}
    assert config.train.betas == (0.5, 0.9)
    assert config.train.ema_decay is None
    assert config.train.steps_per_round == {"model": 2}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.stepz": 3}, r"unknown key 'train\.stepz'; valid keys: .*steps"),
        ({"lr": 0.1}, r"unknown key 'lr'; valid keys: bayes, data, model, name, seed, train"),
        ({"train.steps": "many"}, r"train\.steps: expected int, got 'many'"),
        ({"train.steps": 2.5}, r"train\.steps: expected int, got 2\.5"),
        ({"train.steps": True}, r"train\.steps: expected int, got True"),
        ({"train.steps": -1}, r"train\.steps: must be ≥ 0, got -1"),
        ({"train.betas": [0.9]}, r"train\.betas: expected a list of 2 numbers"),
        ({"train.optimizer": "adagrad"}, r"choose one of: adam, adamw, sgd"),
        ({"train.lr_schedule": "step"}, r"choose one of: constant, cosine, warmup"),
        ({"train.device": "tpu"}, r"choose one of: auto, cpu, cuda, mps"),
        ({"train.budget_clock": "gpu"}, r"budget_clock: .*choose one of: wall, cpu"),
        ({"train.ema_decay": 1.0}, r"ema_decay: must be in \(0, 1\)"),
        (
            {"model.name": "gausian"},
            r"model\.name: unknown value 'gausian'; choose one of: .*gaussian",
        ),
        ({"data.name": "nope"}, r"data\.name: unknown value 'nope'; choose one of: .*8gaussians"),
        ({"model.options": {"hidden": 3}}, r"unknown option 'hidden' for model 'gaussian'"),
        (
            {"data.name": "digits", "data.options": {"n": 3}},
            r"unknown option 'n' for data set 'digits'; valid options: conditional",
        ),
        ({"train.steps_per_round": {"critic": 0}}, r"steps_per_round\.critic: must be > 0"),
        ({"model": None}, r"model: expected a mapping, got None"),
    ],
)
def test_invalid_configs_raise_one_line_config_errors(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, {**{"model.name": "gaussian", "data.name": "8gaussians"}, **overrides})
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ProbgenError)


def test_missing_required_and_unreadable_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="missing required key 'model'"):
        load_config(None, {"data.name": "8gaussians"})
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.steps"])


@settings(max_examples=15, deadline=None)
@given(
    steps=st.integers(1, 10**6),
    lr=st.floats(1e-8, 10.0),
    ema=st.none() | st.floats(0.01, 0.999),
    clip=st.none() | st.floats(0.1, 100.0),
    spr=st.dictionaries(st.sampled_from(["critic", "generator"]), st.integers(1, 9)),
    name=st.text("abcxyz_-", min_size=1, max_size=8),
)
def test_saved_config_reloads_identically(tmp_path_factory, steps, lr, ema, clip, spr, name):
    config = load_config(
        None,
        {
            **BASE,
            "name": name,
            "train": {
                "steps": steps,
                "lr": lr,
                "ema_decay": ema,
                "grad_clip": clip,
                "steps_per_round": spr,
            },
        },
    )
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config


def test_model_options_are_checked_against_what_for_data_takes() -> None:
    base = {"model.name": "transformer", "data.name": "tinyshakespeare"}
    config = load_config(None, {**base, "model.options": {"n_layer": 2, "n_embd": 32}})
    assert config.model.options == {"n_layer": 2, "n_embd": 32}
    with pytest.raises(ConfigError, match=r"unknown option 'n_layr'.*valid options: .*n_layer"):
        load_config(None, {**base, "model.options": {"n_layr": 2}})
