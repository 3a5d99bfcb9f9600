"""Per-step overhead of the training engine: ``fit()`` against a bare PyTorch loop.

Recipe: GaussianModel with D = 2 (5 parameters), float32, batch 256 drawn with
replacement from 10 000 fixed points by the same ``ArrayDataset.batch`` call,
Adam (lr 1e-3; torch's fused kernel on both sides, as the engine uses it),
constant learning rate, no clipping, no EMA, no progress bar,
a history record every 100 steps. The bare loop is the minimal equivalent:
``batch → model.loss → zero_grad → backward → step``. The engine adds Lightning
Fabric's module wrapper, the finiteness check of every loss (one ``.item()``),
learning-rate setting and bookkeeping.

Both are timed in the steady state, between two calls of the data set's
``batch`` (after a warm-up of steps/10), so Fabric set-up, the config file
and the final checkpoint are excluded; ``fit_total_s`` reports fit() end to
end. Runs alternate A B A B …; figures are medians with the
min–max over repeats, in steps per wall-clock second and per CPU second
(the fair one on a shared machine with one thread).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/engine_overhead.py --steps 3000 --repeats 5
Writes a table to stdout and JSON (figures, recipe, versions, threads,
timestamp) to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning_fabric
import torch

from probgen.core import DataSpec
from probgen.data.base import ArrayDataset
from probgen.models.gaussian import GaussianModel
from probgen.train import ComponentConfig, RunConfig, TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256
LR = 1e-3


class TimedData(ArrayDataset):
    """Records wall and CPU clocks at two ``batch`` calls, so both loops are timed alike.

    The clock starts at training batch number ``start`` (after a warm-up) and
    stops ``steps`` batches later, excluding set-up and teardown on both sides.
    """

    def __init__(self, start: int, steps: int) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(10_000, 2, generator=g) @ torch.tensor([[1.5, 0.0], [0.8, 0.4]])
        super().__init__(x, x[:1000], x[:1000], DataSpec((2,)))
        self.marks = {start: (0.0, 0.0), start + steps: (0.0, 0.0)}
        self.calls = 0

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        if self.calls in self.marks:
            self.marks[self.calls] = (time.perf_counter(), time.process_time())
        self.calls += 1
        return super().batch(split, batch_size, generator)

    def rates(self) -> tuple[float, float]:
        """Steps per wall-clock second and per CPU second between the two marks."""
        (i, (w0, c0)), (j, (w1, c1)) = sorted(self.marks.items())
        return (j - i) / (w1 - w0), (j - i) / (c1 - c0)


def bare_loop(data: TimedData, total: int) -> None:
    """The minimal PyTorch loop: batch, loss, zero_grad, backward, Adam step."""
    torch.manual_seed(0)
    model = GaussianModel((2,))
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    gen = torch.Generator().manual_seed(0)
    for _ in range(total):
        loss = model.loss(data.batch("train", BATCH, gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def engine(data: TimedData, total: int) -> float:
    """The same training through ``fit``; returns fit's end-to-end seconds."""
    config = RunConfig(
        model=ComponentConfig("gaussian"),
        data=ComponentConfig("array"),
        train=TrainConfig(steps=total, batch_size=BATCH, lr=LR, log_every=100, device="cpu"),
    )
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as run_dir:
        w0 = time.perf_counter()
        fit(config, Path(run_dir), model=GaussianModel((2,)), dataset=data, progress=False)
        return time.perf_counter() - w0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/engine_overhead.json"
    )
    args = parser.parse_args()
    torch.set_default_dtype(torch.float32)
    warmup, total = args.steps // 10, args.steps + args.steps // 10 + 1
    runs = []
    for r in range(args.repeats):  # A B A B …
        data = TimedData(warmup, args.steps)
        bare_loop(data, total)
        bare_wall, bare_cpu = data.rates()
        data = TimedData(warmup, args.steps)
        fit_total = engine(data, total)
        eng_wall, eng_cpu = data.rates()
        runs.append(
            {
                "repeat": r,
                "bare_steps_per_s": bare_wall,
                "bare_steps_per_cpu_s": bare_cpu,
                "engine_steps_per_s": eng_wall,
                "engine_steps_per_cpu_s": eng_cpu,
                "ratio_wall": eng_wall / bare_wall,
                "ratio_cpu": eng_cpu / bare_cpu,
                "fit_total_s": fit_total,
            }
        )
        print(
            f"repeat {r}: bare {bare_wall:8.0f}/s  engine {eng_wall:8.0f}/s  ratio "
            f"{eng_wall / bare_wall:.3f} (CPU-time ratio {eng_cpu / bare_cpu:.3f})"
        )

    def summary(key: str) -> dict[str, float]:
        values = [run[key] for run in runs]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    keys = [k for k in runs[0] if k != "repeat"]
    figures = {k: summary(k) for k in keys}
    print(f"\n{'quantity':<24}{'median':>12}{'min':>12}{'max':>12}")
    for k, s in figures.items():
        print(f"{k:<24}{s['median']:>12.3f}{s['min']:>12.3f}{s['max']:>12.3f}")
    bare_ms = 1e3 / figures["bare_steps_per_cpu_s"]["median"]
    eng_ms = 1e3 / figures["engine_steps_per_cpu_s"]["median"]
    print(
        f"\nper-step CPU time: bare {bare_ms:.3f} ms, engine {eng_ms:.3f} ms, "
        f"overhead {eng_ms - bare_ms:.3f} ms/step"
    )
    record = {
        "figures": figures,
        "overhead_ms_per_step_cpu": eng_ms - bare_ms,
        "runs": runs,
        "recipe": {
            "model": "GaussianModel D=2",
            "batch_size": BATCH,
            "optimizer": "Adam",
            "lr": LR,
            "steps_timed": args.steps,
            "repeats": args.repeats,
            "dtype": "float32",
            "order": "alternating bare, engine",
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning_fabric": lightning_fabric.__version__,
        },
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
