"""Training steps/s of every toy-shape family: the engine's default threads against fixed counts.

For every registered family that builds for 8gaussians, ``probgen.train.fit``
trains the family (batch 256, Adam 1e-3, the compare demo's family settings)
for ``--seconds`` of wall time with ``train.threads`` set to ``auto`` (the
default), to 1 and to every core, in turn: default, 1, N, default, 1, N, …
(``--repeats`` times), first on the machine as it is ("quiet") and then with
one competing busy process (a pure-Python loop started here in its own
session, killed at the end). Steps/s is counted from the engine's history
(``log_every`` 1, wall clock) after the first ``--warmup`` rounds, so setup,
the FLOP count of the thread rule and the final checkpoint are excluded.

Per family and condition the table gives the median steps/s of each setting
and the median over repeats of default / best fixed count (the ratio is
taken within a repeat, so machine noise is shared). Target (issue 12):
default ≥ 0.9 × the best fixed count in both conditions.

    PYTHONPATH=. .venv/bin/python benchmarks/threads.py            # ~10 min
    PYTHONPATH=. .venv/bin/python benchmarks/threads.py --seconds 0.5 --repeats 1 --families nsf

The OpenMP wait policy is read once per process: the JSON records
``OMP_WAIT_POLICY`` and ``os.getloadavg()`` before and after each condition.
Writes ``benchmarks/results/threads.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from probgen.compare.config import applicable_models, load_compare_config
from probgen.registry import DATASETS
from probgen.train import fit, load_config
from probgen.train.threads import available_cores

RESULTS = Path(__file__).resolve().parent / "results"
BUSY = "while True: pass"


def run_config(family: str, threads: int | str, seconds: float) -> Any:
    """The family's run on 8gaussians: the demo's family settings, a wall-clock budget."""
    families = load_compare_config().source["families"]
    own = families.get(family, {})
    train = {k: v for k, v in own.get("train", {}).items() if k != "steps"}
    train |= {
        "steps": 10**9, "time_budget": seconds, "budget_clock": "wall", "batch_size": 256,
        "log_every": 1, "eval_every": 0, "device": "cpu", "threads": threads,
    }  # fmt: skip
    return load_config(
        None,
        {"model": {"name": family, "options": own.get("options", {})},
         "data": {"name": "8gaussians"}, "train": train},
    )  # fmt: skip


def steps_per_second(family: str, threads: int | str, seconds: float, warmup: int) -> dict:
    """Wall-clock steps/s of one short run after ``warmup`` rounds, and the threads it used."""
    with tempfile.TemporaryDirectory() as run_dir:
        result = fit(run_config(family, threads, seconds), Path(run_dir), progress=False)
    records = [r for r in result.history if r["step"] > warmup]
    last = result.history[-1]
    if len(records) >= 2:
        first = records[0]
        rate = (last["step"] - first["step"]) / (last["elapsed"] - first["elapsed"])
    else:  # so slow (two spinning threads on a busy machine) that no round is left over
        rate = last["step"] / last["elapsed"]
    return {"steps_per_s": rate, "threads": result.threads, "warmup_cut": len(records) < 2}


def spread(values: list[float]) -> dict[str, float]:
    """Median with min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(families: list[str], settings: list, args: argparse.Namespace) -> dict:
    """Every family × setting, alternated within each repeat; medians and default / best."""
    runs: dict[str, dict[str, list[dict]]] = {f: {str(s): [] for s in settings} for f in families}
    for _ in range(args.repeats):
        for family in families:
            for setting in settings:
                runs[family][str(setting)].append(
                    steps_per_second(family, setting, args.seconds, args.warmup)
                )
    table = {}
    for family, by_setting in runs.items():
        rates = {s: [r["steps_per_s"] for r in rs] for s, rs in by_setting.items()}
        fixed = [s for s in rates if s != "auto"]
        ratios = [rates["auto"][i] / max(rates[s][i] for s in fixed) for i in range(args.repeats)]
        table[family] = {
            "steps_per_s": {s: spread(v) for s, v in rates.items()},
            "default_threads": sorted({r["threads"] for r in by_setting["auto"]}),
            "default_over_best_fixed": spread(ratios),
        }
    return {"table": table, "runs": runs}


def print_table(condition: str, table: dict, settings: list) -> None:
    """One line per family: median steps/s per setting, default / best fixed."""
    heads = "".join(f"{('default' if s == 'auto' else f'{s} thr'):>10}" for s in settings)
    print(f"\n{condition}\n{'family':10}{heads}   threads  default/best [min–max]")
    for family, row in table.items():
        cells = "".join(f"{row['steps_per_s'][str(s)]['median']:10.1f}" for s in settings)
        r = row["default_over_best_fixed"]
        threads = ",".join(str(t) for t in row["default_threads"])
        print(
            f"{family:10}{cells}   {threads:>7}  {r['median']:.2f} [{r['min']:.2f}–{r['max']:.2f}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="wall-s per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="rounds left out of the rate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", nargs="+", default=None)
    parser.add_argument("--conditions", nargs="+", default=["quiet", "loaded"])
    parser.add_argument("--out", type=Path, default=RESULTS / "threads.json")
    args = parser.parse_args()
    cores = available_cores()
    families = args.families or applicable_models(DATASETS.get("8gaussians")().spec)
    settings: list[int | str] = ["auto", 1, *([cores] if cores > 1 else [])]
    record: dict[str, Any] = {"benchmark": "threads", "conditions": {}}
    for condition in args.conditions:
        busy = None
        if condition == "loaded":
            busy = subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True)
        try:
            before = os.getloadavg()
            result = measure(families, settings, args)
            result |= {"loadavg_before": before, "loadavg_after": os.getloadavg()}
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        record["conditions"][condition] = result
        print_table(f"{condition} (load average before {before[0]:.2f}, after "
                    f"{result['loadavg_after'][0]:.2f})", result["table"], settings)  # fmt: skip
    record |= {
        "recipe": {"data": "8gaussians", "batch_size": 256, "seconds": args.seconds,
                   "warmup": args.warmup, "repeats": args.repeats, "clock": "wall",
                   "busy_process": f"python -c '{BUSY}' (own session)"},
        "cores": cores,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
