"""The peer side of ``benchmarks/sbi.py``, run in the peers' own environments (no probgen).

Two commands, each in the environment of the package it uses:

``reference`` (sbibm's environment): the ten observations x_o (10, X) and sbibm's
reference posterior samples (10, 10 000, P) of a task, and simulated training pairs
(θ, x) for each budget and seed from sbibm's prior and simulator, written as .npy /
.npz files (the pairs as ``x`` = θ, ``c`` = x, the keys of probgen's ``arrays`` data).

``npe`` (sbi's environment): sbi's neural posterior estimation on one file of pairs
with sbi's defaults (``NPE(prior)``: its default density estimator, z-scored θ and x;
``train()``: batch 200, Adam 5e-4, 10 % validation, stop after 20 epochs without a
better validation loss, gradient norm clipped at 5), then ``--samples`` draws from
p(θ | x_o) for each observation (``(10, S, P)`` .npy). Prints one JSON line: training
wall and CPU seconds (``time.process_time``), epochs, the density estimator, versions.

    /work/venvs/sbibm/bin/python benchmarks/sbi_peer.py reference --task two_moons \\
        --budgets 1000 10000 --seeds 0 --out /tmp/sbi-data
    /work/venvs/sbi/bin/python benchmarks/sbi_peer.py npe --task two_moons \\
        --pairs /tmp/sbi-data/two_moons/pairs_1000_0.npz \\
        --observations /tmp/sbi-data/two_moons/observations.npy --out /tmp/samples.npy

Reference: Lueckmann, Boelts, Greenberg, Gonçalves & Macke (2021), "Benchmarking
simulation-based inference" (sbibm); Tejero-Cantero et al. (2020), "sbi: A toolkit for
simulation-based inference"; Greenberg, Nonnenmacher & Macke (2019), "Automatic
posterior transformation for likelihood-free inference" (NPE).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

# benchmarks/sbi.py, beside this script, would shadow the sbi package
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

OBSERVATIONS = range(1, 11)


def _save(path: Path, write) -> None:
    """Write through a temporary file and rename it into place (atomic)."""
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    write(tmp)
    os.replace(tmp, path)


def reference(args: argparse.Namespace) -> None:
    """Observations, reference posterior samples and training pairs of ``args.task`` by sbibm."""
    import sbibm

    task = sbibm.get_task(args.task)
    out = Path(args.out) / args.task
    out.mkdir(parents=True, exist_ok=True)
    obs = torch.cat([task.get_observation(num_observation=i) for i in OBSERVATIONS])
    ref = torch.stack(
        [task.get_reference_posterior_samples(num_observation=i) for i in OBSERVATIONS]
    )
    _save(out / "observations.npy", lambda p: np.save(p, obs.double().numpy()))
    _save(out / "reference.npy", lambda p: np.save(p, ref.double().numpy()))
    prior, simulator = task.get_prior(), task.get_simulator()
    for seed in args.seeds:
        for n in args.budgets:
            torch.manual_seed(1000 * seed + n)
            theta = prior(num_samples=n)
            x = simulator(theta)
            path = out / f"pairs_{n}_{seed}.npz"
            arrays = {"x": theta.double().numpy(), "c": x.double().numpy()}
            _save(path, lambda p, a=arrays: np.savez(p, **a))
    print(json.dumps({"task": args.task, "sbibm": sbibm.__version__, "out": str(out)}))


def _prior(task: str, dim: int):
    """sbibm's prior of ``task`` as a torch distribution (sbi's ``NPE`` needs one)."""
    if task == "gaussian_linear":
        return torch.distributions.MultivariateNormal(torch.zeros(dim), 0.1 * torch.eye(dim))
    if task == "two_moons":
        from sbi.utils import BoxUniform

        return BoxUniform(-torch.ones(dim), torch.ones(dim))
    raise SystemExit(f"unknown task {task!r}")


def npe(args: argparse.Namespace) -> None:
    """sbi's NPE with its defaults on the pairs of ``args.pairs``; posterior samples per x_o."""
    import sbi
    from sbi.inference import NPE

    torch.manual_seed(args.seed)
    pairs = np.load(args.pairs)
    theta = torch.from_numpy(pairs["x"]).float()
    x = torch.from_numpy(pairs["c"]).float()
    obs = torch.from_numpy(np.load(args.observations)).float()
    inference = NPE(prior=_prior(args.task, theta.shape[1]))
    inference.append_simulations(theta, x)
    wall, cpu = time.perf_counter(), time.process_time()
    estimator = inference.train()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    posterior = inference.build_posterior(estimator)
    sample_cpu = time.process_time()
    samples = torch.stack(
        [posterior.sample((args.samples,), x=o[None], show_progress_bars=False) for o in obs]
    )
    sample_cpu = time.process_time() - sample_cpu
    _save(Path(args.out), lambda p: np.save(p, samples.double().numpy()))
    summary = inference.summary
    print()  # sbi's progress line ends without a newline
    print(
        json.dumps(
            {
                "train_wall_seconds": wall,
                "train_cpu_seconds": cpu,
                "sample_cpu_seconds": sample_cpu,
                "epochs": int(inference.epoch),
                "best_validation_loss": float(-summary["best_validation_log_prob"][-1])
                if "best_validation_log_prob" in summary
                else float(summary["best_validation_loss"][-1]),
                "density_estimator": type(estimator).__name__,
                "parameters": sum(p.numel() for p in estimator.parameters()),
                "sbi": sbi.__version__,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ref = commands.add_parser("reference")
    ref.add_argument("--task", required=True)
    ref.add_argument("--budgets", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ref.add_argument("--seeds", type=int, nargs="+", default=[0])
    ref.add_argument("--out", required=True)
    run = commands.add_parser("npe")
    run.add_argument("--task", required=True)
    run.add_argument("--pairs", required=True)
    run.add_argument("--observations", required=True)
    run.add_argument("--samples", type=int, default=10_000)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"reference": reference, "npe": npe}[args.command](args)


if __name__ == "__main__":
    main()
