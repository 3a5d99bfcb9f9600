"""Sample quality against network evaluations: the ODE solvers next to ancestral sampling.

For each seed, trains a DDPM on 8gaussians for a CPU-time budget (linear chain,
N = 1000, ε-prediction, ``TimeMLP`` 3 × 128, Adam 2e-3 with a cosine of the
CPU time, batch 512 of fresh exact samples, float32, one thread), then draws
``--n`` samples with every sampler of ``ROWS`` from the same prior draws and
scores them against exact samples of the shape:

- MMD² (Gaussian kernels at 0.25…4 × the median distance, fixed per seed);
- KL(q ‖ p) of the sampler's law q to the data law p, estimated as
  −Ĥ(q) − mean log p(x_i): log p is the shape's exact density and Ĥ the
  Kozachenko–Leonenko k-nearest-neighbour entropy (k = 5). Its bias at this
  n is the figure of the "exact" row (the same estimate on exact samples,
  where the true KL is 0);
- −mean log p(x_i), the samples' cross-entropy under the data (H[p] ≈ 2.83).

and, once per seed, the model's test NLL by the probability-flow ODE (exact
divergence) and its KL gap (test NLL − H[p] on the same points). A sampler
*matches* ancestral-1000 when the mean over seeds of its paired MMD² difference
to ancestral-1000 is within the seed noise: 2 standard errors of that mean
(sd over seeds / √seeds), or the sd of the exact-vs-exact MMD² if larger.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. .venv/bin/python \\
        benchmarks/solvers_nfe.py --seeds 0 1 2 --budget 60

With ``--digits``, instead: the library's DDPM for the 8×8 digits
(``build_model("ddpm", spec)``: small U-Net, 17 levels dequantized to [−1, 1],
float32) trained for ``--budget`` CPU seconds (batch 128, Adam 1e-3 with a cosine
of CPU time) per seed, and the FID (the shipped digits feature net) of as many
samples as test images (447) against the test images, for the rows of
``DIGIT_ROWS``; "exact" is 447 training images against the test images.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. .venv/bin/python \
        benchmarks/solvers_nfe.py --digits --seeds 0 1 --budget 100 \
        --out benchmarks/results/solvers_nfe_digits.json

Target (issue 14): DPM-Solver++ or Heun at ≤ 20 NFE matches ancestral-1000.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor

from probgen.core import Estimate
from probgen.divergences import MMD_SCALES, median_bandwidth, mmd
from probgen.models.diffusion import (
    DDIM,
    DDPM,
    Ancestral,
    Diffusion,
    DiffusionSampler,
    DPMSolver2M,
    DPMSolver3M,
    Euler,
    Heun,
    KarrasGrid,
    LogSNRGrid,
    ProbabilityFlow,
)
from probgen.registry import DATASETS
from probgen.train.config import atomic_write_text

ROWS: list[tuple[str, DiffusionSampler, tuple[int, ...]]] = [
    ("ancestral", Ancestral(), (1000,)),
    ("ddim = euler, uniform t", DDIM(), (50, 20, 10, 5)),
    ("euler, karras", Euler(KarrasGrid()), (20, 10, 5)),
    ("heun, uniform t", Heun(), (10, 5, 3)),
    ("heun, karras", Heun(KarrasGrid()), (10, 5, 3)),
    ("dpm++ 2m, uniform t", DPMSolver2M(), (20, 10, 5)),
    ("dpm++ 2m, log-snr", DPMSolver2M(LogSNRGrid()), (20, 10, 5)),
    ("dpm++ 3m, uniform t", DPMSolver3M(), (20, 10, 5)),
    ("dpm++ 3m, log-snr", DPMSolver3M(LogSNRGrid()), (20, 10, 5)),
    ("dopri5 tol 1e-5", ProbabilityFlow(), (1,)),
]
"""(label, sampler, step counts K); the NFE is counted by the sampler."""

DIGIT_ROWS = [row for row in ROWS if not row[0].startswith(("dopri5", "dpm++ 2m, log", "euler, k"))]
"""The digits rows: ROWS without the slowest (dopri5) and two of the variants."""


def train(model: Diffusion, data: object, budget: float, batch: int, lr: float, seed: int) -> dict:
    """Adam until ``budget`` CPU seconds; the learning rate follows a cosine of CPU time."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    start, steps = time.process_time(), 0
    while (used := time.process_time() - start) < budget:
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * used / budget))
        loss = model.loss(data.batch("train", batch, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return {"steps": steps, "cpu_seconds": time.process_time() - start}


def knn_entropy(x: Tensor, k: int = 5) -> float:
    """Kozachenko–Leonenko estimate of H(q) from samples x (n, d) of q, in nats.

    Ĥ = ψ(n) − ψ(k) + log V_d + (d/n) Σ_i log r_k(i), r_k(i) the distance from
    x_i to its k-th nearest other sample, V_d the volume of the unit d-ball.
    Reference: Kozachenko & Leonenko (1987); Kraskov, Stögbauer & Grassberger (2004), eq. (20).
    """
    n, d = x.shape
    dist = torch.cdist(x.double(), x.double())
    dist.fill_diagonal_(math.inf)
    r = dist.kthvalue(k, dim=1).values
    log_ball = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    digamma = torch.special.digamma(torch.tensor([float(n), float(k)], dtype=torch.float64))
    return (digamma[0] - digamma[1]).item() + log_ball + d * r.log().mean().item()


def scores(samples: Tensor, reference: Tensor, truth: object, bandwidths: list[float]) -> dict:
    """MMD² to ``reference``, the KL(q ‖ p) estimate and the cross-entropy under p."""
    samples = samples.double()
    cross = -truth.log_prob(samples.to(torch.get_default_dtype())).double().mean().item()
    return {
        "mmd2": mmd(samples, reference.double(), bandwidths).item(),
        "kl": cross - knn_entropy(samples),  # E_q log q − E_q log p
        "cross_entropy": cross,
    }


def one_seed(seed: int, args: argparse.Namespace) -> dict:
    """Train one model and score every sampler of ``ROWS`` on it."""
    torch.manual_seed(seed)
    data = DATASETS.get("8gaussians")()
    model = DDPM.for_data(data.spec, chain_steps=1000, hidden=(128, 128, 128))
    fit = train(model, data, args.budget, 512, 2e-3, seed)
    model.eval()
    truth = data.truth
    test = data.split("test")[: args.n_nll]
    start = time.process_time()
    log_p = model.log_prob(test)
    gap = Estimate.from_samples(truth.log_prob(test).detach() - log_p, kind="exact")
    nll_cpu = time.process_time() - start
    reference = truth.sample(args.n, generator=torch.Generator().manual_seed(seed + 100))
    exact = truth.sample(args.n, generator=torch.Generator().manual_seed(seed + 200))
    h = median_bandwidth(reference, exact).item()
    bandwidths = [h * scale for scale in MMD_SCALES]
    rows = [
        {"sampler": "exact", "steps": 0, "nfe": 0, **scores(exact, reference, truth, bandwidths)}
    ]
    for label, sampler, step_counts in ROWS:
        for steps in step_counts:
            g = torch.Generator().manual_seed(seed + 300)  # the same prior draws for every row
            start = time.process_time()
            result = model.run_sampler(args.n, sampler=sampler, steps=steps, generator=g)
            cpu = time.process_time() - start
            row = {"sampler": label, "steps": steps, "nfe": result.n_evaluations, "cpu": cpu}
            row.update(scores(result.samples, reference, truth, bandwidths))
            rows.append(row)
            print(
                f"  seed {seed} {label:24s} K {steps:4d} NFE {row['nfe']:5d}  "
                f"MMD² {row['mmd2']:+.5f}  KL {row['kl']:+.4f}  CE {row['cross_entropy']:.4f}",
                flush=True,
            )
    print(f"  seed {seed}: {fit['steps']} steps, KL gap {gap.value:.4f} ± {gap.stderr:.4f}")
    return {
        "seed": seed,
        "train": fit,
        "kl_gap": vars(gap),
        "test_nll": -log_p.mean().item(),
        "nll_cpu_seconds": nll_cpu,
        "rows": rows,
    }


def digits_seed(seed: int, args: argparse.Namespace) -> dict:
    """Train the digits DDPM for one seed and score every sampler of ``DIGIT_ROWS`` by FID."""
    from probgen.data import Digits
    from probgen.evaluate.features import default_features
    from probgen.evaluate.samples import frechet_distance
    from probgen.models import build_model

    torch.manual_seed(seed)
    data = Digits()
    model = build_model("ddpm", data.spec)
    fit = train(model, data, args.budget, 128, 1e-3, seed)
    model.eval()
    net = default_features(data.spec.event_shape, levels=data.spec.levels, name="digits")
    test = data.split("test")
    train_rows = data.split("train")
    pick = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(seed))
    real = frechet_distance(train_rows[pick[: len(test)]], test, net).item()
    rows = [{"sampler": "exact", "steps": 0, "nfe": 0, "fid": real}]
    for label, sampler, step_counts in DIGIT_ROWS:
        for steps in step_counts:
            g = torch.Generator().manual_seed(seed + 300)
            start = time.process_time()
            result = model.run_sampler(len(test), sampler=sampler, steps=steps, generator=g)
            cpu = time.process_time() - start
            fid = frechet_distance(result.samples, test, net).item()
            rows.append(
                {
                    "sampler": label,
                    "steps": steps,
                    "nfe": result.n_evaluations,
                    "cpu": cpu,
                    "fid": fid,
                }
            )
            print(
                f"  digits seed {seed} {label:24s} K {steps:4d} "
                f"NFE {result.n_evaluations:5d}  FID {fid:.3f}",
                flush=True,
            )
    return {"seed": seed, "train": fit, "rows": rows}


def summarise(runs: list[dict]) -> list[dict]:
    """Per (sampler, K): mean ± sd over seeds, and the paired MMD² difference to ancestral-1000."""
    keys = [(r["sampler"], r["steps"]) for r in runs[0]["rows"]]

    def column(key: tuple[str, int], field: str) -> Tensor:
        return torch.tensor(
            [
                next(r[field] for r in run["rows"] if (r["sampler"], r["steps"]) == key)
                for run in runs
            ],
            dtype=torch.float64,
        )

    metric = "fid" if "fid" in runs[0]["rows"][0] else "mmd2"
    base = column(("ancestral", 1000), metric)
    floor_sd = 0.0
    table = []
    for key in keys:
        entry: dict = {"sampler": key[0], "steps": key[1], "nfe": column(key, "nfe").mean().item()}
        for field in ("mmd2", "kl", "cross_entropy", "fid"):
            if field in runs[0]["rows"][0]:
                v = column(key, field)
                entry[field] = {
                    "mean": v.mean().item(),
                    "sd": v.std().item() if len(v) > 1 else 0.0,
                }
        diff = column(key, metric) - base
        se = diff.std().item() / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
        if key[0] == "exact" and metric == "mmd2":
            floor_sd = entry["mmd2"]["sd"]
        entry["minus_ancestral"] = {"metric": metric, "mean": diff.mean().item(), "se": se}
        table.append(entry)
    for entry in table:
        d = entry["minus_ancestral"]
        entry["matches_ancestral_1000"] = abs(d["mean"]) <= max(2 * d["se"], floor_sd)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=60.0, help="CPU seconds of training")
    parser.add_argument("--n", type=int, default=2000, help="samples per sampler")
    parser.add_argument("--n-nll", type=int, default=500)
    parser.add_argument("--digits", action="store_true", help="the digits 8×8 FID run instead")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/solvers_nfe.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.digits:
        runs = [digits_seed(seed, args) for seed in args.seeds]
        table = summarise(runs)
        print(
            f"\n{'sampler':26s} {'K':>5s} {'NFE':>6s}  {'FID':>14s}  {'Δ vs anc-1000':>14s}  match"
        )
        for e in table:
            f, d = e["fid"], e["minus_ancestral"]
            match = "yes" if e["matches_ancestral_1000"] else "no"
            print(
                f"{e['sampler']:26s} {e['steps']:5d} {e['nfe']:6.0f}  "
                f"{f['mean']:6.3f} ± {f['sd']:5.3f}  {d['mean']:+6.3f} ± {d['se']:5.3f}  {match}"
            )
        write(
            args,
            {
                "data": "digits 8x8",
                "model": "build_model('ddpm'): U-Net, levels 17",
                "n_samples": 447,
            },
            table,
            runs,
        )
        return
    runs = [one_seed(seed, args) for seed in args.seeds]
    table = summarise(runs)
    print(
        f"\n{'sampler':26s} {'K':>5s} {'NFE':>6s}  {'MMD² ×1e4':>16s}  {'Δ vs anc-1000':>14s}  "
        f"{'KL(q‖p)':>16s}  match"
    )
    for e in table:
        m, d, kl = e["mmd2"], e["minus_ancestral"], e["kl"]
        print(
            f"{e['sampler']:26s} {e['steps']:5d} {e['nfe']:6.0f}  "
            f"{1e4 * m['mean']:+7.2f} ± {1e4 * m['sd']:5.2f}  "
            f"{1e4 * d['mean']:+6.2f} ± {1e4 * d['se']:4.2f}  "
            f"{kl['mean']:+.4f} ± {kl['sd']:.4f}  {'yes' if e['matches_ancestral_1000'] else 'no'}"
        )
    gaps = [r["kl_gap"]["value"] for r in runs]
    print(
        f"model KL gap (ODE NLL − H on test points) per seed: {', '.join(f'{g:.4f}' for g in gaps)}"
    )
    recipe = {
        "data": "8gaussians",
        "model": "DDPM, linear chain N=1000, eps-prediction, TimeMLP 3x128, float32",
        "n_samples": args.n,
    }
    write(args, recipe, table, runs)


def write(args: argparse.Namespace, recipe: dict, table: list[dict], runs: list[dict]) -> None:
    """The JSON report (recipe, table, runs, versions), written atomically to ``args.out``."""
    report = {
        "recipe": {
            **recipe,
            "training": f"Adam, cosine of CPU time, {args.budget} CPU-s per seed, 1 thread",
            "seeds": args.seeds,
        },
        "table": table,
        "runs": runs,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "threads": torch.get_num_threads(),
        "timestamp": datetime.now(timezone.utc).isoformat(),
    }
    atomic_write_text(args.out, json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
