"""Where a second intra-op thread starts to pay: FLOPs per training round against the speed-up.

For each case (toy families on 8gaussians at batch 256, the VAE and PixelCNN
on binarized MNIST, Glow on digits, the Transformer with nanoGPT's CPU
configuration on Tiny Shakespeare) the script counts F, the FLOPs of one
training round (``probgen.train.threads.round_flops``: forward and backward of
every player's loss), then times training steps (``loss.backward()`` and Adam
for every player, as the engine does) with 1 thread and with every core,
alternating 1, N, 1, N, … in the same process, ``--seconds`` of wall time
each after ``--warmup`` untimed steps. It reports steps per wall second and
the per-pair ratio (N threads / 1 thread) with its median and min–max; the
rule in ``probgen.train.threads`` (``FLOP_THRESHOLD``) is set between the
largest F that does not gain and the smallest that does.

    PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/thread_crossover.py

Writes ``benchmarks/results/thread_crossover.json`` (with ``os.getloadavg()``
before and after: the figures mean something only on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from probgen.data.base import Dataset
from probgen.models.dequantized import build_model
from probgen.registry import DATASETS
from probgen.train.threads import FLOP_THRESHOLD, available_cores, round_flops

RESULTS = Path(__file__).resolve().parent / "results"
DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Case:
    """A model, its data set, the batch size and options."""

    label: str
    model: str
    data: str
    batch: int
    data_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)


MNIST = {"root": str(DATA_ROOT), "binarize": True}
GPT = {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "bias": False}
CASES = [
    *(Case(name, name, "8gaussians", 256) for name in ("maf", "nsf", "ddpm", "gan", "made")),
    Case("ddpm-4096", "ddpm", "8gaussians", 4096),
    Case("glow-digits", "glow", "digits", 64),
    Case("vae-mnist", "vae", "mnist", 100, MNIST),
    Case("pixelcnn-mnist-8", "pixelcnn", "mnist", 8, MNIST),
    Case("pixelcnn-mnist-32", "pixelcnn", "mnist", 32, MNIST),
    Case("transformer-shakespeare", "transformer", "tinyshakespeare", 12,
         {"root": str(DATA_ROOT), "context": 64}, GPT),
]  # fmt: skip


class Stepper:
    """A model, its data and one Adam optimizer per player; ``step()`` updates every player."""

    def __init__(self, case: Case) -> None:
        torch.manual_seed(0)
        self.case = case
        self.data: Dataset = DATASETS.get(case.data)(**case.data_options)
        self.model = build_model(case.model, self.data.spec, **case.model_options)
        self.optimizers = {
            p: torch.optim.Adam(params, lr=1e-4) for p, params in self.model.players().items()
        }
        self.generator = torch.Generator().manual_seed(0)

    def step(self) -> None:
        for player, optimizer in self.optimizers.items():
            x = self.data.batch("train", self.case.batch, self.generator)
            loss = self.model.loss(x, player)
            self.model.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def steps_per_second(stepper: Stepper, threads: int, seconds: float, warmup: int) -> float:
    """Steps per wall second of ``stepper`` with ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    for _ in range(warmup):
        stepper.step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        stepper.step()
        steps += 1
    return steps / (time.perf_counter() - start)


def spread(values: list[float]) -> dict[str, float]:
    """Median with min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="wall-s per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=[c.label for c in CASES])
    parser.add_argument("--out", type=Path, default=RESULTS / "thread_crossover.json")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float32)
    cores = available_cores()
    load_before = os.getloadavg()
    rows: dict[str, dict[str, Any]] = {}
    print(f"{'case':26} {'GFLOP/round':>11} {'1 thread':>9} {f'{cores} threads':>10} "
          f"{'ratio, median [min–max]':>24}")  # fmt: skip
    for case in CASES:
        if case.label not in args.cases:
            continue
        stepper = Stepper(case)
        torch.set_num_threads(1)
        flops = round_flops(stepper.model, stepper.data, case.batch, {})
        one, many = [], []
        for _ in range(args.pairs):
            one.append(steps_per_second(stepper, 1, args.seconds, args.warmup))
            many.append(steps_per_second(stepper, cores, args.seconds, args.warmup))
        ratios = [m / o for m, o in zip(many, one, strict=True)]
        rows[case.label] = {
            "model": case.model, "data": case.data, "batch": case.batch, "flops": flops,
            "one_thread": spread(one), "all_cores": spread(many), "ratio": spread(ratios),
        }  # fmt: skip
        r = rows[case.label]["ratio"]
        print(
            f"{case.label:26} {flops / 1e9:11.4f} {statistics.median(one):9.1f} "
            f"{statistics.median(many):10.1f} {r['median']:10.2f} [{r['min']:.2f}–{r['max']:.2f}]"
        )
    record = {
        "benchmark": "thread_crossover",
        "seconds": args.seconds,
        "pairs": args.pairs,
        "cores": cores,
        "flop_threshold": FLOP_THRESHOLD,
        "rows": rows,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"load average before {load_before}, after {record['loadavg_after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
