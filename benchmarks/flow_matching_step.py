"""Per-step cost of probgen's flow-matching loss, A/B between two source trees, side by side.

What ``flow_matching_peers.py`` trains, timed in parts: the model built as the
CLI builds it (``Standardized`` around ``flow_matching``, ``TimeMLP`` 3 × 128 on
2-D, batch 256, float32, one thread), and per call, in CPU microseconds
(``time.process_time``; the minimum over ``--repeats`` blocks of ``--calls``
calls, the least-disturbed block on a shared machine):

- ``net``: the network's forward alone, no grad;
- ``loss``: ``model.loss(x)``, no grad (everything around the network: the
  wrapper, the objective, the prediction);
- ``step``: one training step, loss + backward + probgen's fused Adam.

``--trees A B`` runs this script once per tree (``PYTHONPATH`` = that tree) in
alternation A B A B … ``--pairs`` times and prints each pair's ratio A/B and
its median (BENCHMARKING.md: side by side in one run, never two absolute
times taken at different moments).

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python \\
        benchmarks/flow_matching_step.py --trees /work/main /work/wt-fmfast --pairs 5 \\
        --out benchmarks/results/flow_matching_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

BATCH, HIDDEN, LR = 256, (128, 128, 128), 2e-3
PARTS = ("net", "loss", "step")


def _cpu_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """The minimum over ``repeats`` blocks of the mean CPU µs of one call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls * 1e6)
    return best


def measure(calls: int, repeats: int) -> dict[str, float]:
    """µs per call of the network, the loss and a training step in the current tree."""
    from probgen.core import DataSpec
    from probgen.models import build_model
    from probgen.train.config import TrainConfig
    from probgen.train.optim import make_optimizers

    torch.set_num_threads(1)
    torch.manual_seed(0)
    given = {"shift": [0.1, -0.2], "scale": [2.0, 1.5]}
    model = build_model("flow_matching", DataSpec(event_shape=(2,)), standardize=given,
                        hidden=HIDDEN)  # fmt: skip
    model.train()
    opt = make_optimizers(model.players(), TrainConfig(lr=LR))["model"]
    pool = torch.randn(100_000, 2)
    g = torch.Generator().manual_seed(0)
    x = pool[:BATCH]
    net = model.model.denoiser.net
    t = torch.rand(BATCH)

    def step() -> None:
        loss = model.loss(pool[torch.randint(len(pool), (BATCH,), generator=g)])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(200):  # warm-up: allocator, optimizer state
        step()
    out = {}
    with torch.no_grad():
        out["net"] = _cpu_us(lambda: net(x, t), calls, repeats)
        out["loss"] = _cpu_us(lambda: model.loss(x), calls, repeats)
    out["step"] = _cpu_us(step, calls, repeats)
    return out


def compare(args: argparse.Namespace) -> None:
    """Alternate the trees A B A B …; per-pair ratios and medians of every part."""
    runs: dict[str, list[dict[str, float]]] = {str(tree): [] for tree in args.trees}
    for _ in range(args.pairs):
        for tree in args.trees:
            env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, __file__, "--calls", str(args.calls)]
            cmd += ["--repeats", str(args.repeats)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            runs[str(tree)].append(json.loads(done.stdout.strip().splitlines()[-1]))
    a, b = (str(tree) for tree in args.trees)
    result: dict[str, object] = {"trees": [a, b], "batch": BATCH, "hidden": HIDDEN, "runs": runs}
    result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["load_average"] = os.getloadavg()
    print(f"| part | A µs, median | B µs, median | A/B per pair | A/B median |  (A = {a}, B = {b})")
    print("|---|---|---|---|---|")
    medians = {}
    for part in PARTS:
        ratios = [ra[part] / rb[part] for ra, rb in zip(runs[a], runs[b], strict=True)]
        ma = statistics.median(r[part] for r in runs[a])
        mb = statistics.median(r[part] for r in runs[b])
        medians[part] = {"a_us": ma, "b_us": mb, "ratios": ratios,
                         "ratio_median": statistics.median(ratios)}  # fmt: skip
        per_pair = " / ".join(f"{r:.2f}" for r in ratios)
        print(f"| {part} | {ma:.0f} | {mb:.0f} | {per_pair} | {statistics.median(ratios):.2f} |")
    result["parts"] = medians
    if args.out is not None:
        from probgen.train.config import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=1))
        print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs=2, type=Path, help="two source trees to A/B")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.trees:
        compare(args)
    else:
        print(json.dumps(measure(args.calls, args.repeats)))


if __name__ == "__main__":
    main()
