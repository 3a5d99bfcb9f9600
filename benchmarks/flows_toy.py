"""Flows and MADE on the 2-D toy shapes: KL gap to the exact density after a CPU-time budget.

Flow recipe (/work/shared/BENCHMARKING.md, "Flow peers"): 5 transforms
separated by order reversals, conditioners with two hidden layers of 64,
``--bins`` (8) spline bins (spline on [-5, 5], identity outside), standard normal base.
The autoregressive contender is MADE with mixture conditionals
(Germain et al., 2015, "MADE"; p(x) = p(x_1) p(x_2 | x_1), each a mixture of
``--made-components`` (20) Gaussians — "made" — or logistics — "made_logistic" —
whose weights, locations and log-scales come from a masked MLP 128-128).
The VAE ("vae": latent dimension 2, MLPs 128-128, Gaussian decoder with a
learned variance) trains on the negative ELBO and is scored by the IWAE
bound with K = 1000, so its "KL gap" is an upper bound (kind "bound").
Every model: batch 512, Adam (lr 1e-3; with ``--cosine`` decayed as
lr·½(1 + cos(π·c/budget)) in the CPU time c spent), a fresh exact sample of
the shape at every step, float32. The budget is CPU time
(``time.process_time``) per training run: ``--budget`` for the models named
in ``--long`` (NSF and MADE by default), ``--short-budget`` for the others;
torch pinned to ``--threads`` threads (1 by default).

The figure of merit is the KL gap on a fixed test set of ``--n-test`` exact
samples x_i of the true law p:

    gap = 1/n Σ_i [log p(x_i) - log p_θ(x_i)]  (≈ KL(p ‖ p_θ) ≥ 0),

i.e. test NLL minus the true test NLL on the same points, with the standard
error of the paired difference. Each (flow, shape) is trained with
``--seeds`` seeds; the table reports the median gap and its min–max.
Writes ``benchmarks/results/flows_toy.json``, rewritten after every run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flows_toy.py --cosine    # 300 / 60 CPU-s
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flows_toy.py --budget 20 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from probgen.core import DataSpec, Estimate
from probgen.data.toy import ToyDataset
from probgen.models.autoregressive import MADEModel, MixtureOfGaussians, MixtureOfLogistics
from probgen.models.flows import MAF, NSF, RealNVP
from probgen.models.vae import VAE

RESULTS = Path(__file__).resolve().parent / "results"
RECIPE: dict[str, Any] = {
    "transforms": 5,
    "hidden": [64, 64],
    "bins": 8,
    "spline_bound": 5.0,
    "batch": 512,
    "optimizer": "Adam",
    "lr": 1e-3,
    "data": "fresh exact samples every step",
    "dtype": "float32",
    "budget": "CPU seconds (time.process_time) per training run",
    "made_components": 20,
}
SHAPES = ["8gaussians", "two_moons", "checkerboard", "pinwheel"]
MADE_HIDDEN = (128, 128)
VAE_EVAL_K = 1000


@dataclass
class Contender:
    """A trainable density under benchmark: its module and how to score and sample it."""

    name: str
    module: nn.Module
    log_prob: Callable[[Tensor], Tensor]  # (B, 2) -> (B,)
    sample: Callable[[int], Tensor]  # n -> (n, 2)
    loss: Callable[[Tensor], Tensor] | None = None  # training loss; default mean −log_prob
    kind: str = "exact"  # what log_prob is ("bound" for the VAE's IWAE estimate)


def ours(name: str) -> Contender:
    """probgen's model ``name`` ("realnvp", "maf", "nsf", "made", "made_logistic", "vae")."""
    k, hidden = RECIPE["transforms"], tuple(RECIPE["hidden"])
    components = RECIPE["made_components"]
    builders: dict[str, Callable[[], nn.Module]] = {
        "realnvp": lambda: RealNVP((2,), transforms=k, hidden=hidden),
        "maf": lambda: MAF((2,), transforms=k, hidden=hidden),
        "nsf": lambda: NSF(
            (2,), transforms=k, hidden=hidden, bins=RECIPE["bins"], bound=RECIPE["spline_bound"]
        ),
        "made": lambda: MADEModel((2,), MixtureOfGaussians(components), MADE_HIDDEN),
        "made_logistic": lambda: MADEModel((2,), MixtureOfLogistics(components), MADE_HIDDEN),
    }
    if name == "vae":
        vae = VAE.for_data(DataSpec((2,)), latent_dim=2, hidden=(128, 128))
        return Contender(
            "probgen vae",
            vae,
            lambda x: vae.iwae_bound(x, VAE_EVAL_K),
            vae.sample,
            loss=vae.loss,
            kind="bound",
        )
    flow = builders[name]()
    return Contender(f"probgen {name}", flow, flow.log_prob, flow.sample)


def train(
    contender: Contender, dataset: ToyDataset, budget: float, seed: int, cosine: bool = False
) -> dict[str, float]:
    """Adam on the mean NLL of fresh batches until ``budget`` CPU-seconds have been spent.

    With ``cosine`` the learning rate is lr·½(1 + cos(π·c/budget)) after c CPU-seconds.
    """
    optimizer = torch.optim.Adam(contender.module.parameters(), lr=RECIPE["lr"])
    generator = torch.Generator().manual_seed(seed)
    steps, start = 0, time.process_time()
    while (spent := time.process_time() - start) < budget:
        if cosine:
            for group in optimizer.param_groups:
                group["lr"] = RECIPE["lr"] * 0.5 * (1 + math.cos(math.pi * spent / budget))
        x = dataset.batch("train", RECIPE["batch"], generator)
        optimizer.zero_grad()
        loss = contender.loss(x) if contender.loss else -contender.log_prob(x).mean()
        loss.backward()
        optimizer.step()
        steps += 1
    spent = time.process_time() - start
    return {"steps": steps, "cpu_seconds": spent, "steps_per_cpu_second": steps / spent}


@torch.no_grad()
def kl_gap(contender: Contender, dataset: ToyDataset) -> dict[str, float]:
    """Test NLL, true test NLL and their paired difference (the KL gap) with standard errors."""
    test = dataset.split("test")
    log_q = torch.cat([contender.log_prob(x) for x in test.split(4096)]).double()
    log_p = dataset.truth.log_prob(test).double()
    nll = Estimate.from_samples(-log_q, kind=contender.kind)
    gap = Estimate.from_samples(log_p - log_q, kind=contender.kind)
    return {
        "test_nll": nll.value,
        "test_nll_stderr": nll.stderr,
        "true_nll": -log_p.mean().item(),
        "kl_gap": gap.value,
        "kl_gap_stderr": gap.stderr,
    }


@torch.no_grad()
def sampling_rate(contender: Contender, n: int = 10_000, repeats: int = 5) -> float:
    """Points per CPU-second of ``contender.sample(n)``, the median over ``repeats`` calls.

    One call of a fast sampler takes tens of milliseconds, within the scheduler
    noise of a shared machine, hence the median.
    """
    rates = []
    for _ in range(repeats):
        start = time.process_time()
        contender.sample(n)
        rates.append(n / max(time.process_time() - start, 1e-9))
    return statistics.median(rates)


def run_info(threads: int) -> dict[str, Any]:
    """Versions, threads and a timestamp for the JSON record."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def spread(values: list[float]) -> str:
    """'median [min–max]' of a list of figures."""
    return f"{statistics.median(values):.4f} [{min(values):.4f}–{max(values):.4f}]"


def save(args: argparse.Namespace, runs: list[dict[str, Any]], summary: dict) -> None:
    """Write the JSON record of the runs so far (and the summary once there is one)."""
    record = {
        "benchmark": "flows_toy",
        "recipe": RECIPE | {"made_hidden": list(MADE_HIDDEN)},
        "budget_cpu_seconds": {"long": args.budget, "short": args.short_budget},
        "long_budget_models": args.long,
        "cosine_lr": args.cosine,
        "seeds": args.seeds,
        "n_test": args.n_test,
        **run_info(args.threads),
        "runs": runs,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="CPU-s per --long run")
    parser.add_argument("--short-budget", type=float, default=60.0, help="CPU-s per other run")
    parser.add_argument("--long", nargs="+", default=["nsf", "made", "made_logistic"])
    parser.add_argument("--cosine", action="store_true", help="cosine learning-rate decay")
    parser.add_argument("--flows", nargs="+", default=["realnvp", "maf", "nsf", "made"])
    parser.add_argument("--data", nargs="+", default=SHAPES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bins", type=int, default=RECIPE["bins"], help="spline bins (NSF)")
    parser.add_argument("--made-components", type=int, default=RECIPE["made_components"])
    parser.add_argument("--out", type=Path, default=RESULTS / "flows_toy.json")
    args = parser.parse_args()
    RECIPE.update(bins=args.bins, made_components=args.made_components)
    torch.set_num_threads(args.threads)

    runs: list[dict[str, Any]] = []
    print(
        f"{'flow':10} {'data':14} {'seed':>4} {'steps/s':>8} {'test NLL':>9} "
        f"{'true NLL':>9} {'KL gap':>16}"
    )
    for shape in args.data:
        dataset = ToyDataset(shape, n_test=args.n_test, seed=0)
        for name in args.flows:
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                contender = ours(name)
                run = {"flow": name, "data": shape, "seed": seed}
                budget = args.budget if name in args.long else args.short_budget
                run |= train(contender, dataset, budget, seed, args.cosine)
                run |= kl_gap(contender, dataset)
                runs.append(run)
                save(args, runs, {})
                print(
                    f"{name:10} {shape:14} {seed:4d} {run['steps_per_cpu_second']:8.1f} "
                    f"{run['test_nll']:9.4f} {run['true_nll']:9.4f} "
                    f"{run['kl_gap']:8.4f} ± {run['kl_gap_stderr']:.4f}"
                )

    print("\nmedian KL gap [min–max] over seeds, nats")
    summary = {}
    for shape in args.data:
        for name in args.flows:
            gaps = [r["kl_gap"] for r in runs if r["flow"] == name and r["data"] == shape]
            summary[f"{name}/{shape}"] = {
                "median_kl_gap": statistics.median(gaps),
                "min": min(gaps),
                "max": max(gaps),
            }
            print(f"{name:10} {shape:14} {spread(gaps)}")
    save(args, runs, summary)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
