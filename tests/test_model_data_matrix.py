"""Every registered model × every registered data set it can be built for: 20 float32 steps.

Each pair is built as the engine builds it (``probgen.models.build_model`` on the
data set's spec), with small network options where the family has them, and
takes 20 rounds of Adam through the protocol (``players()``, ``loss(x, player)``)
in float32, the dtype users train in. Every loss and every gradient must be
finite. A pair is skipped only when the family's ``for_data`` refuses the data
with ``InvalidInput`` (e.g. a PixelCNN on 2-D points); real data sets come from
the ``data_dir`` fixture and are skipped when absent.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from probgen.core import InvalidInput
from probgen.data.base import Dataset
from probgen.data.files import MissingDataFile
from probgen.models import build_model
from probgen.registry import DATASETS, MODELS

STEPS = 20
BATCH = 16

SMALL: dict[str, dict[str, Any]] = {
    "ddpm": {"chain_steps": 100, "sample_steps": 10, "hidden": (32, 32)},
    "score_sde": {"sample_steps": 10, "vlb_steps": 10, "hidden": (32, 32)},
    "flow_matching": {"hidden": (32, 32)},
    "ebm": {"hidden": (32, 32), "train_steps": 2, "buffer_size": 64},
    "ensemble": {"family": "maf", "members": 2, "transforms": 2, "hidden": (16, 16)},
    "glow": {"steps": 1, "hidden": 16},
    "made": {"hidden": (16,)},
    "maf": {"transforms": 2, "hidden": (16, 16)},
    "nsf": {"transforms": 2, "hidden": (16, 16)},
    "realnvp": {"transforms": 2, "hidden": (16, 16)},
    "pixelcnn": {"hidden": 8, "layers": 2, "kernel_size": 3},
    "transformer": {"n_layer": 1, "n_head": 2, "n_embd": 16},
    "vae": {"hidden": (32,), "channels": (8, 16), "latent_dim": 4},
}
"""Small networks, so the whole matrix stays fast; families not listed use their defaults."""

TOY = [name for name in DATASETS.names() if DATASETS.target(name).endswith("ToyDataset")]

DATA: dict[str, Callable[[Path], Dataset]] = {
    **{
        name: (lambda root, name=name: DATASETS.get(name)(n_train=256, n_validation=64, n_test=64))
        for name in TOY
    },
    "digits": lambda root: DATASETS.get("digits")(),
    "mnist": lambda root: DATASETS.get("mnist")(root=root),
    "mnist-binarized": lambda root: DATASETS.get("mnist")(root=root, binarize=True),
    "fashion_mnist": lambda root: DATASETS.get("fashion_mnist")(root=root),
    "text": lambda root: DATASETS.get("text")(
        path=root / "tinyshakespeare" / "input.txt", context=16
    ),
    "tinyshakespeare": lambda root: DATASETS.get("tinyshakespeare")(root=root, context=16),
    **{
        name: (lambda root, name=name: DATASETS.get(name)(n_train=256, n_validation=64, n_test=64))
        for name in ("sbi_gaussian_linear", "sbi_two_moons")
    },
    "arrays": lambda root: _user_arrays(),
    "file": lambda root: _user_csv(),
}
"""Every registered data set (MNIST also at 2 levels), with a small context for text."""


def _user_arrays() -> Dataset:
    """A user's (x, c) pairs in a .npz file: 3-D points with 4 class labels."""
    rng = np.random.default_rng(0)
    path = Path(tempfile.mkdtemp()) / "pairs.npz"
    np.savez(path, x=rng.normal(size=(320, 3)), c=rng.integers(0, 4, size=320))
    return DATASETS.get("arrays")(path=str(path), conditions=str(path))


def _user_csv() -> Dataset:
    """A user's CSV: two columns of points and a class label column (3 classes)."""
    rng = np.random.default_rng(0)
    path = Path(tempfile.mkdtemp()) / "points.csv"
    rows = np.column_stack([rng.normal(size=(320, 2)), rng.integers(0, 3, size=320)])
    np.savetxt(
        path, rows, delimiter=",", header="u,v,label", comments="", fmt=["%.6f", "%.6f", "%d"]
    )
    return DATASETS.get("file")(path=path, label="label")


REAL = {"mnist", "mnist-binarized", "fashion_mnist", "text", "tinyshakespeare"}
_CACHE: dict[str, Dataset] = {}


def test_every_registered_data_set_is_in_the_matrix() -> None:
    """Adding a data set to the registry adds it here (or this fails)."""
    assert {name.split("-")[0] for name in DATA} == set(DATASETS.names())


def _dataset(name: str, root: Path) -> Dataset:
    if name not in _CACHE:
        try:
            dataset = DATA[name](root)
            dataset.split("train")  # files are read on first use
        except MissingDataFile as e:
            pytest.skip(str(e))
        _CACHE[name] = dataset
    return _CACHE[name]


@pytest.mark.parametrize("data", list(DATA))
@pytest.mark.parametrize("model_name", MODELS.names())
def test_twenty_float32_steps_are_finite(
    model_name: str, data: str, request: pytest.FixtureRequest
) -> None:
    """20 Adam rounds in float32: every player's loss and every gradient finite."""
    torch.set_default_dtype(torch.float32)
    root = request.getfixturevalue("data_dir") if data in REAL else Path()
    dataset = _dataset(data, root)
    try:
        model = build_model(model_name, dataset.spec, **SMALL.get(model_name, {}))
    except InvalidInput as e:
        pytest.skip(f"{model_name} is not built for {data}: {e}")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    players = model.players()
    optims = {name: torch.optim.Adam(params, lr=1e-3) for name, params in players.items()}
    generator = torch.Generator().manual_seed(0)
    model.train()
    for step in range(1, STEPS + 1):
        for name, params in players.items():
            x, c = dataset.draw("train", BATCH, generator)
            c = c if model.condition_spec is not None else None  # a family not yet conditional
            loss = model.loss(x.to(torch.float32), name, condition=c)
            assert loss.dtype == torch.float32
            assert math.isfinite(loss.item()), f"step {step}: loss of {name!r} is {loss.item()}"
            optims[name].zero_grad()
            loss.backward()
            bad = [
                i
                for i, p in enumerate(params)
                if p.grad is not None and not p.grad.isfinite().all()
            ]
            assert not bad, f"step {step}: non-finite gradient in {len(bad)} of {name!r}'s tensors"
            optims[name].step()
