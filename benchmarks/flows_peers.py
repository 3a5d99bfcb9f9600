"""probgen's MAF and NSF against zuko, nflows and normflows: speed and KL gap, side by side.

Same recipe on both sides (see flows_toy.py and /work/shared/BENCHMARKING.md):
5 autoregressive transforms separated by order reversals, MADE conditioners
with two hidden layers of 64 (ReLU), 8 rational-quadratic bins on [-5, 5]
with linear (identity) tails, N(0, I) base, batch 512, Adam 1e-3, fresh
8gaussians samples every step, float32, one thread. For each repeat the two
sides alternate (ours, peer, ours, peer, …), each trained for ``--budget``
CPU-seconds (``time.process_time``); we report per pair

    training steps per CPU-second (ratio ours / peer),
    sampling points per CPU-second, 10 000 points (ratio ours / peer),
    KL gap on 10 000 fixed test points (difference ours − peer, nats),

and their medians over ``--repeats`` pairs. Repeats are the outer loop and the
JSON is rewritten after every pair, so an interrupted run keeps whole rounds.
Peer usage follows each library's documented API: ``zuko.flows.MAF/NSF``; nflows ``Flow`` over
``MaskedAffineAutoregressiveTransform`` / ``MaskedPiecewiseRationalQuadratic
AutoregressiveTransform`` with ``num_blocks=1, use_residual_blocks=False``
(= two hidden layers); normflows ``NormalizingFlow`` over its
``MaskedAffineAutoregressive`` and its non-residual spline autoregressive
layer (its ``AutoregressiveRationalQuadraticSpline`` wrapper forces residual
blocks, i.e. a deeper conditioner). normflows' ``sample`` also returns
log-densities, which its sampling rate includes.

The peers live in their own virtual environment (torch==2.13.0 first, then
``pip install zuko nflows normflows``), never in .venv; probgen is imported
from this checkout:

    python3 -m venv /work/peers-venv
    /work/peers-venv/bin/pip install torch==2.13.0
    /work/peers-venv/bin/pip install zuko nflows normflows numpy scipy
    OMP_NUM_THREADS=1 PYTHONPATH=. /work/peers-venv/bin/python benchmarks/flows_peers.py --budget 60

Writes ``benchmarks/results/flows_peers.json``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from flows_toy import RECIPE, RESULTS, Contender, kl_gap, ours, run_info, sampling_rate, train

from probgen.data.toy import ToyDataset

PEERS = ["zuko", "nflows", "normflows"]


def zuko_flow(kind: str) -> Contender:
    """zuko's MAF or (autoregressive) NSF with the recipe's sizes."""
    import zuko

    options = {"transforms": RECIPE["transforms"], "hidden_features": tuple(RECIPE["hidden"])}
    if kind == "maf":
        flow = zuko.flows.MAF(2, **options)
    else:
        flow = zuko.flows.NSF(2, bins=RECIPE["bins"], **options)
    return Contender(
        f"zuko {kind}", flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,))
    )


def _nflows_layer(kind: str) -> Any:
    from nflows.transforms import (
        MaskedAffineAutoregressiveTransform,
        MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    )

    common = {"num_blocks": 1, "use_residual_blocks": False}  # two hidden layers
    if kind == "maf":
        return MaskedAffineAutoregressiveTransform(2, RECIPE["hidden"][0], **common)
    return MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
        2,
        RECIPE["hidden"][0],
        num_bins=RECIPE["bins"],
        tails="linear",
        tail_bound=RECIPE["spline_bound"],
        **common,
    )


def nflows_flow(kind: str) -> Contender:
    """nflows' Flow of masked autoregressive layers separated by reversals."""
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import CompositeTransform, ReversePermutation

    layers = []
    for k in range(RECIPE["transforms"]):
        if k:
            layers.append(ReversePermutation(2))
        layers.append(_nflows_layer(kind))
    flow = Flow(CompositeTransform(layers), StandardNormal([2]))
    return Contender(f"nflows {kind}", flow, flow.log_prob, flow.sample)


def normflows_flow(kind: str) -> Contender:
    """normflows' NormalizingFlow of masked autoregressive layers separated by swaps."""
    import normflows as nf
    from normflows.flows.neural_spline.autoregressive import (
        MaskedPiecewiseRationalQuadraticAutoregressive,
    )

    class SplineAutoregressive(nf.flows.Flow):
        """normflows' spline layer with the non-residual two-hidden-layer MADE."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = MaskedPiecewiseRationalQuadraticAutoregressive(
                2,
                RECIPE["hidden"][0],
                num_bins=RECIPE["bins"],
                tails="linear",
                tail_bound=RECIPE["spline_bound"],
                num_blocks=1,
                use_residual_blocks=False,
            )

        def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x, log_det = self.layer.inverse(z)
            return x, log_det.view(-1)

        def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z, log_det = self.layer(x)
            return z, log_det.view(-1)

    def layer() -> Any:
        if kind == "maf":
            return nf.flows.MaskedAffineAutoregressive(
                2, RECIPE["hidden"][0], num_blocks=1, use_residual_blocks=False
            )
        return SplineAutoregressive()

    flows = []
    for k in range(RECIPE["transforms"]):
        if k:
            flows.append(nf.flows.Permute(2, mode="swap"))
        flows.append(layer())
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), flows)
    return Contender(f"normflows {kind}", model, model.log_prob, lambda n: model.sample(n)[0])


BUILDERS: dict[str, Callable[[str], Contender]] = {
    "zuko": zuko_flow,
    "nflows": nflows_flow,
    "normflows": normflows_flow,
}


def measure(contender: Contender, dataset: ToyDataset, budget: float, seed: int) -> dict:
    """Train for ``budget`` CPU-seconds, then the KL gap and the sampling rate."""
    return {
        **train(contender, dataset, budget, seed),
        **kl_gap(contender, dataset),
        "samples_per_cpu_second": sampling_rate(contender),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="CPU seconds per run")
    parser.add_argument("--peers", nargs="+", default=PEERS, choices=PEERS)
    parser.add_argument("--flows", nargs="+", default=["maf", "nsf"], choices=["maf", "nsf"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "flows_peers.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = ToyDataset("8gaussians", n_test=10_000, seed=0)

    pairs: list[dict[str, Any]] = []
    print(
        f"{'flow':5} {'peer':10} {'rep':>3} {'steps/s ours':>12} {'peer':>7} "
        f"{'samples/s ours':>14} {'peer':>9} {'KL gap ours':>11} {'peer':>7}"
    )
    for rep in range(args.repeats):
        for kind in args.flows:
            for peer in args.peers:
                torch.manual_seed(rep)
                a = measure(ours(kind), dataset, args.budget, rep)
                torch.manual_seed(rep)
                b = measure(BUILDERS[peer](kind), dataset, args.budget, rep)
                pairs.append({"flow": kind, "peer": peer, "repeat": rep, "ours": a, "peer_run": b})
                print(
                    f"{kind:5} {peer:10} {rep:3d} {a['steps_per_cpu_second']:12.1f} "
                    f"{b['steps_per_cpu_second']:7.1f} {a['samples_per_cpu_second']:14.0f} "
                    f"{b['samples_per_cpu_second']:9.0f} {a['kl_gap']:11.4f} {b['kl_gap']:7.4f}",
                    flush=True,
                )
                save(args, pairs, summarise(pairs, args.flows, args.peers, quiet=True))
    summary = summarise(pairs, args.flows, args.peers, quiet=False)
    save(args, pairs, summary)
    print(f"wrote {args.out}")


def summarise(pairs: list[dict[str, Any]], flows: list[str], peers: list[str], quiet: bool) -> dict:
    """Medians over the repeats so far of each (flow, peer): speed ratios and KL gaps."""
    if not quiet:
        print("\nmedians over repeats (ours / peer for speeds, ours − peer for the KL gap)")
    summary: dict[str, dict[str, float]] = {}
    for kind in flows:
        for peer in peers:
            ps = [p for p in pairs if p["flow"] == kind and p["peer"] == peer]
            if not ps:
                continue

            def median(f: Callable[[dict, dict], float], ps: list[dict] = ps) -> float:
                return statistics.median(f(p["ours"], p["peer_run"]) for p in ps)

            row = {
                "steps_ratio": median(
                    lambda a, b: a["steps_per_cpu_second"] / b["steps_per_cpu_second"]
                ),
                "sampling_ratio": median(
                    lambda a, b: a["samples_per_cpu_second"] / b["samples_per_cpu_second"]
                ),
                "kl_gap_difference": median(lambda a, b: a["kl_gap"] - b["kl_gap"]),
                "kl_gap_ours": median(lambda a, b: a["kl_gap"]),
                "kl_gap_peer": median(lambda a, b: b["kl_gap"]),
            }
            summary[f"{kind}/{peer}"] = row
            if not quiet:
                print(
                    f"{kind:5} {peer:10} steps ×{row['steps_ratio']:.2f}  "
                    f"sampling ×{row['sampling_ratio']:.2f}  KL gap {row['kl_gap_ours']:.4f} vs "
                    f"{row['kl_gap_peer']:.4f} (Δ {row['kl_gap_difference']:+.4f})"
                )
    return summary


def save(args: argparse.Namespace, pairs: list[dict[str, Any]], summary: dict) -> None:
    """Write the JSON record of the pairs so far and their summary."""
    record = {
        "benchmark": "flows_peers",
        "recipe": RECIPE,
        "data": "8gaussians",
        "budget_cpu_seconds": args.budget,
        "repeats": args.repeats,
        "repeats_done": len({p["repeat"] for p in pairs}),
        "peer_versions": {p: importlib.metadata.version(p) for p in args.peers},
        **run_info(args.threads),
        "pairs": pairs,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
