"""Shareable models: save_pretrained / from_pretrained round trips, probgen.load, bad folders.

Every registered family round-trips bit for bit: after loading, ``log_prob``
is equal to 0 ulp (with the same generator for the families whose log_prob
draws noise) and ``sample`` with the same generator gives the same draws, for
the family as ``build_model`` wraps it (Standardized on continuous data,
Dequantized or bare on data with levels) and for conditional models.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import probgen
from probgen.core import (
    ConditionSpec,
    DataSpec,
    GenerativeModel,
    InvalidInput,
    Likelihood,
    call_log_prob,
)
from probgen.models import Dequantized, Standardized, build_model
from probgen.models.build import BuildRecord
from probgen.pretrained import FORMAT_VERSION, PretrainedVersionWarning, read_pretrained_config
from probgen.registry import MODELS
from probgen.train import (
    CheckpointError,
    ComponentConfig,
    RunConfig,
    TrainConfig,
    build,
    fit,
    load_run,
)
from probgen.train.checkpoint import read_checkpoint
from probgen.train.config import BayesConfig

SMALL: dict[str, dict[str, Any]] = {
    "ddpm": {"chain_steps": 50, "sample_steps": 5, "hidden": [16, 16]},
    "score_sde": {"sample_steps": 5, "vlb_steps": 5, "hidden": [16, 16], "likelihood": "vlb"},
    "ebm": {"hidden": [16, 16], "train_steps": 2, "buffer_size": 32},
    "glow": {"steps": 1, "hidden": 8},
    "made": {"hidden": [16]},
    "maf": {"transforms": 2, "hidden": [16, 16]},
    "nsf": {"transforms": 2, "hidden": [16, 16]},
    "realnvp": {"transforms": 2, "hidden": [16, 16]},
    "pixelcnn": {"hidden": 8, "layers": 2, "kernel_size": 3},
    "transformer": {"n_layer": 1, "n_head": 2, "n_embd": 16},
    "vae": {"hidden": [16], "channels": [4, 8], "latent_dim": 2},
}
"""Small networks (JSON options, as a config file gives them); other families use defaults.
The score SDE is scored by its VLB here, not its seconds-long ODE: the weights are the point."""

SPECS = (DataSpec((2,)), DataSpec((1, 8, 8), levels=4), DataSpec((6,), levels=5))


def _data(spec: DataSpec, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if spec.levels is None:
        return 3.0 + 2.0 * torch.randn(n, *spec.event_shape, generator=g)
    return torch.randint(spec.levels, (n, *spec.event_shape), generator=g).double()


def _build(
    name: str, spec: DataSpec | None = None, **extra: Any
) -> tuple[GenerativeModel, DataSpec]:
    """The family built for the first spec it accepts, its weights moved off their init."""
    for candidate in (spec,) if spec is not None else SPECS:
        try:
            model = build_model(
                name,
                candidate,
                train_data=_data(candidate, 64) if candidate.levels is None else None,
                **extra,
                **SMALL.get(name, {}),
            )
        except InvalidInput:
            continue
        with torch.no_grad():  # so a fresh build could not pass for the loaded one
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        return model.eval(), candidate
    pytest.fail(f"{name} accepts none of {SPECS}")


def _assert_same_model(
    a: GenerativeModel, b: GenerativeModel, spec: DataSpec, **condition: Any
) -> None:
    assert type(a) is type(b) and a.likelihood is b.likelihood
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)
    x = a.sample(6, generator=torch.Generator().manual_seed(2), **condition)
    y = b.sample(6, generator=torch.Generator().manual_seed(2), **condition)
    assert torch.equal(x, y)
    if a.likelihood is Likelihood.NONE:
        return
    c = condition.get("condition")
    c = None if c is None else a.condition_spec.expand(c, 6)
    data = _data(spec, 6).to(x.dtype) if spec.levels is None else x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a point outside the training range warns, in both
        la = call_log_prob(a, data, torch.Generator().manual_seed(3), c)
        lb = call_log_prob(b, data, torch.Generator().manual_seed(3), c)
    assert torch.equal(la, lb)  # 0 ulp


@pytest.mark.parametrize("name", MODELS.names())
def test_every_family_round_trips_bit_for_bit(name: str, tmp_path: Path) -> None:
    model, spec = _build(name)
    path = model.save_pretrained(tmp_path / name)
    loaded = probgen.from_pretrained(path)
    assert not loaded.training
    _assert_same_model(model, loaded, spec)
    assert sorted(p.name for p in path.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]


@pytest.mark.parametrize(
    ("name", "spec", "wrapper"),
    [
        ("realnvp", DataSpec((3,)), Standardized),
        ("nsf", DataSpec((1, 4, 4), levels=4), Dequantized),
        ("vae", DataSpec((1, 8, 8), levels=4), None),
    ],
)
def test_wrapped_models_keep_their_data_map(name, spec, wrapper, tmp_path: Path) -> None:
    model, _ = _build(name, spec)
    assert wrapper is None or isinstance(model, wrapper)
    loaded = probgen.from_pretrained(model.save_pretrained(tmp_path / "m"))
    _assert_same_model(model, loaded, spec)
    config = read_pretrained_config(tmp_path / "m")
    if wrapper is Standardized:
        assert config["data_map"]["shift"] == model.shift.tolist()
        assert torch.equal(loaded.low, model.low) and torch.equal(loaded.high, model.high)
        assert config["structure"] == "Standardized(RealNVP)"
    else:
        assert config["data_map"] is None and config["spec"]["levels"] == spec.levels
        assert config["structure"] == ("Dequantized(NSF)" if wrapper else "VAE")


@pytest.mark.parametrize(
    ("name", "condition", "c"),
    [
        ("maf", ConditionSpec(classes=3), 2),
        ("realnvp", ConditionSpec(shape=(2,)), [0.5, -1.0]),
        ("vae", ConditionSpec(classes=3), 1),
        ("gan", ConditionSpec(classes=3), 0),
        ("ddpm", ConditionSpec(classes=3), 1),
    ],
)
def test_conditional_models_round_trip(name, condition, c, tmp_path: Path) -> None:
    spec = DataSpec((2,), condition=condition)
    g = torch.Generator().manual_seed(4)
    conditions = (
        torch.randint(3, (64,), generator=g)
        if condition.is_classes
        else 2.0 + torch.randn(64, 2, generator=g)
    )
    model, _ = _build(name, spec, train_conditions=conditions)
    loaded = probgen.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert loaded.condition_spec == condition
    _assert_same_model(model, loaded, spec, condition=c)
    if not condition.is_classes:  # the condition's own map is kept
        assert torch.equal(loaded.condition_shift, model.condition_shift)


def test_vae_started_at_the_em_mixture_round_trips(tmp_path: Path) -> None:
    """The EM-fitted prior (with its active slots) and the skip networks load bit for bit."""
    spec = DataSpec((2,))
    model, _ = _build("vae", spec, prior="gmm", start="identity")
    loaded = probgen.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert torch.equal(loaded.model.prior.active, model.model.prior.active)
    assert int(model.model.prior.active.sum()) < len(model.model.prior.active)  # k by BIC < 5
    _assert_same_model(model, loaded, spec)


def test_float32_models_load_in_float32(tmp_path: Path) -> None:
    torch.set_default_dtype(torch.float32)
    model, spec = _build("maf")
    torch.set_default_dtype(torch.float64)  # the reader's default does not matter
    loaded = GenerativeModel.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    _assert_same_model(model, loaded, spec)


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, spec = _build("realnvp")
    model.save_pretrained(tmp_path / "m")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unpickled")

    for target in (pickle, "loads"), (pickle, "load"), (torch, "load"):
        monkeypatch.setattr(*target, refuse)
    _assert_same_model(model, probgen.from_pretrained(tmp_path / "m"), spec)


def test_card_follows_the_hub_conventions(tmp_path: Path) -> None:
    model, _ = _build("realnvp")
    rng = torch.get_rng_state()
    card = (model.save_pretrained(tmp_path / "m") / "README.md").read_text()
    assert torch.equal(torch.get_rng_state(), rng)  # rebuilding to check draws from its own seed
    front = card.split("---")[1]
    import yaml

    meta = yaml.safe_load(front)
    assert meta["library_name"] == "probgen" and "realnvp" in meta["tags"]
    assert "exact: `log_prob` is log p(x)" in card and probgen.__version__ in card


# ----------------------------------------------------------------------------- probgen.load


def _run(tmp_path: Path) -> Path:
    """A MAF run on 32 two-moons points that stops early, after its best validation."""
    config = RunConfig(
        model=ComponentConfig("maf", {"transforms": 2, "hidden": [16]}),
        data=ComponentConfig("two_moons", {"n_train": 32, "n_validation": 64, "n_test": 64}),
        train=TrainConfig(
            steps=300, batch_size=32, lr=3e-2, log_every=5, device="cpu", patience=2,
            eval_every=5, refit=False,  # the early-stopped run itself, whose best weights load
        ),
    )  # fmt: skip
    result = fit(config, tmp_path / "run", progress=False)
    assert result.stop_reason == "early_stopping" and result.best_step < result.steps
    return tmp_path / "run"


def test_load_gives_the_best_weights_of_a_run_and_its_card(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (run / "metrics.json").write_text(json.dumps({"test": {"nll": {
        "value": 1.25, "stderr": 0.01, "kind": "exact", "unit": "nats"}}}))  # fmt: skip
    model = probgen.load(run)
    reference, config, _ = load_run(run)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True)
    )
    last = read_checkpoint(run / "checkpoint")  # the last weights, which the best replaced
    last_model = build_model(
        "maf",
        model.build_record.spec,
        standardize=config.train.standardize,
        transforms=2,
        hidden=[16],
    )
    last.load_module("model", last_model)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), last_model.state_dict().values(), strict=True)
    )

    folder = model.save_pretrained(tmp_path / "shared")
    card = (folder / "README.md").read_text()
    assert "# maf on two_moons" in card and "| nll | 1.25 | 0.01 | exact | nats |" in card
    assert "probgen train config.yaml" in card and "patience: 2" in card
    again = probgen.from_pretrained(folder)
    assert again.provenance.metrics["test"]["nll"]["value"] == 1.25
    _assert_same_model(model, again, model.build_record.spec)


def test_load_names_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a run directory"):
        probgen.load(tmp_path)


# ----------------------------------------------------------------------------- bad folders


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    model, _ = _build("gaussian")
    return model.save_pretrained(tmp_path / "m")


def _edit_config(folder: Path, **changes: Any) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("version", "match"),
    [(0, r"format version 0 .* load it with probgen 0\.1\.0 and save it again"),
     (FORMAT_VERSION + 1, "upgrade probgen")],
)  # fmt: skip
def test_another_format_version_is_refused_with_a_clear_message(folder, version, match) -> None:
    _edit_config(folder, format_version=version)
    with pytest.raises(CheckpointError, match=match):
        probgen.from_pretrained(folder)


def test_another_library_version_loads_with_a_warning(folder: Path) -> None:
    _edit_config(folder, library_version="0.0.1")
    with pytest.warns(PretrainedVersionWarning, match=r"saved by probgen 0\.0\.1"):
        probgen.from_pretrained(folder)


OTHER_SPEC = {"event_shape": [3], "levels": None, "condition": None}


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda f: (f / "config.json").unlink(), "config.json is missing"),
        (lambda f: (f / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda f: (f / "config.json").write_text("{"), "not valid JSON"),
        (lambda f: (f / "config.json").write_text('{"a": 1}'), "not written by probgen"),
        (lambda f: (f / "model.safetensors").write_bytes(b"\0" * 64), "SHA-256 differs"),
        (lambda f: _drop(f, "family"), "missing key 'family'"),
        (lambda f: _edit_config(f, spec=OTHER_SPEC), "cannot rebuild 'gaussian'"),
        (lambda f: _edit_config(f, data_map=None), "GaussianModel config.json builds: missing"),
    ],
)  # fmt: skip
def test_a_damaged_folder_gets_a_one_line_error(folder: Path, damage, match) -> None:
    damage(folder)
    with pytest.raises(CheckpointError, match=match):
        probgen.from_pretrained(folder)


def _drop(folder: Path, key: str) -> None:
    config = json.loads((folder / "config.json").read_text())
    del config[key]
    (folder / "config.json").write_text(json.dumps(config))


def test_saving_never_replaces_a_folder_silently(folder: Path) -> None:
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")  # a Hub clone's file
    model, spec = _build("realnvp")
    with pytest.raises(InvalidInput, match="exists; pass overwrite=True"):
        model.save_pretrained(folder)
    model.save_pretrained(folder, overwrite=True)
    assert (folder / ".gitattributes").read_text() == "*.safetensors filter=lfs\n"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".gitattributes", "README.md", "config.json", "model.safetensors"]  # fmt: skip
    _assert_same_model(model, probgen.from_pretrained(folder), spec)


def test_an_interrupted_save_loses_nothing_and_is_detected(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import probgen.pretrained as pretrained

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model, _ = _build("gaussian")
    renames = []

    def crash_after_the_weights(src: Any, dst: Any) -> None:
        if renames:
            raise KeyboardInterrupt
        renames.append(dst)
        os.rename(src, dst)

    monkeypatch.setattr(pretrained.os, "replace", crash_after_the_weights)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(folder, overwrite=True)
    assert [Path(r).name for r in renames] == ["model.safetensors"]
    assert (folder / "config.json").read_bytes() == before["config.json"]  # the old config
    with pytest.raises(CheckpointError, match=r"SHA-256 differs.*interrupted"):
        probgen.from_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(before)  # no temporary left
    monkeypatch.setattr(pretrained, "model_card", lambda config: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a new folder appears whole or not at all
        model.save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new*"))


def test_a_model_that_cannot_be_rebuilt_is_refused_when_saving(tmp_path: Path) -> None:
    bare = MODELS.get("gaussian")(event_shape=(2,))
    with pytest.raises(InvalidInput, match="no build_record"):
        bare.save_pretrained(tmp_path / "a")
    with pytest.raises(
        InvalidInput, match=r"not what its build record .*: loc is .* expects torch.float64 \(3,\)"
    ):
        bare.save_pretrained(tmp_path / "a", record=BuildRecord("gaussian", DataSpec((3,))))
    bare.save_pretrained(tmp_path / "a", record=BuildRecord("gaussian", DataSpec((2,))))
    assert not (tmp_path / "b").exists()
    odd = BuildRecord("realnvp", DataSpec((2,)), {"hidden": object()})
    with pytest.raises(InvalidInput, match="option 'hidden' of 'realnvp' is a object, not JSON"):
        _build("realnvp")[0].save_pretrained(tmp_path / "b", record=odd)
    assert not (tmp_path / "b").exists()  # nothing half-written


def test_a_bayesian_run_is_refused_with_the_reason(tmp_path: Path) -> None:
    config = RunConfig(
        model=ComponentConfig("gaussian"),
        data=ComponentConfig("two_moons", {"n_train": 50, "n_validation": 64, "n_test": 64}),
        train=TrainConfig(device="cpu"),
        bayes=BayesConfig(layers=["loc"], samples=2),
    )
    model, _ = build(config)
    with pytest.raises(InvalidInput, match=r"not what its build record .* made Bayesian\?"):
        model.save_pretrained(tmp_path / "b")
    assert not (tmp_path / "b").exists()
