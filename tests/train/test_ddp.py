"""Data parallel training through Fabric's DDP: 2 CPU processes (gloo) keep identical weights.

Fabric's launcher re-runs the command for rank 1, so the training lives in a
script run as a subprocess. It trains twice in the same process group: the
Gaussian (one player) and a two-player model whose players' losses leave the
other's parameters unused (which plain DDP rejects; the engine passes
``find_unused_parameters=True``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    import torch
    from torch import nn

    from probgen.core import DataSpec, GenerativeModel
    from probgen.data.base import ArrayDataset
    from probgen.models.gaussian import GaussianModel
    from probgen.train import ComponentConfig, RunConfig, TrainConfig, fit


    class Pair(GenerativeModel):
        def __init__(self):
            super().__init__((2,))
            self.a = nn.Parameter(torch.zeros(2))
            self.b = nn.Parameter(torch.ones(2))

        def players(self):
            return {"critic": [self.b], "generator": [self.a]}

        def loss(self, x, player="model"):
            if player == "generator":
                return (x - self.a).pow(2).mean()
            return (x * self.b - 1).pow(2).mean()

        def sample(self, n, **options):
            return self.a.detach().expand(n, 2).clone()


    out = Path(sys.argv[1])
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    x = torch.randn(256, 2) @ torch.tensor([[1.5, 0.0], [0.8, 0.4]])
    data = ArrayDataset(x, x[:64], x[:64], DataSpec((2,)))
    report = {}
    for name, model, spr in (("single", GaussianModel((2,)), {}), ("pair", Pair(), {"critic": 2})):
        config = RunConfig(
            model=ComponentConfig("gaussian"),
            data=ComponentConfig("array"),
            train=TrainConfig(steps=15, batch_size=32, lr=0.05, device="cpu", devices=2,
                              strategy="ddp", log_every=5, steps_per_round=spr),
        )
        init = {k: v.tolist() for k, v in model.state_dict().items()}
        result = fit(config, out / name, model=model, dataset=data, progress=False)
        report[name] = {
            "init": init,
            "final": {k: v.tolist() for k, v in model.state_dict().items()},
            "losses": [v for r in result.history for k, v in r.items() if k.startswith("loss/")],
        }
    (out / f"rank{result.global_rank}.json").write_text(json.dumps(report))
    """
)


@pytest.mark.slow
def test_ddp_replicas_stay_identical(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for run in ("single", "pair"):
        assert rank0[run]["final"] == rank1[run]["final"], run
        assert rank0[run]["final"] != rank0[run]["init"], run
        # each rank drew its own batches, so the local losses differ
        assert rank0[run]["losses"] != rank1[run]["losses"], run
