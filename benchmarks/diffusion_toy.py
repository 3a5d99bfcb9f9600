"""Diffusion on the 2-D toy shapes: ODE NLL next to the true entropy, and quality against NFE.

For each shape, trains a DDPM (linear chain, ε-prediction, TimeMLP) on exact
samples, then reports

- the probability-flow NLL (exact divergence) of test points, the data's
  entropy H[p] (from the shape's exact density), and their gap
  KL(p ‖ p_θ) = NLL − H as a paired estimate with its standard error;
- MMD² and energy distance (``probgen.divergences``) between model samples
  and exact samples, for every sampler at several step counts, with the
  network evaluations (NFE) each used.

With ``--digits``, also trains a DDPM with the small U-Net on the 8×8 digits
(17 levels) and reports bits/dim by the ODE (Hutchinson, dequantized bound)
and by the VLB (discretized decoder), both through
``probgen.data.dequantize.bits_per_dim`` with ``dequantized=False``.

Targets (issue 5): KL gap below 0.1 nats on 8gaussians and two_moons; DDIM
with 50 steps matching ancestral sampling with 1000 in MMD.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diffusion_toy.py \
        --shapes 8gaussians two_moons --train-steps 20000

``--quick`` runs a short provisional version (a few thousand steps).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from probgen.core import Estimate
from probgen.data.dequantize import bits_per_dim
from probgen.divergences import energy_distance, mmd
from probgen.models.diffusion import (
    DDIM,
    DDPM,
    Ancestral,
    EulerMaruyama,
    PredictorCorrector,
    ProbabilityFlow,
    VLBLikelihood,
)
from probgen.registry import DATASETS

SAMPLERS = [
    ("ancestral", Ancestral, (1000, 250, 50)),
    ("ddim", DDIM, (100, 50, 20, 10)),
    ("euler_maruyama", EulerMaruyama, (1000, 250)),
    ("predictor_corrector", PredictorCorrector, (250,)),
    ("probability_flow", ProbabilityFlow, (1,)),
]


def train(shape: str, steps: int, batch: int, seed: int) -> tuple[DDPM, object, float]:
    """A DDPM trained with Adam (lr 2e-3, cosine decay) on fresh exact samples."""
    torch.manual_seed(seed)
    data = DATASETS.get(shape)()
    model = DDPM.for_data(data.spec, chain_steps=1000, hidden=(128, 128, 128))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    start = time.process_time()
    for _ in range(steps):
        loss = model.loss(data.batch("train", batch, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, data, time.process_time() - start


def evaluate(model: DDPM, data: object, n_nll: int, n_samples: int, seed: int) -> dict:
    """NLL vs entropy, and MMD / energy distance vs NFE for every sampler."""
    truth = data.truth
    x = data.split("test")[:n_nll]
    model.eval()
    log_p = model.log_prob(x)
    gap = Estimate.from_samples(truth.log_prob(x).detach() - log_p, kind="exact")
    nll = Estimate.from_samples(-log_p, kind="exact")
    entropy = truth.entropy(n=100_000, generator=torch.Generator().manual_seed(seed))
    reference = truth.sample(n_samples, generator=torch.Generator().manual_seed(seed + 1))
    quality = []
    for name, make, step_counts in SAMPLERS:
        for steps in step_counts:
            g = torch.Generator().manual_seed(seed + 2)
            start = time.process_time()
            result = model.run_sampler(n_samples, make(), steps, g)
            elapsed = time.process_time() - start
            quality.append(
                {
                    "sampler": name,
                    "steps": steps,
                    "nfe": result.n_evaluations,
                    "mmd2": mmd(result.samples, reference).item(),
                    "energy_distance": energy_distance(result.samples, reference).item(),
                    "cpu_seconds": elapsed,
                }
            )
            print(
                f"  {name:20s} steps {steps:5d} nfe {result.n_evaluations:5d} "
                f"mmd² {quality[-1]['mmd2']:.5f} energy {quality[-1]['energy_distance']:.5f}"
            )
    baseline = truth.sample(n_samples, generator=torch.Generator().manual_seed(seed + 3))
    return {
        "nll": vars(nll),
        "entropy": vars(entropy),
        "kl_gap": vars(gap),
        "exact_vs_exact": {
            "mmd2": mmd(baseline, reference).item(),
            "energy_distance": energy_distance(baseline, reference).item(),
        },
        "quality": quality,
    }


def digits(steps: int, batch: int, n_test: int, seed: int) -> dict:
    """Bits/dim of a DDPM (U-Net) on the 8×8 digits by the ODE and by the VLB."""
    torch.manual_seed(seed)
    data = DATASETS.get("digits")()
    model = DDPM.for_data(data.spec, chain_steps=1000)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    start = time.process_time()
    for _ in range(steps):
        loss = model.loss(data.batch("train", batch, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    cpu = time.process_time() - start
    x = data.split("test")[:n_test]
    model.eval()
    dim, levels = data.spec.dim, data.spec.levels
    out = {"train_cpu_seconds": cpu, "train_steps": steps}
    for name, method in (("ode", model.likelihood_method), ("vlb", VLBLikelihood(1000))):
        log_p = method(model.denoiser, x, levels, torch.Generator().manual_seed(seed + 1))
        bpd = bits_per_dim(log_p, dim, levels, dequantized=False)
        out[name] = vars(Estimate.from_samples(bpd, kind="bound"))
        print(f"  digits bits/dim by {name}: {out[name]['value']:.3f} ± {out[name]['stderr']:.3f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["8gaussians", "two_moons"])
    parser.add_argument("--train-steps", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--n-nll", type=int, default=1000)
    parser.add_argument("--n-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--digits", action="store_true", help="also the 8x8 digits bits/dim")
    parser.add_argument("--digits-steps", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="short provisional run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/diffusion_toy.json"))
    args = parser.parse_args()
    if args.quick:
        args.train_steps, args.n_nll, args.n_samples = 3000, 300, 1000
        args.digits_steps = 500
    torch.set_default_dtype(torch.float64)
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "shapes": {}}
    for shape in args.shapes:
        print(f"{shape}: training {args.train_steps} steps")
        model, data, cpu = train(shape, args.train_steps, args.batch, args.seed)
        report = evaluate(model, data, args.n_nll, args.n_samples, args.seed)
        report["train_cpu_seconds"] = cpu
        gap = report["kl_gap"]
        print(
            f"  NLL {report['nll']['value']:.4f}  entropy {report['entropy']['value']:.4f}  "
            f"KL gap {gap['value']:.4f} ± {gap['stderr']:.4f} nats"
        )
        results["shapes"][shape] = report
    if args.digits:
        print(f"digits: training {args.digits_steps} steps")
        results["digits"] = digits(args.digits_steps, 128, 100 if args.quick else 360, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
