"""Character-level GPT on Tiny Shakespeare: validation nats/char against training time.

Recipe (nanoGPT's documented CPU configuration of ``train_shakespeare_char``):
4 layers, 4 heads, width 128, context 64, batch 12, dropout 0, no biases,
2000 iterations; AdamW (β = 0.9, 0.99, weight decay 0.1 on matrices and
embeddings only), learning rate 1e-3 with 100 linear warm-up steps and a
cosine decay to 1e-4 at the last iteration, gradient clipping at norm 1.
Vocabulary 65 characters, 90/10 train/validation split.

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

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shakespeare.py --iters 2000
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
import statistics
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
    opt = optimizer(model, lr=1e-3, weight_decay=0.1)
    schedule = dict(lr=1e-3, min_lr=1e-4, warmup=100, decay_iters=args.iters)
    gen = torch.Generator().manual_seed(args.seed)
    eval_gen = torch.Generator().manual_seed(args.seed + 1)
    batch, T = 12, 64
    n_params = model.num_parameters(embeddings=False)
    flops_per_iter = (6 * n_params + 12 * config.n_layer * T * config.n_embd) * batch * T

    peak_wall, peak_cpu = matmul_peak()
    curve = []
    wall = cpu = 0.0
    for it in range(args.iters + 1):
        if it % args.eval_interval == 0 or it == args.iters:
            probe = torch.cat(
                [data.batch("validation", batch, eval_gen) for _ in range(args.eval_iters)]
            )
            loss = validation_loss(model, probe)
            curve.append({"iter": it, "wall_s": wall, "cpu_s": cpu, "val_nats": loss["all"]})
            print(f"iter {it:5d}  wall {wall:7.1f}s  val {loss['all']:.4f} nats/char", flush=True)
        if it == args.iters:
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
        wall += time.perf_counter() - w0
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
        "ms_per_iter": 1e3 * wall / args.iters,
        "model_flops_per_iter": flops_per_iter,
        "achieved_flops_per_wall_s": achieved_wall,
        "achieved_flops_per_cpu_s": achieved_cpu,
        "matmul_peak_flops_per_wall_s": peak_wall,
        "matmul_peak_flops_per_cpu_s": peak_cpu,
        "mfu_wall": achieved_wall / peak_wall,
        "mfu_cpu": achieved_cpu / peak_cpu,
        "sample": sample,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-interval", type=int, default=250)
    parser.add_argument("--eval-iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/shakespeare.json")
    args = parser.parse_args()
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
