"""Tokens per second of the transformer's sampling: key-value cache against no cache and nanoGPT.

Recipe: nanoGPT's ``train_shakespeare_char`` model size (6 layers, 6 heads,
width 384, block size 256, no biases, vocabulary 65; 10.7 M parameters),
float32, random weights (speed does not depend on them), eval mode, one
thread. Each side draws ``--new-tokens`` tokens (default 256) for ``--batch``
rows, so the positions read per step grow from 1 to 256 (the block size, no
crop or slide needed): ours from the start token (the last step reads
[s, x_0 … x_254]), nanoGPT's ``generate`` from one prompt token (its last
step reads the prompt and 255 drawn tokens).

- ``cached``:   ``Transformer.generate`` (one new position per step, ``KVCache``);
- ``uncached``: the same with ``use_cache=False`` (the whole window every step);
- ``nanogpt``:  ``GPT.generate`` of nanoGPT's ``model.py`` (a checkout outside
  this repository, ``--nanogpt DIR``, run by ``--nanogpt-python``, its own
  virtual environment with torch 2.13.0): the whole window every step.

Repeats alternate cached, uncached, nanoGPT (A B C A B C …), each timed after
a warm-up draw; nanoGPT runs in a fresh process per repeat, timing only its
``generate`` call. Tokens/s = batch × new tokens / seconds, per wall second and
per CPU second (``time.process_time``: the fair one on a shared machine with
one thread). Ratios are per repeat, reported as median [min–max].

Run:  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. .venv/bin/python \\
          benchmarks/kv_cache.py --nanogpt /work/venvs/nanogpt-src \\
          --nanogpt-python /work/venvs/nanogpt/bin/python --repeats 3
Writes a table to stdout and JSON (figures, recipe, versions, threads,
timestamp) to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import torch

from probgen.models.autoregressive import Transformer, TransformerConfig

ROOT = Path(__file__).resolve().parents[1]

CONFIG = dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, bias=False)
"""nanoGPT's Shakespeare-char model (config/train_shakespeare_char.py), dropout 0."""

NANOGPT_DRIVER = """
import json, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from model import GPT, GPTConfig
torch.set_num_threads(1)
torch.manual_seed(0)
batch, new = int(sys.argv[2]), int(sys.argv[3])
config = json.loads(sys.argv[4])
model = GPT(GPTConfig(dropout=0.0, **config)).eval()
idx = torch.zeros(batch, 1, dtype=torch.long)
with torch.no_grad():
    model.generate(idx, 8)  # warm-up
    w0, c0 = time.perf_counter(), time.process_time()
    out = model.generate(idx, new)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"wall": wall, "cpu": cpu, "shape": list(out.shape), "parameters": params}))
"""
"""Run by nanoGPT's interpreter: imports its model.py from the checkout, times generate."""


def time_ours(model: Transformer, batch: int, new: int, use_cache: bool) -> dict:
    """Wall and CPU seconds of one ``generate`` of ``new`` tokens for ``batch`` rows."""
    gen = torch.Generator().manual_seed(0)
    model.generate(batch, 8, generator=gen, use_cache=use_cache)  # warm-up
    w0, c0 = time.perf_counter(), time.process_time()
    out = model.generate(batch, new, generator=gen, use_cache=use_cache)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert out.shape == (batch, new)
    return {"wall": wall, "cpu": cpu}


def time_nanogpt(args: argparse.Namespace) -> dict:
    """One fresh nanoGPT process timing its ``generate``; its JSON line."""
    config = dict(CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    proc = subprocess.run(
        [
            args.nanogpt_python,
            "-c",
            NANOGPT_DRIVER,
            str(args.nanogpt),
            str(args.batch),
            str(args.new_tokens),
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    config = TransformerConfig(dropout=0.0, **CONFIG)
    model = Transformer(config).eval()
    sides = ["cached", "uncached"] + (["nanogpt"] if args.nanogpt else [])
    times: dict[str, list[dict]] = {side: [] for side in sides}
    nanogpt_info: dict = {}
    for repeat in range(args.repeats):
        times["cached"].append(time_ours(model, args.batch, args.new_tokens, True))
        times["uncached"].append(time_ours(model, args.batch, args.new_tokens, False))
        if args.nanogpt:
            nanogpt_info = time_nanogpt(args)
            times["nanogpt"].append(nanogpt_info)
        print(
            f"repeat {repeat + 1}: "
            + ", ".join(f"{s} {times[s][-1]['cpu']:.2f} CPU-s" for s in sides),
            flush=True,
        )
    drawn = dict.fromkeys(sides, args.batch * args.new_tokens)
    rates = {
        side: {
            clock: summary([drawn[side] / t[clock] for t in times[side]])
            for clock in ("wall", "cpu")
        }
        for side in sides
    }
    ratios = {
        f"cached/{other}": {
            clock: summary(
                [
                    (drawn["cached"] / a[clock]) / (drawn[other] / b[clock])
                    for a, b in zip(times["cached"], times[other], strict=True)
                ]
            )
            for clock in ("wall", "cpu")
        }
        for other in sides[1:]
    }
    return {
        "benchmark": "kv_cache",
        "recipe": {
            "config": asdict(config),
            "batch": args.batch,
            "new_tokens": args.new_tokens,
            "positions_read_at_last_step": args.new_tokens,
            "repeats": args.repeats,
            "dtype": "float32",
            "weights": "random (GPT-2 init); speed does not depend on them",
            "order": "cached, uncached, nanogpt alternated per repeat",
        },
        "parameters": {"ours": model.num_parameters(), "nanogpt": nanogpt_info.get("parameters")},
        "tokens_per_second": rates,
        "ratios": ratios,
        "times": times,
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "nanogpt": str(args.nanogpt) if args.nanogpt else None,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def table(result: dict) -> str:
    rates, ratios = result["tokens_per_second"], result["ratios"]
    lines = [
        "| sampler | tokens/CPU-s | tokens/wall-s | cached ÷ this (CPU) | cached ÷ this (wall) |",
        "|---|---|---|---|---|",
    ]

    def fmt(s: dict) -> str:
        return f"{s['median']:.1f} [{s['min']:.1f}–{s['max']:.1f}]"

    for side, rate in rates.items():
        ratio = ratios.get(f"cached/{side}")
        r_cpu = "1" if ratio is None else fmt(ratio["cpu"])
        r_wall = "1" if ratio is None else fmt(ratio["wall"])
        lines.append(f"| {side} | {fmt(rate['cpu'])} | {fmt(rate['wall'])} | {r_cpu} | {r_wall} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nanogpt", type=Path, default=None, help="folder with nanoGPT's model.py")
    parser.add_argument("--nanogpt-python", default="python3")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "kv_cache.json"
    )
    args = parser.parse_args()
    result = run(args)
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
