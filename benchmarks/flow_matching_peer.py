"""The peer side of ``benchmarks/flow_matching_peers.py``: train a velocity network with
TorchCFM or Meta's flow_matching, in that library's own environment.

Only the network class comes from probgen (``probgen.nn.time_embedding.TimeMLP``, a
plain ``nn.Module``; PYTHONPATH points at the repository), so every side trains the
same architecture; the loss, the path and the coupling are the peer's:

- ``torchcfm``: ``ConditionalFlowMatcher(sigma=0)`` (independent coupling) or
  ``ExactOptimalTransportConditionalFlowMatcher(sigma=0)`` (minibatch OT by POT's
  exact solver), ``sample_location_and_conditional_flow(x0, x1)``, loss
  mean((v − u_t)²), as in TorchCFM's 2-D examples;
- ``flow_matching``: ``AffineProbPath(CondOTScheduler())``, t ~ U(0, 1),
  ``path.sample(x_0, x_1, t)``, loss mean((v − dx_t)²), as in its 2-D example.

Both put the noise at t = 0 and the data at t = 1. The data file (written by the
probgen side) holds a pool of training points and the standardisation (μ, s); the
network learns z = (x − μ)/s, standardised once at load, as a peer's user would.
Training: Adam (``torch.optim.Adam``, lr 2e-3, cosine decay in the CPU time spent)
on batches of ``--batch`` points drawn with replacement from the pool, until
``--budget`` CPU-seconds (``time.process_time``, one thread). Then the weights are
saved (safetensors, tensors only) with the peer's own ODE samples from the file's
noise (t = 0 → 1, dopri5 at rtol = atol = 1e-6: torchdiffeq for TorchCFM, as its
examples do, and flow_matching's ``ODESolver``) and, for flow_matching, its own
ODE log-likelihood (``compute_likelihood``, exact divergence) of the file's check
points, for the conversion check. Prints one JSON line.

    PYTHONPATH=. /work/venvs/torchcfm/bin/python benchmarks/flow_matching_peer.py \\
        --library torchcfm --coupling ot --data /tmp/fm/8gaussians.safetensors --seed 0 \\
        --out /tmp/fm/torchcfm_ot.safetensors
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from probgen.nn.time_embedding import TimeMLP

LR = 2e-3
ODE_TOL = 1e-6


def torchcfm_loss(coupling: str) -> Callable[[nn.Module, Tensor], Tensor]:
    """TorchCFM's conditional flow matching loss on a data batch x1 (B, D)."""
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )

    matcher = {
        "independent": ConditionalFlowMatcher,
        "ot": ExactOptimalTransportConditionalFlowMatcher,
    }[coupling](sigma=0.0)

    def loss(net: nn.Module, x1: Tensor) -> Tensor:
        x0 = torch.randn_like(x1)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        return torch.mean((net(xt, t) - ut) ** 2)

    return loss


def flow_matching_loss(coupling: str) -> Callable[[nn.Module, Tensor], Tensor]:
    """Meta flow_matching's loss on the affine path with the CondOT scheduler."""
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler

    if coupling != "independent":
        raise SystemExit("flow_matching has no minibatch OT coupling")
    path = AffineProbPath(scheduler=CondOTScheduler())

    def loss(net: nn.Module, x1: Tensor) -> Tensor:
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0])
        sample = path.sample(x_0=x0, x_1=x1, t=t)
        return torch.pow(net(sample.x_t, sample.t) - sample.dx_t, 2).mean()

    return loss


def _model_wrapper(net: nn.Module) -> nn.Module:
    """``net`` as flow_matching's ``ModelWrapper`` (its solvers pass one 0-dim time)."""
    from flow_matching.utils import ModelWrapper

    class Wrapped(ModelWrapper):
        def forward(self, x: Tensor, t: Tensor, **extras: object) -> Tensor:
            return self.model(x, t.expand(x.shape[0]))

    return Wrapped(net)


def torchcfm_samples(net: nn.Module, noise: Tensor) -> Tensor:
    """x_1 from x_0 = noise along dx/dt = net(x, t), t = 0 → 1 (torchdiffeq's dopri5)."""
    from torchdiffeq import odeint

    def velocity(t: Tensor, x: Tensor) -> Tensor:
        return net(x, t.expand(x.shape[0]))

    times = torch.tensor([0.0, 1.0])
    return odeint(velocity, noise, times, rtol=ODE_TOL, atol=ODE_TOL, method="dopri5")[-1]


def flow_matching_samples(net: nn.Module, noise: Tensor) -> Tensor:
    """x_1 from x_0 = noise by flow_matching's ``ODESolver`` (dopri5)."""
    from flow_matching.solver import ODESolver

    solver = ODESolver(velocity_model=_model_wrapper(net))
    return solver.sample(x_init=noise, step_size=None, method="dopri5", atol=ODE_TOL, rtol=ODE_TOL)


def flow_matching_log_likelihood(net: nn.Module, x: Tensor) -> Tensor:
    """log p(x) (B,) by flow_matching's own ``ODESolver.compute_likelihood`` (exact
    divergence, dopri5, t = 1 → 0, source N(0, I))."""
    from flow_matching.solver import ODESolver

    def log_p0(x0: Tensor) -> Tensor:
        return -0.5 * (x0.square().sum(1) + x0.shape[1] * math.log(2 * math.pi))

    solver = ODESolver(velocity_model=_model_wrapper(net))
    _, log_p = solver.compute_likelihood(
        x_1=x,
        log_p0=log_p0,
        step_size=None,
        method="dopri5",
        atol=ODE_TOL,
        rtol=ODE_TOL,
        exact_divergence=True,
    )
    return log_p.detach()


LIBRARIES: dict[str, tuple[Callable, Callable, Callable | None]] = {
    "torchcfm": (torchcfm_loss, torchcfm_samples, None),  # TorchCFM has no log_prob
    "flow_matching": (flow_matching_loss, flow_matching_samples, flow_matching_log_likelihood),
}


def train(
    net: nn.Module, loss: Callable, pool: Tensor, batch: int, budget: float, seed: int
) -> dict:
    """Adam, lr·½(1 + cos(π c / budget)) after c CPU-seconds, until the budget."""
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed)
    steps, start = 0, time.process_time()
    while (spent := time.process_time() - start) < budget:
        for group in opt.param_groups:
            group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * spent / budget))
        x1 = pool[torch.randint(len(pool), (batch,), generator=g)]
        value = loss(net, x1)
        opt.zero_grad()
        value.backward()
        opt.step()
        steps += 1
    spent = time.process_time() - start
    return {"steps": steps, "train_cpu_seconds": spent, "steps_per_cpu_second": steps / spent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=sorted(LIBRARIES), required=True)
    parser.add_argument("--coupling", choices=["independent", "ot"], default="independent")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128, 128])
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_file(str(args.data))
    pool = ((data["train"] - data["shift"]) / data["scale"]).contiguous()  # (N, D)
    make_loss, make_samples, log_likelihood = LIBRARIES[args.library]
    loss = make_loss(args.coupling)
    torch.manual_seed(args.seed)
    net = TimeMLP(pool.shape[1], tuple(args.hidden))
    result = train(net, loss, pool, args.batch, args.budget, args.seed)
    net.eval()
    start = time.process_time()
    with torch.no_grad():
        samples = make_samples(net, data["noise"])
    result["sample_cpu_seconds"] = time.process_time() - start
    tensors = {f"net.{k}": v.contiguous() for k, v in net.state_dict().items()}
    tensors["samples"] = samples.contiguous()
    if log_likelihood is not None:
        tensors["log_likelihood"] = log_likelihood(net, data["check"]).contiguous()
    tmp = args.out.with_name(args.out.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, args.out)
    result["versions"] = {
        "torch": torch.__version__,
        args.library: importlib.metadata.version(args.library),
    }
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
