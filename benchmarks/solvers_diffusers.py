"""probgen's DPM-Solver++ next to diffusers' ``DPMSolverMultistepScheduler`` on one denoiser.

Trains a DDPM on 8gaussians in probgen (linear chain N = 1000, ε-prediction,
``TimeMLP`` 3 × 128, float32, ``--budget`` CPU seconds), saves the network's
weights (safetensors) and ``--n`` prior draws x_T, then runs in one session,
alternating A B A B:

- diffusers (in its own environment, ``--peer-python``; this script re-runs
  itself there with ``--only diffusers``): ``DPMSolverMultistepScheduler``
  with its defaults (``dpmsolver++``, ``midpoint``, ``lower_order_final``,
  ``final_sigmas_type="zero"``, ``timestep_spacing="linspace"``) and the
  chain's betas, its ``set_timesteps(K)`` then ``step`` loop, the same
  network called at timestep τ with t = (τ + 1)/N (probgen's time of chain
  step τ + 1; diffusers' ``alphas_cumprod[τ]`` is ᾱ_{τ+1});
- probgen: ``DPMSolver2M`` / ``DPMSolver3M`` ``solve`` on the same times
  ((τ_i + 1)/N, then 0).

Reported: max |x_probgen − x_diffusers| over the samples for K ∈ {5, 10, 20}
and orders 2 and 3; CPU time (``time.process_time``, one thread) and wall time
per step (medians over ``--repeats`` full runs in each process), with the
network and with a constant "network" (the solver's own arithmetic); the
ratio per A/B pair and its median (CPU time is the figure that does not
depend on the share of a core a process got on a busy machine).

    python3 -m venv /work/venvs/diffusers
    /work/venvs/diffusers/bin/pip install torch==2.13.0
    /work/venvs/diffusers/bin/pip install diffusers
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. .venv/bin/python \\
        benchmarks/solvers_diffusers.py --peer-python /work/venvs/diffusers/bin/python

Reference: Lu et al. (2022), "DPM-Solver++"; von Platen et al. (2022), "Diffusers".
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
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from probgen.nn.time_embedding import TimeMLP
from probgen.train.config import atomic_write_text

HIDDEN = (128, 128, 128)
CHAIN = 1000
STEPS = (5, 10, 20)
ORDERS = (2, 3)


class Constant(nn.Module):
    """A stand-in network returning a fixed ε̂ (the solver's own cost, without the network)."""

    def __init__(self, value: Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.value


def load_network(folder: Path) -> TimeMLP:
    net = TimeMLP(2, HIDDEN)
    net.load_state_dict(load_file(folder / "net.safetensors"))
    return net.eval()


def timed(run: Callable[[], Tensor], repeats: int, steps: int) -> tuple[Tensor, float, float]:
    """(the output of ``run``, median wall and median CPU seconds per step over ``repeats`` runs).

    CPU seconds (``time.process_time``, one thread) are the comparable figure on a shared
    machine, where a process's wall time depends on how much of a core it was given.
    """
    out = run()  # warm-up, and the samples compared
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append((time.perf_counter() - start) / steps)
        cpu.append((time.process_time() - start_cpu) / steps)
    return out, statistics.median(wall), statistics.median(cpu)


def diffusers_side(folder: Path, repeats: int) -> dict:
    """diffusers' scheduler loop on the saved network and prior draws."""
    from diffusers import DPMSolverMultistepScheduler

    torch.set_num_threads(1)
    net = load_network(folder)
    x_T = load_file(folder / "prior.safetensors")["x"]
    constant = Constant(torch.full_like(x_T, 0.1))
    out: dict = {"timesteps": {}, "seconds_per_step": {}, "overhead_per_step": {}}
    out.update({"cpu_seconds_per_step": {}, "cpu_overhead_per_step": {}})
    samples = {}
    for order in ORDERS:
        for steps in STEPS:
            scheduler = DPMSolverMultistepScheduler(
                num_train_timesteps=CHAIN,
                beta_start=1e-4,
                beta_end=0.02,
                beta_schedule="linear",
                solver_order=order,
            )

            def run(model: nn.Module = net, scheduler=scheduler, steps: int = steps) -> Tensor:
                scheduler.set_timesteps(steps)
                x = x_T.clone()
                with torch.no_grad():
                    for tau in scheduler.timesteps:
                        t = torch.full((len(x),), (int(tau) + 1) / CHAIN)
                        x = scheduler.step(model(x, t), tau, x).prev_sample
                return x

            key = f"{order}m_{steps}"
            samples[key], out["seconds_per_step"][key], out["cpu_seconds_per_step"][key] = timed(
                run, repeats, steps
            )
            _, out["overhead_per_step"][key], out["cpu_overhead_per_step"][key] = timed(
                lambda r=run: r(constant), repeats, steps
            )
            out["timesteps"][key] = [int(tau) for tau in scheduler.timesteps]
    save_file(samples, str(folder / "diffusers_samples.safetensors"))
    import diffusers

    out["version"] = diffusers.__version__
    return out


def probgen_side(folder: Path, repeats: int, timesteps: dict[str, list[int]]) -> dict:
    """probgen's DPM-Solver++ on the same network, prior draws and times."""
    from probgen.models.diffusion import DDPMChain, DPMSolver2M, DPMSolver3M, NoisePrediction

    torch.set_num_threads(1)
    process = DDPMChain.linear(CHAIN)
    net = load_network(folder)
    x_T = load_file(folder / "prior.safetensors")["x"]
    denoisers = {
        "net": NoisePrediction(net, process),
        "constant": NoisePrediction(Constant(torch.full_like(x_T, 0.1)), process),
    }
    solvers = {2: DPMSolver2M(), 3: DPMSolver3M()}
    out: dict = {"seconds_per_step": {}, "overhead_per_step": {}}
    out.update({"cpu_seconds_per_step": {}, "cpu_overhead_per_step": {}})
    samples = {}
    for order in ORDERS:
        for steps in STEPS:
            key = f"{order}m_{steps}"
            times = torch.tensor([(tau + 1) / CHAIN for tau in timesteps[key]] + [0.0])

            def run(which: str = "net", times: Tensor = times, order: int = order) -> Tensor:
                with torch.no_grad():
                    return solvers[order].solve(denoisers[which], x_T, times).samples

            samples[key], out["seconds_per_step"][key], out["cpu_seconds_per_step"][key] = timed(
                run, repeats, steps
            )
            _, out["overhead_per_step"][key], out["cpu_overhead_per_step"][key] = timed(
                lambda r=run: r("constant"), repeats, steps
            )
    save_file(samples, str(folder / "probgen_samples.safetensors"))
    return out


def third_order_with_halved_second_difference(
    folder: Path, timesteps: dict[str, list[int]]
) -> dict[str, Tensor]:
    """probgen's 3M with the weight of the second divided difference halved (φ_2 dd, not 2 φ_2 dd).

    A diagnostic, not a solver: diffusers 0.42.1 weights its D2 = h² dd by
    φ_2 / h² (``multistep_dpm_solver_third_order_update``), i.e. the Taylor term
    φ_2 x̂_0'' with x̂_0'' read as dd instead of 2 dd. If these samples equal
    diffusers' to rounding, that one weight is the whole difference.
    """
    import math

    from probgen.models.diffusion import DDPMChain, DPMSolver3M, NoisePrediction, solvers

    exact = solvers._multistep_weights

    def halved(h: float, gaps: list[float]) -> list[float]:
        if len(gaps) == 1:
            return exact(h, gaps)
        h0, h1 = gaps
        phi1 = h + math.expm1(-h)
        phi2 = 0.5 * h * h - phi1
        c_dd = (phi1 * h0 + phi2) / (h0 + h1)
        c_01 = phi1 + c_dd
        return [-math.expm1(-h) + c_01 / h0, -c_01 / h0 - c_dd / h1, c_dd / h1]

    denoiser = NoisePrediction(load_network(folder), DDPMChain.linear(CHAIN))
    x_T = load_file(folder / "prior.safetensors")["x"]
    out = {}
    solvers._multistep_weights = halved
    try:
        for steps in STEPS:
            key = f"3m_{steps}"
            times = torch.tensor([(tau + 1) / CHAIN for tau in timesteps[key]] + [0.0])
            with torch.no_grad():
                out[key] = DPMSolver3M().solve(denoiser, x_T, times).samples
    finally:
        solvers._multistep_weights = exact
    return out


def prepare(folder: Path, args: argparse.Namespace) -> dict:
    """Train the DDPM in probgen and save its network and the prior draws."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from solvers_nfe import train

    from probgen.models.diffusion import DDPM
    from probgen.registry import DATASETS

    torch.manual_seed(args.seed)
    data = DATASETS.get("8gaussians")()
    model = DDPM.for_data(data.spec, chain_steps=CHAIN, hidden=HIDDEN)
    fit = train(model, data, args.budget, 512, 2e-3, args.seed)
    save_file(dict(model.denoiser.net.state_dict()), str(folder / "net.safetensors"))
    x_T = torch.randn(args.n, 2, generator=torch.Generator().manual_seed(args.seed + 1))
    save_file({"x": x_T}, str(folder / "prior.safetensors"))
    return fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["diffusers", "probgen"], default=None)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--peer-python", default="/work/venvs/diffusers/bin/python")
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/solvers_diffusers.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only == "diffusers":
        print(json.dumps(diffusers_side(args.dir, args.repeats)))
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        fit = prepare(folder, args)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        peer = [args.peer_python, __file__, "--only", "diffusers", "--dir", name]
        peer += ["--repeats", str(args.repeats)]
        pairs = []
        for _ in range(args.pairs):  # A B A B: diffusers, then probgen on its times
            done = subprocess.run(peer, capture_output=True, text=True, check=True, env=env)
            theirs = json.loads(done.stdout.strip().splitlines()[-1])
            ours = probgen_side(folder, args.repeats, theirs["timesteps"])
            pairs.append({"diffusers": theirs, "probgen": ours})
        a = load_file(folder / "probgen_samples.safetensors")
        b = load_file(folder / "diffusers_samples.safetensors")
        halved = third_order_with_halved_second_difference(folder, theirs["timesteps"])
    keys = [f"{order}m_{steps}" for order in ORDERS for steps in STEPS]
    table = []
    for key in keys:
        ratio = [
            p["probgen"]["seconds_per_step"][key] / p["diffusers"]["seconds_per_step"][key]
            for p in pairs
        ]
        over = [
            p["probgen"]["overhead_per_step"][key] / p["diffusers"]["overhead_per_step"][key]
            for p in pairs
        ]
        cpu = [
            p["probgen"]["cpu_seconds_per_step"][key] / p["diffusers"]["cpu_seconds_per_step"][key]
            for p in pairs
        ]
        cpu_over = [
            p["probgen"]["cpu_overhead_per_step"][key]
            / p["diffusers"]["cpu_overhead_per_step"][key]
            for p in pairs
        ]
        row = {
            "solver": key,
            "probgen_cpu_ms_per_step": [
                1e3 * p["probgen"]["cpu_seconds_per_step"][key] for p in pairs
            ],
            "diffusers_cpu_ms_per_step": [
                1e3 * p["diffusers"]["cpu_seconds_per_step"][key] for p in pairs
            ],
            "cpu_ratio_per_pair": cpu,
            "cpu_ratio_median": statistics.median(cpu),
            "probgen_cpu_overhead_us_per_step": [
                1e6 * p["probgen"]["cpu_overhead_per_step"][key] for p in pairs
            ],
            "diffusers_cpu_overhead_us_per_step": [
                1e6 * p["diffusers"]["cpu_overhead_per_step"][key] for p in pairs
            ],
            "cpu_overhead_ratio_median": statistics.median(cpu_over),
            "max_abs_difference": (a[key] - b[key]).abs().max().item(),
            "sample_scale": b[key].abs().max().item(),
            "probgen_ms_per_step": [1e3 * p["probgen"]["seconds_per_step"][key] for p in pairs],
            "diffusers_ms_per_step": [1e3 * p["diffusers"]["seconds_per_step"][key] for p in pairs],
            "ratio_per_pair": ratio,
            "ratio_median": statistics.median(ratio),
            "probgen_overhead_us_per_step": [
                1e6 * p["probgen"]["overhead_per_step"][key] for p in pairs
            ],
            "diffusers_overhead_us_per_step": [
                1e6 * p["diffusers"]["overhead_per_step"][key] for p in pairs
            ],
            "overhead_ratio_median": statistics.median(over),
        }
        if key in halved:
            row["max_abs_difference_halved_phi2"] = (halved[key] - b[key]).abs().max().item()
        table.append(row)
    for r in table:
        if "max_abs_difference_halved_phi2" in r:
            print(
                f"{r['solver']}: probgen 3M with diffusers' φ_2 weight vs diffusers: "
                f"max |Δx| = {r['max_abs_difference_halved_phi2']:.2e}"
            )
    print(
        f"\n{'solver, K':10s} {'max |Δx|':>10s} | CPU ms/step: {'ours':>6s} {'theirs':>6s} "
        f"{'ratio':>5s} | no network, CPU µs/step: {'ours':>6s} {'theirs':>7s} {'ratio':>5s} "
        f"| wall ratio"
    )
    for r in table:
        print(
            f"{r['solver']:10s} {r['max_abs_difference']:10.2e} | "
            f"{statistics.median(r['probgen_cpu_ms_per_step']):18.3f} "
            f"{statistics.median(r['diffusers_cpu_ms_per_step']):6.3f} "
            f"{r['cpu_ratio_median']:5.2f} | "
            f"{statistics.median(r['probgen_cpu_overhead_us_per_step']):30.1f} "
            f"{statistics.median(r['diffusers_cpu_overhead_us_per_step']):7.1f} "
            f"{r['cpu_overhead_ratio_median']:5.2f} | {r['ratio_median']:.2f}"
        )
    report = {
        "recipe": {
            "data": "8gaussians",
            "model": "DDPM, linear chain N=1000, eps-prediction, TimeMLP 3x128, float32",
            "training": {"budget_cpu_seconds": args.budget, **fit},
            "n_samples": args.n,
            "repeats": args.repeats,
            "pairs": args.pairs,
            "threads": 1,
        },
        "table": table,
        "diffusers_version": pairs[0]["diffusers"]["version"],
        "diffusers_timesteps": pairs[0]["diffusers"]["timesteps"],
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "timestamp": datetime.now(timezone.utc).isoformat(),
    }
    atomic_write_text(args.out, json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
