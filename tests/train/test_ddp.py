"""Data parallel training through Fabric's DDP: 2 CPU processes (gloo) keep identical weights."""

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

    from probgen.core import DataSpec
    from probgen.data.base import ArrayDataset
    from probgen.models.gaussian import GaussianModel
    from probgen.train import ComponentConfig, RunConfig, TrainConfig, fit

    out = Path(sys.argv[1])
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    x = torch.randn(256, 2) @ torch.tensor([[1.5, 0.0], [0.8, 0.4]])
    data = ArrayDataset(x, x[:64], x[:64], DataSpec((2,)))
    config = RunConfig(
        model=ComponentConfig("gaussian"),
        data=ComponentConfig("array"),
        train=TrainConfig(
            steps=15, batch_size=32, lr=0.05, device="cpu", devices=2, strategy="ddp",
            log_every=5,
        ),
    )
    model = GaussianModel((2,))
    init = {k: v.tolist() for k, v in model.state_dict().items()}
    result = fit(config, out / "run", model=model, dataset=data, progress=False)
    weights = {k: v.tolist() for k, v in model.state_dict().items()}
    losses = [r["loss/model"] for r in result.history]
    (out / f"rank{result.global_rank}.json").write_text(
        json.dumps({"init": init, "final": weights, "losses": losses})
    )
    """
)


@pytest.mark.slow
def test_ddp_replicas_stay_identical(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["final"] == ranks[1]["final"]
    assert ranks[0]["final"] != ranks[0]["init"]
    # each rank drew its own batches, so the local losses differ
    assert ranks[0]["losses"] != ranks[1]["losses"]
