"""Flow matching vs DDPM and the score SDE on 2-D shapes at a fixed CPU budget: ODE KL gap.

Recipe (BENCHMARKING.md's CPU-time recipe): every contender is built as the CLI
builds it (``build_model(name, spec, train_data=...)``: the family for the
data, wrapped in ``Standardized`` fitted on the training split) with the same
network (``TimeMLP`` 3 × 128), trained by Adam (lr 2e-3, cosine decay in the
CPU time spent) on fresh exact batches of 256 until ``--budget`` CPU-seconds
(``time.process_time``, one thread) have been spent, in float32. Then

- the KL gap KL(p ‖ p_θ) ≈ mean(log p(x) − log p_θ(x)) over ``--n-test`` test
  points, with its paired standard error, where log p_θ is the ODE likelihood
  with the exact divergence (rtol = atol = 1e-5; EXACT) and log p the shape's
  exact density;
- for the flow-matching rows, the straightness S = ∫ E‖(Z_1 − Z_0) − v(Z_t, t)‖² dt
  of the learned flow (100 DDIM = Euler steps, 2000 trajectories);
- with ``--reflow``, one reflow of the independent-coupling model (``reflow``,
  the same network; pairs, steps and CPU time reported) and its S and KL gap,
  and 1- and 2-step distillations of the reflowed model scored by MMD² to
  exact samples (next to the exact-vs-exact MMD² of the same sizes).

Contenders: ``ddpm`` (N = 1000, ε-prediction, L_simple), ``score_sde`` (VP,
DSM with λ = σ²), ``fm_independent`` and ``fm_ot`` (``flow_matching`` with the
independent and the exact minibatch OT coupling, the default time law), and
``fm_uniform`` / ``fm_t3`` (independent coupling, time power 1 / 3; ``fm_t3``
only when named in ``--contenders``). Targets (issue 14): the
flow-matching gap at most half of DDPM's, and ≤ 0.02 nats, on 8gaussians and
two_moons.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flow_matching_toy.py  # 60 CPU-s, 3 seeds
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flow_matching_toy.py --budget 20 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from probgen.core import Estimate
from probgen.divergences import MMD_SCALES, median_bandwidth, mmd
from probgen.models import build_model
from probgen.models.diffusion import distil, reflow, straightness
from probgen.registry import DATASETS
from probgen.train.config import atomic_write_text

CONTENDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("ddpm", {}),
    "score_sde": ("score_sde", {}),
    "fm_independent": ("flow_matching", {"coupling": "independent"}),
    "fm_ot": ("flow_matching", {"coupling": "ot"}),
    "fm_uniform": ("flow_matching", {"coupling": "independent", "time_power": 1.0}),
    "fm_t3": ("flow_matching", {"coupling": "independent", "time_power": 3.0}),
}
"""Row name -> (registered family, options); every row has hidden = (128, 128, 128).
The flow-matching rows train with the family's default time law (t − t_min ∝ Beta(½, 1),
``time_power`` 2) except ``fm_uniform`` (t ~ U[t_min, 1]) and ``fm_t3`` (power 3)."""

RECIPE = {"hidden": (128, 128, 128), "lr": 2e-3, "batch": 256, "dtype": "float32"}


def train(model: torch.nn.Module, data: Any, budget: float, seed: int) -> dict[str, float]:
    """Adam, lr·½(1 + cos(π c / budget)) after c CPU-seconds, on fresh batches until the budget."""
    opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"])
    g = torch.Generator().manual_seed(seed)
    steps, start = 0, time.process_time()
    model.train()
    while (spent := time.process_time() - start) < budget:
        for group in opt.param_groups:
            group["lr"] = RECIPE["lr"] * 0.5 * (1 + math.cos(math.pi * spent / budget))
        loss = model.loss(data.batch("train", RECIPE["batch"], g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    spent = time.process_time() - start
    return {"steps": steps, "train_cpu_seconds": spent, "steps_per_cpu_second": steps / spent}


def kl_gap(model: torch.nn.Module, data: Any, n: int) -> dict[str, Any]:
    """mean(log p − log p_θ) on n test points, paired standard error; ODE likelihood."""
    x = data.split("test")[:n]
    start = time.process_time()
    log_q = model.log_prob(x).detach().double()
    cpu = time.process_time() - start
    gap = Estimate.from_samples(data.truth.log_prob(x).detach().double() - log_q, kind="exact")
    return {"kl_gap": vars(gap), "nll_cpu_seconds": cpu, "n_test": len(x)}


def straight(model: torch.nn.Module, seed: int) -> dict[str, float]:
    """S of the inner flow (the standardised space) on 2000 trajectories, 100 steps."""
    inner = model.model
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(seed + 11))
    s = straightness(inner.denoiser, z, 100).double()
    return {"value": s.mean().item(), "stderr": s.std().item() / math.sqrt(len(s))}


def sample_mmd(samples: torch.Tensor, data: Any, seed: int) -> dict[str, float]:
    """MMD² to an exact sample of the same size, and exact vs exact (the noise floor)."""
    n = len(samples)
    ref = data.truth.sample(n, generator=torch.Generator().manual_seed(seed + 21))
    other = data.truth.sample(n, generator=torch.Generator().manual_seed(seed + 22))
    h = median_bandwidth(ref, other).item()
    bandwidths = [h * s for s in MMD_SCALES]
    return {
        "mmd2": mmd(samples, ref, bandwidths).item(),
        "exact_vs_exact": mmd(other, ref, bandwidths).item(),
    }


def run_reflow(model: torch.nn.Module, data: Any, args: argparse.Namespace, seed: int) -> dict:
    """Reflow the independent-coupling flow, then distil it to 1 and 2 steps."""
    inner = model.model
    g = torch.Generator().manual_seed(seed + 31)
    start = time.process_time()
    new_inner = reflow(inner, pairs=args.pairs, train_steps=args.reflow_steps, generator=g)
    cpu = time.process_time() - start
    model.model = new_inner  # the same Standardized map around the new flow
    out: dict[str, Any] = {"pairs": args.pairs, "train_steps": args.reflow_steps, "cpu": cpu}
    out["straightness"] = straight(model, seed)
    out |= kl_gap(model, data, args.n_test)
    for k in (1, 2):
        start = time.process_time()
        student = distil(new_inner, k, args.pairs, args.reflow_steps, generator=g)
        model.model = student
        samples = model.sample(2000).detach()
        out[f"distilled_{k}_step"] = sample_mmd(samples, data, seed) | {
            "cpu": time.process_time() - start
        }
    model.model = new_inner
    return out


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max over seeds."""
    v = sorted(values)
    return {
        "median": v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2]),
        "min": v[0],
        "max": v[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["8gaussians", "two_moons"])
    parser.add_argument("--contenders", nargs="+", default=[c for c in CONTENDERS if c != "fm_t3"])
    parser.add_argument("--budget", type=float, default=60.0, help="CPU-s of training per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument(
        "--reflow", action="store_true", help="also reflow and distil fm_independent"
    )
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--reflow-steps", type=int, default=2000)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/flow_matching_toy.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    runs: list[dict] = []
    for shape in args.shapes:
        data = DATASETS.get(shape)()
        for seed in range(args.seeds):
            for row in args.contenders:
                family, options = CONTENDERS[row]
                torch.manual_seed(seed)
                model = build_model(
                    family,
                    data.spec,
                    train_data=data.fitting_sample(seed=seed)[0],
                    hidden=RECIPE["hidden"],
                    **options,
                )
                run: dict[str, Any] = {"shape": shape, "seed": seed, "row": row}
                run |= train(model, data, args.budget, seed)
                run |= kl_gap(model, data, args.n_test)
                if family == "flow_matching":
                    run["straightness"] = straight(model, seed)
                if args.reflow and row == "fm_independent":
                    run["reflow"] = run_reflow(model, data, args, seed)
                runs.append(run)
                gap = run["kl_gap"]
                extra = f"  S {run['straightness']['value']:.4f}" if "straightness" in run else ""
                print(
                    f"{shape:10s} seed {seed} {row:15s} {run['steps']:6d} steps "
                    f"({run['steps_per_cpu_second']:.0f}/CPU-s)  KL gap "
                    f"{gap['value']:.4f} ± {gap['stderr']:.4f}{extra}",
                    flush=True,
                )
                if "reflow" in run:
                    r = run["reflow"]
                    print(
                        f"{'':10s}        reflow: S {r['straightness']['value']:.4f}  KL gap "
                        f"{r['kl_gap']['value']:.4f} ± {r['kl_gap']['stderr']:.4f}; distilled MMD² "
                        f"1-step {r['distilled_1_step']['mmd2']:.5f}, 2-step "
                        f"{r['distilled_2_step']['mmd2']:.5f} (exact vs exact "
                        f"{r['distilled_1_step']['exact_vs_exact']:.5f})",
                        flush=True,
                    )
    table = []
    print(f"\n| shape | row | steps/CPU-s | KL gap, median (min–max) over {args.seeds} seeds |")
    print("|---|---|---|---|")
    for shape in args.shapes:
        for row in args.contenders:
            mine = [r for r in runs if r["shape"] == shape and r["row"] == row]
            gaps = summary([r["kl_gap"]["value"] for r in mine])
            speed = summary([r["steps_per_cpu_second"] for r in mine])
            table.append({"shape": shape, "row": row, "kl_gap": gaps, "steps_per_cpu_s": speed})
            print(
                f"| {shape} | {row} | {speed['median']:.0f} | {gaps['median']:.4f} "
                f"({gaps['min']:.4f}–{gaps['max']:.4f}) |"
            )
    result = {
        "recipe": RECIPE | {"budget_cpu_seconds": args.budget, "timer": "time.process_time"},
        "args": {k: str(v) for k, v in vars(args).items()},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
        "table": table,
    }
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
