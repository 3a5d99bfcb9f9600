"""Scheduler overhead per reverse step: probgen's samplers next to diffusers' DDPM/DDIM schedulers.

Times one reverse step of the scheduler arithmetic alone (the network is a
constant: ε̂ = 0 for probgen, a fixed tensor for diffusers) on a batch of
images (B, 3, 32, 32) and of 2-D points (B, 2), next to one forward pass of
probgen's small U-Net / TimeMLP on the same batch, so the overhead is read
against the network's cost. diffusers runs in its own environment (never
installed into .venv); this script re-runs itself there with ``--only diffusers``.
With ``--before REV`` it also times probgen's samplers as of git revision REV
(``git archive`` of ``probgen/`` into a temporary folder, imported by a
subprocess), so the figures before and after a change come from one run.

    python3 -m venv /work/peers-diffusers
    /work/peers-diffusers/bin/pip install torch==2.13.0
    /work/peers-diffusers/bin/pip install diffusers
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diffusion_schedulers.py \
        --peer-python /work/peers-diffusers/bin/python --before 8c9ae91

Reference: von Platen et al. (2022), "Diffusers: state-of-the-art diffusion models".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

SHAPES = {"images": (16, 3, 32, 32), "points": (1000, 2)}


def per_call(repeats: int, fn: Callable[..., object], *args: object) -> float:
    """Median wall time of ``fn(*args)`` in µs over ``repeats`` calls, after a warm-up."""
    for _ in range(5):
        fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    times.sort()
    return 1e6 * times[len(times) // 2]


def time_diffusers(repeats: int) -> dict[str, float]:
    """diffusers' DDPMScheduler.step and DDIMScheduler.step (50 inference steps)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    out: dict[str, float] = {}
    for label, shape in SHAPES.items():
        x = torch.randn(shape)
        eps = torch.zeros(shape)
        ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
        ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
        ddim.set_timesteps(50)
        t_ddim = int(ddim.timesteps[25])
        out[f"diffusers_ddpm_{label}"] = per_call(repeats, ddpm.step, eps, 500, x)
        out[f"diffusers_ddim_{label}"] = per_call(repeats, ddim.step, eps, t_ddim, x)
    return out


def time_probgen(repeats: int) -> dict[str, float]:
    """probgen's Ancestral and DDIM steps on the linear DDPM chain, and the networks."""
    from torch import nn

    from probgen.models.diffusion import DDIM, Ancestral, DDPMChain, NoisePrediction
    from probgen.nn.time_embedding import TimeMLP
    from probgen.nn.unet import UNet

    class Zero(nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    denoiser = NoisePrediction(Zero(), DDPMChain.linear(1000))
    t, s, s_ddim = torch.tensor(0.5), torch.tensor(0.499), torch.tensor(0.48)
    out: dict[str, float] = {}
    nets = {"images": UNet(3), "points": TimeMLP(2)}
    for label, shape in SHAPES.items():
        x = torch.randn(shape)
        out[f"probgen_ancestral_{label}"] = per_call(repeats, Ancestral().step, denoiser, x, t, s)
        out[f"probgen_ddim_{label}"] = per_call(repeats, DDIM().step, denoiser, x, t, s_ddim)
        with torch.no_grad():
            times = torch.full((shape[0],), 0.5)
            out[f"network_forward_{label}"] = per_call(
                max(20, repeats // 10), nets[label], x, times
            )
    return out


def run_json(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """The JSON dict printed on the last line of ``command``'s output."""
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_probgen_at(revision: str, repeats: int) -> dict[str, float]:
    """``time_probgen`` on probgen as of git ``revision``, keys prefixed ``before_``."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", revision, "probgen"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        env = {**os.environ, "PYTHONPATH": folder}
        command = [sys.executable, __file__, "--only", "probgen", "--repeats", str(repeats)]
        timed = run_json(command, env)
    return {f"before_{name}": micros for name, micros in timed.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["diffusers", "probgen"], default=None)
    parser.add_argument("--peer-python", default="/work/peers-diffusers/bin/python")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--before", default=None, help="also time probgen at this git revision")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/diffusion_schedulers.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only is not None:
        timer = time_diffusers if args.only == "diffusers" else time_probgen
        print(json.dumps(timer(args.repeats)))
        return
    results = time_probgen(args.repeats)
    if args.before is not None:
        results.update(time_probgen_at(args.before, args.repeats))
    peer = [args.peer_python, __file__, "--only", "diffusers", "--repeats", str(args.repeats)]
    results.update(run_json(peer))
    for name, micros in sorted(results.items()):
        print(f"{name:32s} {micros:10.1f} µs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"python": sys.version, "microseconds": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
