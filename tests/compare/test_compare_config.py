"""Comparison configs: the default list follows the registry, budgets are equal, settings merge."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from probgen.compare import (
    LoadedEntry,
    TrainedEntry,
    applicable_models,
    load_compare_config,
)
from probgen.compare.config import TIME_BUDGET_STEPS
from probgen.core import DataSpec, GenerativeModel, InvalidInput
from probgen.registry import MODELS
from probgen.train import ConfigError, fit, load_config
from probgen.train.threads import available_cores


class OnlyImages(GenerativeModel):
    """A stand-in family that refuses anything but (C, H, W) events."""

    @classmethod
    def for_data(cls, spec: DataSpec, **options: object) -> GenerativeModel:
        if len(spec.event_shape) != 3:
            raise InvalidInput("OnlyImages: expected (C, H, W) events")
        return cls(spec.event_shape)

    def sample(self, n: int, **options: object) -> None:  # never called here
        raise AssertionError


class AnyData(OnlyImages):
    """A stand-in family that accepts every data set."""

    @classmethod
    def for_data(cls, spec: DataSpec, **options: object) -> GenerativeModel:
        return cls(spec.event_shape)


@pytest.fixture
def extra_families(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two new registry entries, as a new family's one line in registry.py would add."""
    entries = {
        **MODELS._entries,
        "zz_images": f"{__name__}:OnlyImages",
        "zz_any": f"{__name__}:AnyData",
    }
    monkeypatch.setattr(MODELS, "_entries", entries)


def test_default_compares_the_registered_families_that_build_for_2d_points() -> None:
    config = load_compare_config()
    names = [e.family for e in config.models]
    assert config.data.name == "8gaussians"
    assert names == applicable_models(DataSpec((2,)))
    assert {"gaussian", "realnvp", "vae", "gan", "ebm"} <= set(names)
    assert not {"pixelcnn", "transformer", "glow"} & set(names)  # images / tokens only
    assert all(isinstance(e, TrainedEntry) for e in config.models)


def test_new_registry_entries_are_picked_up_without_code_changes(extra_families: None) -> None:
    names = [e.family for e in load_compare_config().models]
    assert "zz_any" in names
    assert "zz_images" not in names


def test_default_trains_each_family_for_its_fixed_steps_without_a_time_budget() -> None:
    config = load_compare_config()
    source = config.source
    for entry in config.models:
        train = entry.config.train
        family = source["families"].get(entry.family, {}).get("train", {})
        assert train.time_budget is None
        assert train.steps == family.get("steps", source["train"]["steps"])
    assert config.workers == min(available_cores(), len(config.models))
    if config.workers > 1:
        assert {e.config.train.threads for e in config.models} == {1}


def test_workers_one_keeps_the_engines_thread_rule() -> None:
    config = load_compare_config(None, {"models": ["gaussian"], "workers": 1})
    assert config.workers == 1 and config.models[0].config.train.threads == "auto"
    pinned = load_compare_config(
        None, {"models": [{"name": "gaussian", "train": {"threads": 2}}], "workers": 2}
    )
    assert pinned.models[0].config.train.threads == 2  # named by the entry: kept


def test_total_budget_is_split_equally_and_replaces_the_step_counts() -> None:
    config = load_compare_config(
        None, {"models": ["gaussian", "maf", "gan"], "total_time_budget": 9}
    )
    assert [e.config.train.time_budget for e in config.models] == [3.0, 3.0, 3.0]
    assert {e.config.train.steps for e in config.models} == {TIME_BUDGET_STEPS}
    per_model = load_compare_config(
        None, {"models": ["gaussian", "gan"], "total_time_budget": None, "time_budget": 5}
    )
    assert [e.config.train.time_budget for e in per_model.models] == [5.0, 5.0]


def test_settings_merge_shared_then_family_then_entry(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"name": "8gaussians", "options": {"n_test": 100}},
                "time_budget": 2,
                "train": {"lr": 0.01, "batch_size": 64},
                "families": {"wgan": {"options": {"latent_dim": 3}, "train": {"lr": 0.002}}},
                "models": [
                    "wgan",
                    {"name": "wgan", "label": "wgan-small", "options": {"hidden": [16]},
                     "train": {"batch_size": 32}},
                ],
            }
        )
    )  # fmt: skip
    a, b = load_compare_config(path).models
    assert (a.label, b.label) == ("wgan", "wgan-small")
    assert a.config.train.lr == b.config.train.lr == 0.002
    assert (a.config.train.batch_size, b.config.train.batch_size) == (64, 32)
    assert a.config.model.options == {"latent_dim": 3}
    assert b.config.model.options == {"latent_dim": 3, "hidden": [16]}
    assert a.config.data.options == {"n_test": 100}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"modles": ["gaussian"]}, "unknown key 'modles'"),
        ({"models": ["gaussian", "gaussian"]}, "label 'gaussian' is used twice"),
        ({"models": ["nope"]}, "unknown value 'nope'"),
        ({"models": [{"name": "gaussian", "label": "a/b"}]}, "models[0].label"),
        ({"models": []}, "the list is empty"),
        ({"time_budget": 3, "total_time_budget": 9}, "exclude each other"),
        ({"workers": 0}, "workers: expected 'auto' or an integer"),
        ({"workers": "many"}, "workers: expected 'auto' or an integer"),
        ({"total_time_budget": -1}, "positive number of seconds"),
        ({"data": {"name": "nodata"}}, "unknown data set 'nodata'"),
        ({"evaluation": {"split": "dev"}}, "unknown split 'dev'"),
        ({"models": [{"name": "vae", "options": {"width": 3}}]}, "unknown option 'width'"),
        ({"models": [{"name": "gaussian", "train": {"lr": -1}}]}, "train.lr: must be > 0"),
    ],
)
def test_bad_configs_give_one_line_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_compare_config(None, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_run_folders_are_loaded_only_when_trained_on_the_same_data(tmp_path: Path) -> None:
    run = load_config(
        None,
        {
            "model": {"name": "gaussian"},
            "data": {"name": "8gaussians"},
            "train": {"steps": 2, "device": "cpu"},
        },
    )
    fit(run, tmp_path / "g", progress=False)
    config = load_compare_config(
        None, {"models": [{"run": str(tmp_path / "g"), "label": "mine"}, "maf"]}
    )
    loaded, _ = config.models
    assert isinstance(loaded, LoadedEntry) and loaded.label == "mine"
    assert loaded.family == "gaussian"
    split = load_compare_config(
        None, {"models": [{"run": str(tmp_path / "g")}, "maf"], "total_time_budget": 8}
    )
    assert split.models[1].config.train.time_budget == 8  # one model is trained: it gets it all
    with pytest.raises(ConfigError, match="trained on 8gaussians"):
        load_compare_config(None, {"data": "two_moons", "models": [{"run": str(tmp_path / "g")}]})
    with pytest.raises(ConfigError, match="not a run folder"):
        load_compare_config(None, {"models": [{"run": str(tmp_path / "missing")}]})


def test_a_data_set_with_its_own_embedded_config_starts_from_it(tmp_path: Path) -> None:
    digits = load_compare_config(None, {"data": {"name": "digits"}})
    assert digits.name == "compare-digits" and digits.data.name == "digits"
    assert [e.label for e in digits.models][:3] == ["gaussian", "made", "maf"]
    assert {e.config.train.steps for e in digits.models if e.label == "pixelcnn"} == {250}
    assert load_compare_config(None, {"data": "digits"}).name == "compare-digits"
    toy = load_compare_config(None, {"data": {"name": "two_moons"}})  # no two_moons.yaml
    assert toy.name == "compare" and toy.data.name == "two_moons"
    path = tmp_path / "mine.yaml"  # a given file wins over the embedded one
    path.write_text("name: mine\nmodels: [gaussian]\n")
    assert load_compare_config(path, {"data": {"name": "digits"}}).name == "mine"
