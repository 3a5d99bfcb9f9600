"""Character-level GPT on Tiny Shakespeare: validation nats/char against training time.

Recipe (nanoGPT's documented CPU configuration of ``train_shakespeare_char``):
4 layers, 4 heads, width 128, context 64, batch 12, dropout 0, no biases,
2000 iterations; AdamW (β = 0.9, 0.99, weight decay 0.1 on matrices and
embeddings only), 100 linear warm-up steps and a cosine decay to lr/10 at
the last iteration, gradient clipping at norm 1. Vocabulary 65 characters,
90/10 train/validation split. The one difference: the peak learning rate
``--lr`` is 2e-3 by default, twice nanoGPT's 1e-3 (with 1e-3, ours ends level
with nanoGPT: whole-split loss 1.903–1.910 against its 1.898).

The figure of merit is the wall time to reach nanoGPT's validation loss at
its iteration 2000: our training-loop wall time at the first evaluation (every
``--eval-interval`` iterations, 20 random batches, positions t ≥ 1) whose loss
is at or below nanoGPT's own estimate, divided by nanoGPT's whole training-loop
wall time (``time_to_match_over_nanogpt_loop``; < 1 meets the target).

Our model has a learned start token, so position 0 is predicted with no
context and the per-character loss averaged over all positions is the exact
-log p(window) / 64. nanoGPT's targets always have at least one character of
context; the column "t ≥ 1" (positions 1…63) is the comparable figure.

Model-FLOPs utilisation (MFU) = achieved FLOP/s / peak FLOP/s, with the
training cost 6 N + 12 L T C FLOPs per token (Chowdhery et al., 2022, PaLM,
appendix B; N = parameters without position embeddings) and the peak a
2048×2048 float32 matmul (2·2048³ FLOPs) timed in the same run, both per
wall-clock second and per CPU second (the latter is the fair one on a shared
machine with one thread).

Side by side with nanoGPT (``--nanogpt DIR``, a checkout outside this
repository whose ``data/shakespeare_char`` was prepared from the same
input.txt, run by ``--nanogpt-python``): ``--pairs`` pairs of runs alternate
ours / theirs (A B A B), each a fresh process pinned to one thread, nanoGPT
with its README's CPU command line. Per run: validation loss at iteration 2000
(nanoGPT's own estimate, 20 random batches; ours the same estimate and the full
validation split), training-loop wall time (iteration 0 to the last update,
periodic evaluations included), median ms per non-evaluation iteration, whole
process wall and CPU time (for nanoGPT plus the process scoring its full
validation split, which our process does itself); per pair the ratios ours / theirs, and their
medians. nanoGPT's final checkpoint is also scored on every non-overlapping
validation window with its own model code, so both full-split losses exist.

Run:  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/shakespeare.py
      OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/shakespeare.py \\
          --nanogpt /work/nanogpt --nanogpt-python /work/nanogpt-venv/bin/python --pairs 3 \\
          --eval-interval 100
Writes a table to stdout and JSON (figures, recipe, versions, threads,
timestamp) to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from probgen.data.text import TinyShakespeare
from probgen.models.autoregressive import Transformer, TransformerConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PROBGEN_DATA", ROOT.parent / "shared" / "data"))


def matmul_peak(repeats: int = 5) -> tuple[float, float]:
    """Peak FLOP/s of a 2048×2048 float32 matmul per wall-clock and per CPU second (medians)."""
    a = torch.randn(2048, 2048, dtype=torch.float32)
    b = torch.randn(2048, 2048, dtype=torch.float32)
    torch.mm(a, b)  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    flops = 2 * 2048**3
    return flops / statistics.median(walls), flops / statistics.median(cpus)


def learning_rate(it: int, *, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to ``min_lr``."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    progress = min(1.0, (it - warmup) / max(1, decay_iters - warmup))
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def optimizer(model: Transformer, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only (not biases, LayerNorms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


@torch.no_grad()
def validation_loss(model: Transformer, windows: torch.Tensor, chunk: int = 256) -> dict:
    """Mean nats/char over all positions and over positions t ≥ 1 of ``windows`` (N, T)."""
    model.eval()
    nll = torch.cat([model.token_nll(w) for w in windows.split(chunk)])  # (N, T)
    model.train()
    return {"all": nll.mean().item(), "t>=1": nll[:, 1:].mean().item()}


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(args.seed)
    data = TinyShakespeare(args.data, context=64)
    config = TransformerConfig(
        vocab_size=data.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128,
        dropout=0.0, bias=False,
    )  # fmt: skip
    model = Transformer(config)
    opt = optimizer(model, lr=args.lr, weight_decay=0.1)
    schedule = dict(lr=args.lr, min_lr=args.lr / 10, warmup=100, decay_iters=args.iters)
    gen = torch.Generator().manual_seed(args.seed)
    eval_gen = torch.Generator().manual_seed(args.seed + 1)
    batch, T = 12, 64
    n_params = model.num_parameters(embeddings=False)
    flops_per_iter = (6 * n_params + 12 * config.n_layer * T * config.n_embd) * batch * T

    peak_wall, peak_cpu = matmul_peak() if args.peak else (math.nan, math.nan)
    curve = []
    wall = cpu = 0.0
    step_ms: list[float] = []
    loop_start = time.perf_counter()
    for it in range(args.iters + 1):
        if it % args.eval_interval == 0 or it == args.iters:
            probe = torch.cat(
                [data.batch("validation", batch, eval_gen) for _ in range(args.eval_iters)]
            )
            loss = validation_loss(model, probe)
            curve.append(
                {
                    "iter": it,
                    "wall_s": wall,
                    "loop_wall_s": time.perf_counter() - loop_start,
                    "cpu_s": cpu,
                    "val_nats": loss["all"],
                    "val_nats_t>=1": loss["t>=1"],
                }
            )
            print(
                f"iter {it:5d}  wall {wall:7.1f}s  val {loss['all']:.4f} nats/char "
                f"(t ≥ 1: {loss['t>=1']:.4f})",
                flush=True,
            )
        if it == args.iters:
            loop_wall = time.perf_counter() - loop_start
            break
        w0, c0 = time.perf_counter(), time.process_time()
        for group in opt.param_groups:
            group["lr"] = learning_rate(it, **schedule)
        x = data.batch("train", batch, gen)  # (B, T)
        loss = model.token_nll(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step_ms.append(1e3 * (time.perf_counter() - w0))
        wall += step_ms[-1] / 1e3
        cpu += time.process_time() - c0

    final = validation_loss(model, data.split("validation"))
    sample = data.decode(model.sample(1, generator=torch.Generator().manual_seed(0))[0])
    achieved_wall = flops_per_iter * args.iters / wall
    achieved_cpu = flops_per_iter * args.iters / cpu
    return {
        "benchmark": "tinyshakespeare-char-gpt",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "recipe": {
            "config": asdict(config),
            "iters": args.iters,
            "batch_size": batch,
            "optimizer": "AdamW(betas=(0.9, 0.99), weight_decay=0.1 on dim>=2)",
            "schedule": schedule,
            "grad_clip": 1.0,
            "eval": f"{args.eval_iters} random batches every {args.eval_interval} iters; "
            "final: every non-overlapping validation window",
            "seed": args.seed,
            "dtype": "float32",
        },
        "threads": args.threads,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "parameters_without_positions": n_params,
        "curve": curve,
        "final_val_nats_per_char": final["all"],
        "final_val_nats_per_char_t>=1": final["t>=1"],
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "loop_wall_s": loop_wall,
        "ms_per_iter": 1e3 * wall / args.iters,
        "median_ms_per_iter": statistics.median(step_ms),
        "model_flops_per_iter": flops_per_iter,
        "achieved_flops_per_wall_s": achieved_wall,
        "achieved_flops_per_cpu_s": achieved_cpu,
        "matmul_peak_flops_per_wall_s": peak_wall,
        "matmul_peak_flops_per_cpu_s": peak_cpu,
        "mfu_wall": achieved_wall / peak_wall,
        "mfu_cpu": achieved_cpu / peak_cpu,
        "sample": sample,
    }


NANOGPT_ARGS = (
    "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
    "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
    "--n_embd=128", "--dropout=0.0",
    "--always_save_checkpoint=True",
)  # fmt: skip
NANOGPT_FULL_VAL = """
import sys, numpy as np, torch
from model import GPT, GPTConfig
torch.set_num_threads(1)
ckpt = torch.load(sys.argv[1] + "/ckpt.pt", map_location="cpu", weights_only=True)
model = GPT(GPTConfig(**ckpt["model_args"]))
model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
model.eval()
ids = np.fromfile("data/shakespeare_char/val.bin", dtype=np.uint16)
val = torch.from_numpy(ids.astype(np.int64))
n = (len(val) - 1) // 64
x, y = val[: n * 64].view(n, 64), val[1 : n * 64 + 1].view(n, 64)
with torch.no_grad():
    total = sum(model(xb, yb)[1].item() * len(xb) for xb, yb in zip(x.split(256), y.split(256)))
print(total / n)
"""


TIMES = ("loop_wall_s", "median_ms_per_iter", "process_wall_s", "process_cpu_s")
SUMMARY = [(side, k) for side in ("ours", "nanogpt") for k in ("val_loss_estimate", *TIMES)] + [
    ("ours", "val_loss_estimate_t>=1"),
    ("ours", "time_to_match_s"),
    ("ours", "val_loss_full_t>=1"),
    ("nanogpt", "val_loss_full"),
]


def timed(command: list[str], cwd: Path) -> tuple[str, float, float]:
    """Run a pinned one-thread child process; (stdout, wall seconds, CPU seconds)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - w0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, wall, cpu


def run_ours(args: argparse.Namespace, seed: int, out: Path) -> dict:
    """One fresh process of this script without the matmul peak; its JSON plus process times."""
    command = [sys.executable, str(Path(__file__).resolve()), "--no-peak", "--seed", str(seed)]
    command += ["--iters", str(args.iters), "--data", str(args.data), "--out", str(out)]
    command += ["--lr", str(args.lr), "--eval-interval", str(args.eval_interval)]
    _, wall, cpu = timed(command, ROOT)
    result = json.loads(out.read_text())
    return {
        "curve": [(c["iter"], c["loop_wall_s"], c["val_nats_t>=1"]) for c in result["curve"]],
        "val_loss_estimate": result["curve"][-1]["val_nats"],
        "val_loss_estimate_t>=1": result["curve"][-1]["val_nats_t>=1"],
        "val_loss_full_t>=1": result["final_val_nats_per_char_t>=1"],
        "val_loss_full_all": result["final_val_nats_per_char"],
        "loop_wall_s": result["loop_wall_s"],
        "median_ms_per_iter": result["median_ms_per_iter"],
        "process_wall_s": wall,
        "process_cpu_s": cpu,
        "seed": seed,
    }


def run_nanogpt(args: argparse.Namespace, out_dir: Path) -> dict:
    """One nanoGPT run with its README's CPU configuration; figures parsed from its log."""
    shutil.rmtree(out_dir, ignore_errors=True)
    command = [str(args.nanogpt_python), "train.py", *NANOGPT_ARGS, f"--out_dir={out_dir}"]
    command += [f"--max_iters={args.iters}", f"--lr_decay_iters={args.iters}"]
    log, wall, cpu = timed(command, args.nanogpt)
    evals = {int(m[1]): float(m[2]) for m in re.finditer(r"step (\d+): .*val loss ([\d.]+)", log)}
    times = {int(m[1]): float(m[2]) for m in re.finditer(r"iter (\d+): .*time ([\d.]+)ms", log)}
    loop = [times[it] for it in range(args.iters)]
    steps = [times[it] for it in range(args.iters) if it % 250 != 0]
    (out_dir / "train.log").write_text(log)
    scorer = [str(args.nanogpt_python), "-c", NANOGPT_FULL_VAL, str(out_dir)]
    full, score_wall, score_cpu = timed(scorer, args.nanogpt)
    return {
        "val_loss_estimate": evals[max(evals)],  # the last evaluation: iteration args.iters
        "val_loss_full": float(full.strip().splitlines()[-1]),
        "loop_wall_s": sum(loop) / 1e3,
        "median_ms_per_iter": statistics.median(steps),
        "process_wall_s": wall + score_wall,  # training process + full-validation scoring
        "process_cpu_s": cpu + score_cpu,
    }


def compare(args: argparse.Namespace) -> dict:
    """Alternate ours / nanoGPT for ``args.pairs`` pairs; runs, ratios ours/theirs, medians."""
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / "probgen-shakespeare"
    scratch.mkdir(parents=True, exist_ok=True)
    pairs = []
    for pair in range(args.pairs):
        ours = run_ours(args, args.seed + pair, scratch / f"ours-{pair}.json")
        print(f"pair {pair} ours    {ours}", flush=True)
        theirs = run_nanogpt(args, scratch / f"nanogpt-{pair}")
        print(f"pair {pair} nanoGPT {theirs}", flush=True)
        ratio = {k: ours[k] / theirs[k] for k in TIMES}
        match = time_to_match(ours["curve"], theirs["val_loss_estimate"])
        ratio["time_to_match_over_nanogpt_loop"] = match / theirs["loop_wall_s"]
        ours["time_to_match_s"] = match
        pairs.append({"ours": ours, "nanogpt": theirs, "ratio": ratio})
    summary = {f"ratio_{k}": spread([p["ratio"][k] for p in pairs]) for k in pairs[0]["ratio"]}
    for side, metric in SUMMARY:
        summary[f"{side}_{metric}"] = spread([p[side][metric] for p in pairs])
    return {
        "benchmark": "tinyshakespeare-char-gpt-vs-nanogpt",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "nanogpt_command": [
            "train.py",
            *NANOGPT_ARGS,
            f"--max_iters={args.iters}",
            f"--lr_decay_iters={args.iters}",
        ],
        "nanogpt_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=args.nanogpt, capture_output=True, text=True
        ).stdout.strip(),
        "threads": 1,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "pairs": pairs,
        "summary": summary,
    }


def time_to_match(curve: list[tuple[int, float, float]], target: float) -> float:
    """Loop wall seconds at our first evaluation whose loss (positions t ≥ 1) is ≤ ``target``.

    ``curve`` holds (iteration, loop wall seconds, 20-batch validation loss);
    infinity when no evaluation reaches the target.
    """
    return next((wall for _, wall, loss in curve if loss <= target), math.inf)


def spread(values: list[float]) -> dict:
    """Median with min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-interval", type=int, default=250)
    parser.add_argument("--eval-iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (min: lr/10)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--peak", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--nanogpt", type=Path, default=None, help="nanoGPT checkout to compare")
    parser.add_argument("--nanogpt-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/shakespeare.json")
    args = parser.parse_args()
    if args.nanogpt is not None:
        result = compare(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        for key, value in result["summary"].items():
            print(f"{key:<36} {value['median']:9.4f}  [{value['min']:.4f}, {value['max']:.4f}]")
        print(f"wrote {args.out}")
        return
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    rows = [
        ("iterations", f"{args.iters}"),
        ("threads", f"{args.threads}"),
        ("val nats/char (all positions)", f"{result['final_val_nats_per_char']:.4f}"),
        (
            "val nats/char (t ≥ 1, nanoGPT-comparable)",
            f"{result['final_val_nats_per_char_t>=1']:.4f}",
        ),
        ("train wall-clock (s)", f"{result['train_wall_s']:.1f}"),
        ("train CPU time (s)", f"{result['train_cpu_s']:.1f}"),
        ("ms / iteration", f"{result['ms_per_iter']:.1f}"),
        ("achieved GFLOP / wall s", f"{result['achieved_flops_per_wall_s'] / 1e9:.2f}"),
        ("2048² matmul peak GFLOP / wall s", f"{result['matmul_peak_flops_per_wall_s'] / 1e9:.2f}"),
        ("MFU (wall clock)", f"{100 * result['mfu_wall']:.1f} %"),
        ("MFU (CPU time)", f"{100 * result['mfu_cpu']:.1f} %"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"sample: {result['sample']!r}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
