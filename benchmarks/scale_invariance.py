"""The 2-D shapes in other units: every exact-likelihood family's KL gap at a fixed budget.

Each shape y ~ p is also served as x = m + s·y with (s, m) in {(1, 0),
(1e-3, 0), (1e3, 0), (1, 1e3)} (``ToyDataset(scale=s, shift=m)``, whose
``truth`` is that law exactly: log p_x(x) = log p(y) − D log s). Every
family is trained as a user's run is (``probgen.train.fit``, the default
data map fitted on the training data), for a fixed number of steps, so the
budget is the same on any machine, in float32 with one thread; the figure
is the KL gap on 5000 exact test points,

    gap = 1/n Σ_i [log p_x(x_i) − log p_θ(x_i)]  (≈ KL(p ‖ p_θ)),

with the standard error of the paired difference. The acceptance test of
the robustness issue: the gap in other units is within seed noise of the
gap in the shape's own units.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_invariance.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_invariance.py --seeds 3 --steps 2000

Prints a table and writes ``benchmarks/results/scale_invariance.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from probgen.evaluate.likelihood import log_probs
from probgen.train import ComponentConfig, RunConfig, TrainConfig, fit

FAMILIES = ("realnvp", "maf", "nsf", "made")
UNITS = {"×1": (1.0, 0.0), "×1e-3": (1e-3, 0.0), "×1e3": (1e3, 0.0), "+1e3": (1.0, 1e3)}


def kl_gap(family: str, shape: str, scale: float, shift: float, steps: int, seed: int) -> dict:
    """Train ``family`` on the shape in the given units; its KL gap and standard error."""
    data = {"n_validation": 1000, "n_test": 5000, "scale": scale, "shift": shift}
    config = RunConfig(
        model=ComponentConfig(family),
        data=ComponentConfig(shape, data),
        seed=seed,
        train=TrainConfig(steps=steps, batch_size=256, lr=1e-3, log_every=steps, device="cpu"),
    )
    with tempfile.TemporaryDirectory() as run_dir:
        result = fit(config, Path(run_dir), progress=False)
    x = result.dataset.split("test")
    truth = result.dataset.truth.log_prob(x).double()
    model = log_probs(result.model, x).double()
    diff = truth - model
    return {
        "gap": diff.mean().item(),
        "stderr": diff.std().item() / math.sqrt(len(diff)),
        "steps": result.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--shapes", default="8gaussians,pinwheel")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/scale_invariance.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'family':<9} {'shape':<11} " + " ".join(f"{u:>22}" for u in UNITS), flush=True)
    for family in args.families.split(","):
        for shape in args.shapes.split(","):
            cells = {}
            for unit, (scale, shift) in UNITS.items():
                runs = [
                    kl_gap(family, shape, scale, shift, args.steps, s) for s in range(args.seeds)
                ]
                gaps = [r["gap"] for r in runs]
                cells[unit] = {
                    "median_gap": statistics.median(gaps),
                    "min": min(gaps),
                    "max": max(gaps),
                    "runs": runs,
                }
            rows.append({"family": family, "shape": shape, "units": cells})
            shown = " ".join(
                f"{c['median_gap']:>8.4f} [{c['min']:.3f},{c['max']:.3f}]" for c in cells.values()
            )
            print(f"{family:<9} {shape:<11} {shown}", flush=True)
            _write(args, rows)


def _write(args: argparse.Namespace, rows: list) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "scale_invariance",
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "recipe": {
            "steps": args.steps,
            "batch_size": 256,
            "lr": 1e-3,
            "threads": 1,
            "dtype": "float32",
            "seeds": args.seeds,
            "units": UNITS,
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
