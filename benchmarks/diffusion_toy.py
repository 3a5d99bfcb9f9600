"""Diffusion on the 2-D toy shapes: ODE NLL next to the true entropy, and quality against NFE.

For each shape, trains a DDPM (linear chain, N = 1000, ε-prediction,
``TimeMLP`` 3 × 128, Adam 2e-3 with cosine decay, batch 512 of fresh exact
samples, float64) and reports

- the probability-flow NLL (exact divergence, rtol = atol = 1e-5) of test
  points, the data's entropy H[p] (from the shape's exact density), and the
  gap KL(p ‖ p_θ) ≈ mean(log p(x) − log p_θ(x)) over the same points, with its
  paired standard error;
- two checks that this NLL is the model's real density: the same NLL at
  rtol = atol = 1e-7 on a subset (the solver error, paired), and
  ∫ p_θ dx by the midpoint rule on a grid of the plane next to ∫ p dx of the
  true density on the same grid (the quadrature error);
- MMD² (fixed multi-scale bandwidths from the exact samples) and energy
  distance between model samples and exact samples, for every sampler at
  several step counts (the quality-vs-NFE curve), each as mean ± standard
  deviation over ``--repeats`` independent sample and reference sets, next
  to the same statistics of two independent exact sets (the noise floor).
  DDIM with 50 evaluations *matches* ancestral sampling with 1000 when
  their mean MMD² differ by less than the standard deviation of the exact-
  vs-exact MMD² (the resolution of one measurement at this sample size).

With ``--digits``, also trains DDPMs on the 8×8 digits (17 levels, the split
of benchmarks/digits.py: rows [:1000] train, [1350:] test; float32) with the
small U-Net (and, with ``--digits-nets unet mlp --digits-steps 2500 20000``,
a ``TimeMLP``) and reports, on the whole test set, bits/dim
by the probability-flow ODE (Hutchinson; uniformly dequantized data, the
library's one convention: log p(y) − D log K, an upper bound on the discrete
NLL, as for the flows) and by the VLB (discretized Gaussian decoder, a bound
on the discrete NLL itself), next to the flows' figures of
benchmarks/results/digits.json.

Targets (issue 5): KL gap below 0.1 nats on 8gaussians and two_moons; DDIM
with 50 steps matching ancestral sampling with 1000 in MMD.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diffusion_toy.py \\
        --shapes 8gaussians two_moons --train-steps 20000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diffusion_toy.py --shapes --digits \\
        --out benchmarks/results/diffusion_digits.json

``--quick`` runs a short provisional version.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from probgen.core import Estimate
from probgen.data.dequantize import bits_per_dim
from probgen.divergences import MMD_SCALES, energy_distance, median_bandwidth, mmd
from probgen.models.diffusion import (
    DDIM,
    DDPM,
    Ancestral,
    DDPMChain,
    Diffusion,
    DiffusionSampler,
    EulerMaruyama,
    HutchinsonDivergence,
    NoisePrediction,
    ODELikelihood,
    PredictorCorrector,
    ProbabilityFlow,
    VLBLikelihood,
)
from probgen.nn.time_embedding import TimeMLP
from probgen.nn.unet import UNet
from probgen.registry import DATASETS

CURVE: list[tuple[str, DiffusionSampler, tuple[int, ...]]] = [
    ("ancestral", Ancestral(), (1000, 250, 100, 50, 20)),
    ("ddim", DDIM(), (100, 50, 20, 10, 5)),
    ("euler_maruyama", EulerMaruyama(), (1000, 250, 50)),
    ("predictor_corrector", PredictorCorrector(), (250, 50)),
    ("probability_flow tol 1e-2", ProbabilityFlow(rtol=1e-2, atol=1e-2), (1,)),
    ("probability_flow tol 1e-3", ProbabilityFlow(rtol=1e-3, atol=1e-3), (1,)),
    ("probability_flow tol 1e-5", ProbabilityFlow(), (1,)),
]
"""(label, sampler, step counts) of the quality-vs-NFE curve."""

SPACING = 0.1
"""Cell side of the grid on which ∫ p_θ dx is checked (the shapes' noise std is ≥ 0.2)."""


def train(model: Diffusion, data: object, steps: int, batch: int, lr: float, seed: int) -> float:
    """Adam with cosine decay of the learning rate on ``model.loss``; returns CPU seconds."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    start = time.process_time()
    for _ in range(steps):
        loss = model.loss(data.batch("train", batch, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return time.process_time() - start


def spread(values: list[float]) -> dict[str, float]:
    """Mean and standard deviation (n − 1) of repeated measurements."""
    v = torch.tensor(values, dtype=torch.float64)
    return {"mean": v.mean().item(), "sd": v.std().item() if len(v) > 1 else 0.0}


def grid_mass(log_density: object, half_width: float, spacing: float) -> float:
    """∫ exp(log_density) over [−w, w]² by the midpoint rule with cells of side ``spacing``."""
    cells = round(2 * half_width / spacing)
    axis = -half_width + spacing * (torch.arange(cells, dtype=torch.float64) + 0.5)
    points = torch.cartesian_prod(axis, axis).to(torch.get_default_dtype())
    total = sum(log_density(chunk).exp().sum().item() for chunk in points.split(4096))
    return total * spacing**2


def likelihood_checks(model: Diffusion, data: object, x: Tensor, log_p: Tensor) -> dict:
    """Solver error of the ODE NLL (paired, tolerances 1e-5 vs 1e-7) and ∫ p_θ on a grid."""
    fine = ODELikelihood(rtol=1e-7, atol=1e-7)
    subset = x[:200]
    start = time.process_time()
    fine_log_p = fine(model.denoiser, subset, None, None)
    solver = Estimate.from_samples(log_p[:200] - fine_log_p, kind="exact")
    fine_cpu = time.process_time() - start
    reference = data.truth.sample(100_000, generator=torch.Generator().manual_seed(7))
    half_width = math.ceil(reference.abs().max().item() + 1.0)
    start = time.process_time()
    model_mass = grid_mass(model.log_prob, half_width, SPACING)
    grid_cpu = time.process_time() - start
    true_mass = grid_mass(lambda p: data.truth.log_prob(p).detach(), half_width, SPACING)
    print(
        f"  log p(tol 1e-5) − log p(tol 1e-7) = {solver.value:.2e} ± {solver.stderr:.1e}; "
        f"∫ p_θ = {model_mass:.4f}, ∫ p = {true_mass:.4f} on [±{half_width}]²"
    )
    return {
        "solver_error_nats": vars(solver),
        "solver_check_cpu_seconds": fine_cpu,
        "grid": {"half_width": half_width, "spacing": SPACING},
        "model_mass": model_mass,
        "true_mass": true_mass,
        "grid_cpu_seconds": grid_cpu,
    }


def quality_curve(model: Diffusion, data: object, n: int, repeats: int, seed: int) -> dict:
    """MMD² and energy distance to exact samples against NFE, mean ± sd over repeats."""
    truth = data.truth
    references = [
        truth.sample(n, generator=torch.Generator().manual_seed(seed + 100 + r))
        for r in range(repeats)
    ]
    exact = [
        truth.sample(n, generator=torch.Generator().manual_seed(seed + 200 + r))
        for r in range(repeats)
    ]
    h = median_bandwidth(references[0], exact[0]).item()
    bandwidths = [h * scale for scale in MMD_SCALES]

    def scores(samples: list[Tensor]) -> dict:
        mmds = [mmd(s, ref, bandwidths).item() for s, ref in zip(samples, references, strict=True)]
        eds = [energy_distance(s, ref).item() for s, ref in zip(samples, references, strict=True)]
        return {"mmd2": spread(mmds), "energy_distance": spread(eds), "mmd2_each": mmds}

    curve = []
    for label, sampler, step_counts in CURVE:
        for steps in step_counts:
            samples, nfe, cpu = [], [], 0.0
            for r in range(repeats):
                g = torch.Generator().manual_seed(seed + 300 + r)
                start = time.process_time()
                result = model.run_sampler(n, sampler, steps, g)
                cpu += time.process_time() - start
                samples.append(result.samples)
                nfe.append(float(result.n_evaluations))
            entry = {"sampler": label, "steps": steps, "nfe": spread(nfe)["mean"]}
            entry.update(scores(samples))
            entry["cpu_seconds_per_run"] = cpu / repeats
            curve.append(entry)
            print(
                f"  {label:26s} steps {steps:5d} nfe {entry['nfe']:6.0f}  "
                f"mmd² {entry['mmd2']['mean']:+.5f} ± {entry['mmd2']['sd']:.5f}  "
                f"energy {entry['energy_distance']['mean']:+.5f} ± "
                f"{entry['energy_distance']['sd']:.5f}"
            )
    floor = scores(exact)
    print(
        f"  {'exact vs exact':26s}                   mmd² {floor['mmd2']['mean']:+.5f} ± "
        f"{floor['mmd2']['sd']:.5f}"
    )

    def pick(label: str, steps: int) -> dict:
        return next(e for e in curve if e["sampler"] == label and e["steps"] == steps)

    ancestral, ddim = pick("ancestral", 1000), pick("ddim", 50)
    paired = [a - b for a, b in zip(ddim["mmd2_each"], ancestral["mmd2_each"], strict=True)]
    difference = spread(paired)
    matches = abs(ddim["mmd2"]["mean"] - ancestral["mmd2"]["mean"]) < floor["mmd2"]["sd"]
    print(
        f"  DDIM-50 − ancestral-1000 MMD² = {difference['mean']:+.5f} "
        f"(sd {difference['sd']:.5f}, paired); exact-vs-exact sd {floor['mmd2']['sd']:.5f}: "
        f"{'matches' if matches else 'does not match'}"
    )
    return {
        "n_samples": n,
        "repeats": repeats,
        "bandwidths": bandwidths,
        "curve": curve,
        "exact_vs_exact": floor,
        "ddim50_vs_ancestral1000": {"paired_difference": difference, "matches": matches},
    }


def toy(shape: str, args: argparse.Namespace) -> dict:
    """Train on ``shape`` and evaluate NLL, its checks and the quality curve."""
    torch.manual_seed(args.seed)
    data = DATASETS.get(shape)()
    model = DDPM.for_data(data.spec, chain_steps=1000, hidden=(128, 128, 128))
    cpu = train(model, data, args.train_steps, args.batch, 2e-3, args.seed)
    model.eval()
    x = data.split("test")[: args.n_nll]
    start = time.process_time()
    log_p = model.log_prob(x)
    nll_cpu = time.process_time() - start
    gap = Estimate.from_samples(data.truth.log_prob(x).detach() - log_p, kind="exact")
    nll = Estimate.from_samples(-log_p, kind="exact")
    entropy = data.truth.entropy(n=100_000, generator=torch.Generator().manual_seed(args.seed))
    print(
        f"  NLL {nll.value:.4f}  entropy {entropy.value:.4f}  "
        f"KL gap {gap.value:.4f} ± {gap.stderr:.4f} nats ({len(x)} test points)"
    )
    report = {
        "train_steps": args.train_steps,
        "train_cpu_seconds": cpu,
        "n_nll": len(x),
        "nll": vars(nll),
        "nll_cpu_seconds": nll_cpu,
        "entropy": vars(entropy),
        "kl_gap": vars(gap),
    }
    report["checks"] = likelihood_checks(model, data, x, log_p)
    report["quality"] = quality_curve(model, data, args.n_samples, args.repeats, args.seed)
    return report


def digits_network(name: str) -> torch.nn.Module:
    """The small U-Net (the library's default for images) or a 3 × 512 ``TimeMLP``."""
    return UNet(1) if name == "unet" else TimeMLP(64, (512, 512, 512))


def digits(name: str, steps: int, n_test: int, seed: int) -> dict:
    """Bits/dim of a DDPM on the 8×8 digits by the ODE and by the VLB (float32)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(seed)
        data = DATASETS.get("digits")()
        net = digits_network(name)
        model = Diffusion(
            data.spec.event_shape,
            NoisePrediction(net, DDPMChain.linear(1000)),
            likelihood_method=ODELikelihood(HutchinsonDivergence()),
            levels=data.spec.levels,
        )
        cpu = train(model, data, steps, 128, 1e-3, seed)
        model.eval()
        x = data.split("test")[:n_test]
        dim, levels = data.spec.dim, data.spec.levels
        out = {"network": name, "train_steps": steps, "train_cpu_seconds": cpu, "n_test": len(x)}
        methods = (("ode_hutchinson", model.likelihood_method), ("vlb_1000", VLBLikelihood(1000)))
        for label, method in methods:
            start = time.process_time()
            log_p = method(model.denoiser, x, levels, torch.Generator().manual_seed(seed + 1))
            nll = Estimate.from_samples(-log_p.double(), kind="bound")
            bpd = bits_per_dim(log_p.double(), dim, levels, dequantized=False)
            out[label] = {
                "nll_nats": vars(nll),
                "bpd": vars(Estimate.from_samples(bpd, kind="bound")),
                "cpu_seconds": time.process_time() - start,
            }
            print(
                f"  digits {name} {label}: {nll.value:.1f} ± {nll.stderr:.1f} nats/image, "
                f"{out[label]['bpd']['value']:.3f} ± {out[label]['bpd']['stderr']:.3f} bits/dim"
            )
        return out
    finally:
        torch.set_default_dtype(previous)


def flows_reference(path: Path) -> list[dict]:
    """The flows' dequantized figures of benchmarks/digits.py, if its results exist."""
    if not path.exists():
        return []
    runs = json.loads(path.read_text())["runs"]
    return [
        {"model": run["model"], "train_cpu_seconds": run["train_cpu_seconds"], **figure}
        for run in runs
        for figure in run["figures"]
        if run["model"] in ("realnvp", "maf", "nsf")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["8gaussians", "two_moons"])
    parser.add_argument("--train-steps", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--n-nll", type=int, default=1000)
    parser.add_argument("--n-samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--digits", action="store_true", help="also the 8x8 digits bits/dim")
    parser.add_argument("--digits-nets", nargs="+", default=["unet"], help="unet and/or mlp")
    parser.add_argument("--digits-steps", type=int, nargs="+", default=[2500])
    parser.add_argument("--quick", action="store_true", help="short provisional run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/diffusion_toy.json"))
    args = parser.parse_args()
    if args.quick:
        args.train_steps, args.n_nll, args.n_samples, args.repeats = 3000, 300, 1000, 2
        args.digits_steps = [200] * len(args.digits_nets)
    torch.set_default_dtype(torch.float64)
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "shapes": {}}
    for shape in args.shapes:
        print(f"{shape}: training {args.train_steps} steps")
        results["shapes"][shape] = toy(shape, args)
    if args.digits:
        results["digits"] = []
        for name, steps in zip(args.digits_nets, args.digits_steps, strict=True):
            print(f"digits ({name}): training {steps} steps")
            n_test = 100 if args.quick else 447
            results["digits"].append(digits(name, steps, n_test, args.seed))
        results["flows_reference"] = flows_reference(Path("benchmarks/results/digits.json"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
