"""One conformance test over every registered model: the protocol of DESIGN.md.

Each model in ``probgen.registry.MODELS`` is built for the first data spec its
``for_data`` accepts and must then honour the protocol: ``sample(n)`` has
shape ``(n, *event_shape)``; ``log_prob`` returns ``(B,)`` finite values or
raises ``IntractableLikelihood`` exactly when ``likelihood`` is NONE; every
player's loss is a finite scalar whose gradient reaches that player's
parameters; the model moves between dtypes; its weights survive a
safetensors round trip. Each check runs with float32 and with float64 as the
default dtype (the ``dtype`` fixture): parameters, log-probabilities and losses
come out in it. Registering a model adds it here automatically.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from probgen.core import DataSpec, IntractableLikelihood, InvalidInput, Likelihood, UnknownPlayer
from probgen.registry import MODELS

SPECS = (
    DataSpec((2,)),
    DataSpec((1, 8, 8), levels=4),
    DataSpec((6,), levels=5),
)
# Small networks keep the whole table fast; options a model lacks are dropped.


def _example_batch(spec: DataSpec, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if spec.levels is None:
        return torch.randn(n, *spec.event_shape, generator=g)
    return torch.randint(spec.levels, (n, *spec.event_shape), generator=g).to(
        torch.get_default_dtype()
    )


def _build(name: str):
    for spec in SPECS:
        try:
            return MODELS.get(name).for_data(spec), spec
        except InvalidInput:
            continue
    pytest.fail(f"model {name!r} accepts none of the conformance specs {SPECS}")


@pytest.mark.parametrize("name", MODELS.names())
def test_registered_model_honours_the_protocol(name: str, tmp_path, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model, spec = _build(name)
    assert all(p.dtype == dtype for p in model.parameters())
    samples = model.sample(3)
    assert tuple(samples.shape) == (3, *model.event_shape)
    assert torch.isfinite(samples.double()).all()
    x = _example_batch(spec, 8).to(samples.dtype)  # data in the dtype the model emits (tokens)

    if model.likelihood is Likelihood.NONE:
        with pytest.raises(IntractableLikelihood):
            model.log_prob(x)
    else:
        lp = model.log_prob(x)
        assert lp.shape == (8,) and lp.dtype == dtype
        assert torch.isfinite(lp).all()

    players = model.players()
    assert players, "a model has at least one player"
    assert model.player_names() == tuple(players)  # what loss checks its player against
    with pytest.raises(UnknownPlayer):
        model.loss(x, "nobody")
    for player, params in players.items():
        model.zero_grad(set_to_none=True)
        loss = model.loss(x, player)
        assert loss.dim() == 0 and loss.dtype == dtype and torch.isfinite(loss)
        loss.backward()
        # (a zero-initialised output layer may make the first gradient exactly 0)
        assert any(p.grad is not None for p in params), (
            f"{name}: the loss of {player!r} does not reach its parameters"
        )

    model.to(torch.float32)
    model.to(torch.float64)

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    restored = load_file(str(path))
    assert restored.keys() == state.keys()
    assert all(torch.equal(restored[k], state[k]) for k in state)


@pytest.mark.parametrize("name", MODELS.names())
def test_registered_model_rejects_a_batch_of_the_wrong_shape(name: str, dtype: torch.dtype) -> None:
    model, spec = _build(name)
    wrong = torch.zeros(4, *spec.event_shape, 3)
    with pytest.raises(InvalidInput):
        if model.likelihood is Likelihood.NONE:
            model.loss(wrong, next(iter(model.players())))
        else:
            model.log_prob(wrong)
