"""Training-step throughput of every registered model family, and the Transformer's MFU.

One training step = one optimizer update of every player of the model, in
the order of ``model.players()`` (a GAN's critic and generator, a VAE's one
"model" player), each on a fresh batch: ``loss(x, player).backward()`` and an
Adam step (lr 1e-4), as ``probgen.train.engine`` does. Each family is built by
``probgen.models.build_model`` for a fixed small recipe (``CASES``): the 2-D
families on 8gaussians with batch 512, the VAE and PixelCNN on dynamically
binarized MNIST (batch 100 and 32), Glow on digits 8×8 (batch 64) and the
Transformer with nanoGPT's CPU configuration on Tiny Shakespeare (4 layers,
4 heads, width 128, context 64, batch 12, no bias, no dropout).

Timing: torch pinned to one thread; every repeat visits every family in turn
(round robin, so machine noise is shared), trains it for ``--budget``
CPU-seconds after ``--warmup`` untimed steps, and records steps per CPU-second
(``time.process_time``) and per wall second. The table gives the median over
``--repeats`` repeats with min–max.

Model-FLOPs utilisation of the Transformer's step:

    FLOPs/step = (6 N + 12 L T C) · B T

(Chowdhery et al., 2022, "PaLM", appendix B: 6 N per token for the
parameter matmuls forward and backward, 12 L T C per token for attention
scores and their application; N = parameters without position embeddings,
the tied token embedding counted once as the output head; L layers, C width,
T context, B batch), divided by the FLOP/s of a 2048×2048 float32 ``torch.mm``
(2·2048³ FLOPs) timed in the same round robin, both per CPU-second.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/throughput.py

Writes ``benchmarks/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from probgen.core import GenerativeModel
from probgen.data.base import Dataset
from probgen.models import build_model
from probgen.registry import DATASETS, MODELS

RESULTS = Path(__file__).resolve().parent / "results"
DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
MATMUL = "matmul 2048² float32"


@dataclass(frozen=True)
class Case:
    """One family's fixed recipe: registered model and data names, options, batch size."""

    model: str
    data: str
    batch: int
    data_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)


GPT = {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "bias": False}
MNIST_BINARY = {"root": str(DATA_ROOT), "binarize": True}
TOY = ["gaussian", "realnvp", "maf", "nsf", "made", "gan", "fgan", "wgan", "wgan_gp", "ebm"]
CASES = [
    *(Case(name, "8gaussians", 512) for name in TOY),
    Case("ddpm", "8gaussians", 512),
    Case("score_sde", "8gaussians", 512),
    Case("glow", "digits", 64),
    Case("vae", "mnist", 100, MNIST_BINARY),
    Case("pixelcnn", "mnist", 32, MNIST_BINARY),
    Case("transformer", "tinyshakespeare", 12, {"root": str(DATA_ROOT), "context": 64}, GPT),
]


def transformer_flops_per_step(model: GenerativeModel, batch: int) -> float:
    """(6 N + 12 L T C) · B T for the Transformer ``model`` (PaLM appendix B)."""
    config = model.config
    tokens_per_step = batch * config.block_size
    per_token = 6 * model.num_parameters(embeddings=False)
    per_token += 12 * config.n_layer * config.block_size * config.n_embd
    return float(per_token * tokens_per_step)


class Stepper:
    """A model, its data and one Adam optimizer per player; ``step()`` updates every player."""

    def __init__(self, case: Case, seed: int) -> None:
        torch.manual_seed(seed)
        self.case = case
        self.data: Dataset = DATASETS.get(case.data)(**case.data_options)
        self.model = build_model(case.model, self.data.spec, **case.model_options).float()
        self.optimizers = {
            player: torch.optim.Adam(params, lr=1e-4)
            for player, params in self.model.players().items()
        }
        self.generator = torch.Generator().manual_seed(seed)

    def step(self) -> None:
        for player, optimizer in self.optimizers.items():
            x = self.data.batch("train", self.case.batch, self.generator)
            x = x.float() if x.is_floating_point() else x
            loss = self.model.loss(x, player)
            self.model.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


class Matmul:
    """The peak reference: one 2048×2048 float32 matrix product per ``step()``."""

    flops = 2.0 * 2048**3

    def __init__(self) -> None:
        self.a = torch.randn(2048, 2048, dtype=torch.float32)
        self.b = torch.randn(2048, 2048, dtype=torch.float32)

    def step(self) -> None:
        torch.mm(self.a, self.b)


def rate(step: Callable[[], None], budget: float, warmup: int) -> dict[str, float]:
    """Steps per CPU-second and per wall second of ``step`` over ``budget`` CPU-seconds."""
    for _ in range(warmup):
        step()
    steps, c0, w0 = 0, time.process_time(), time.perf_counter()
    while time.process_time() - c0 < budget:
        step()
        steps += 1
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"steps": steps, "per_cpu_s": steps / cpu, "per_wall_s": steps / wall}


def spread(values: list[float]) -> dict[str, float]:
    """Median with min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=3.0, help="CPU-s per family and repeat")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=[c.model for c in CASES])
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)

    steppers: dict[str, Stepper | Matmul] = {MATMUL: Matmul()}
    errors: dict[str, str] = {}
    for case in CASES:
        if case.model not in args.models:
            continue
        if case.model not in MODELS:
            errors[case.model] = "not registered"
            continue
        try:
            steppers[case.model] = Stepper(case, seed=0)
        except Exception as error:  # a family that cannot be built is reported, not fatal
            errors[case.model] = f"{type(error).__name__}: {error}"
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in steppers}
    for _ in range(args.repeats):
        for name, stepper in steppers.items():
            runs[name].append(rate(stepper.step, args.budget, args.warmup))

    table = {name: {k: spread([r[k] for r in rs]) for k in ("per_cpu_s", "per_wall_s")}
             for name, rs in runs.items()}  # fmt: skip
    print(f"{'family':12} {'data':16} {'batch':>5} {'steps/CPU-s':>24} {'steps/wall-s':>10}")
    for case in CASES:
        if case.model in table:
            row = table[case.model]
            cpu = row["per_cpu_s"]
            print(
                f"{case.model:12} {case.data:16} {case.batch:5d} {cpu['median']:10.2f} "
                f"[{cpu['min']:.2f}–{cpu['max']:.2f}] {row['per_wall_s']['median']:10.2f}"
            )
    for name, error in errors.items():
        print(f"{name:12} skipped: {error}")

    record: dict[str, Any] = {
        "benchmark": "throughput",
        "budget_cpu_s": args.budget,
        "repeats": args.repeats,
        "cases": {c.model: {"data": c.data, "batch": c.batch, **c.model_options} for c in CASES},
        "table": table,
        "runs": runs,
        "errors": errors,
    }
    peak = [r["per_cpu_s"] * Matmul.flops for r in runs[MATMUL]]
    print(f"{MATMUL}: {statistics.median(peak) / 1e9:.2f} GFLOP per CPU-s")
    if "transformer" in steppers:
        gpt = steppers["transformer"]
        flops = transformer_flops_per_step(gpt.model, gpt.case.batch)
        mfu = [r["per_cpu_s"] * flops / p for r, p in zip(runs["transformer"], peak, strict=True)]
        record["transformer_mfu"] = {
            "flops_per_step": flops,
            "formula": "(6 N + 12 L T C) B T, N without position embeddings",
            "parameters_without_positions": gpt.model.num_parameters(embeddings=False),
            "matmul_peak_flops_per_cpu_s": spread(peak),
            "mfu_per_cpu_s": spread(mfu),
        }
        m = record["transformer_mfu"]["mfu_per_cpu_s"]
        print(
            f"Transformer step: {flops / 1e9:.3f} GFLOP; MFU {100 * m['median']:.1f} % "
            f"[{100 * m['min']:.1f}–{100 * m['max']:.1f}] of the matmul peak (per CPU-s)"
        )
    record |= {
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
