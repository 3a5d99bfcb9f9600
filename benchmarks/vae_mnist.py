"""VAE on dynamically binarized MNIST: test NLL (IWAE-K bound) against CPU time.

Recipe (Burda, Grosse & Salakhutdinov 2016, "Importance weighted
autoencoders", one stochastic layer): encoder 784-200-200-2·50 and decoder
50-200-200-784, tanh, Bernoulli pixels, standard normal prior (or, with
``--prior``, a learned mixture of ``--components`` diagonal Gaussians or a
VampPrior), Adam (lr 1e-3, β = (0.9, 0.999), ε = 1e-4; torch's fused
kernel), trained on the negative ELBO (or on IWAE-k with ``--objective
iwae``, with DReG encoder gradients with ``--dreg``; ``--cosine`` decays the
learning rate to 1 % by a cosine over the CPU budget), fresh binarization of
every training batch. The test NLL is -L_K
with K = 5000 importance samples, an upper bound on the true NLL; the paper's
VAE reaches 86.76 nats after 3280 epochs.

The training budget is CPU time (``time.process_time``), with torch pinned to
``--threads`` threads (see /work/shared/BENCHMARKING.md). Every ``--eval-every``
CPU-seconds the IWAE-``--curve-k`` NLL of the first ``--curve-n`` test images
is recorded; the final NLL uses ``--final-k`` samples on ``--n-test`` images,
evaluated in chunks of ``--chunk`` images. ``--train-until`` and ``--deadline``
(UTC wall-clock times, HH:MM) bound a run on a shared machine: training stops
at whichever of the CPU budget and ``--train-until`` comes first, and the final
evaluation stops after the last chunk finished before ``--deadline``, the record
stating how many test images were evaluated. The JSON
(``benchmarks/results/vae_mnist.json``) is rewritten after every curve point
and every chunk, so an interrupted run still leaves its figures.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vae_mnist.py --minutes 60
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vae_mnist.py --minutes 60 --objective iwae \\
        --k 5 --dreg --cosine                        # 86.55 nats (session 3)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vae_mnist.py --minutes 2 --n-test 500 \\
        --final-k 1000
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from probgen.core import Estimate
from probgen.data.mnist import MNIST
from probgen.models.vae import (
    ELBO,
    IWAE,
    VAE,
    BernoulliDecoder,
    GaussianEncoder,
    MixturePrior,
    VampPrior,
)
from probgen.nn.mlp import MLP

RESULTS = Path(__file__).resolve().parent / "results"


def burda_vae(objective: ELBO | IWAE, prior: str, components: int, train: torch.Tensor) -> VAE:
    """The one-stochastic-layer architecture of Burda et al. (2016), Bernoulli decoder.

    ``prior``: "standard" normal (the paper's), a learned "mixture" of
    ``components`` diagonal Gaussians, or a "vamp" prior whose ``components``
    pseudo-inputs start as random images of ``train``.
    """
    encoder = GaussianEncoder(nn.Sequential(nn.Flatten(), MLP(784, 100, (200, 200), nn.Tanh)), 50)
    decoder = BernoulliDecoder(MLP(50, 784, (200, 200), nn.Tanh), (1, 28, 28))
    priors = {
        "standard": lambda: None,
        "mixture": lambda: MixturePrior(50, components),
        "vamp": lambda: VampPrior(encoder, train[torch.randperm(len(train))[:components]]),
    }
    return VAE(encoder, decoder, priors[prior](), objective=objective)


@torch.no_grad()
def iwae_bounds(
    vae: VAE, x: torch.Tensor, k: int, batch: int, generator: torch.Generator
) -> torch.Tensor:
    """L_K(x) = log (1/K) Σ_k p(x, z_k) / q(z_k | x) per image; x (B, 1, 28, 28) -> (B,)."""
    return torch.cat([vae.iwae_bound(xb, k, generator=generator) for xb in x.split(batch)])


def test_nll(vae: VAE, x: torch.Tensor, k: int, batch: int, seed: int) -> Estimate:
    """-L_K per test image averaged, with its standard error over images (kind "bound")."""
    bounds = iwae_bounds(vae, x, k, batch, torch.Generator().manual_seed(seed))
    return Estimate.from_samples(-bounds, kind="bound")


def chunked_nll(
    vae: VAE, x: torch.Tensor, k: int, chunk: int, seed: int
) -> Iterator[tuple[Estimate, int, float]]:
    """-L_K over the first 1, 2, ... chunks of x, with the image count and CPU-seconds so far."""
    generator = torch.Generator().manual_seed(seed)
    bounds: list[torch.Tensor] = []
    start = time.process_time()
    for xc in x.split(chunk):
        bounds.append(iwae_bounds(vae, xc, k, max(1, 20_000 // k), generator))
        done = torch.cat(bounds)
        yield Estimate.from_samples(-done, kind="bound"), len(done), time.process_time() - start


def cosine_lr(lr: float, progress: float, floor: float = 0.01) -> float:
    """lr · (floor + (1 - floor) · ½(1 + cos(π · progress))), progress in [0, 1] of the budget."""
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def utc_today_at(hhmm: str | None) -> float:
    """A UTC wall-clock time HH:MM today as a POSIX timestamp (infinity when None)."""
    if hhmm is None:
        return math.inf
    hour, minute = (int(part) for part in hhmm.split(":"))
    now = datetime.now(timezone.utc)
    return now.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="CPU-time training budget")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=None, help="folder of the MNIST IDX files")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--cosine", action="store_true", help="decay lr to lr/100 by a cosine over the CPU budget"
    )
    parser.add_argument("--objective", choices=["elbo", "iwae"], default="elbo")
    parser.add_argument("--k", type=int, default=5, help="k of the IWAE training objective")
    parser.add_argument(
        "--dreg", action="store_true", help="DReG encoder gradients for the IWAE objective"
    )
    parser.add_argument("--prior", choices=["standard", "mixture", "vamp"], default="standard")
    parser.add_argument("--components", type=int, default=500, help="K of a mixture/vamp prior")
    parser.add_argument("--eval-every", type=float, default=60.0, help="CPU-seconds")
    parser.add_argument("--curve-k", type=int, default=100)
    parser.add_argument("--curve-n", type=int, default=500)
    parser.add_argument("--final-k", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=250, help="test images per final chunk")
    parser.add_argument("--train-until", default=None, help="UTC HH:MM: stop training then")
    parser.add_argument("--deadline", default=None, help="UTC HH:MM: stop the final evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "vae_mnist.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = MNIST(root=args.root, binarize=True)
    test = data.split("test").float()
    objective = (
        IWAE(k=args.k, doubly_reparameterized=args.dreg) if args.objective == "iwae" else ELBO()
    )
    vae = burda_vae(
        objective, args.prior, args.components, data.split("train")[:10_000].float()
    ).float()
    optimizer = torch.optim.Adam(vae.parameters(), lr=args.lr, eps=1e-4, fused=True)
    generator = torch.Generator().manual_seed(args.seed)
    eval_batch = max(1, 20_000 // args.curve_k)

    curve: list[dict[str, float]] = []
    record: dict[str, object] = {
        "benchmark": "vae_mnist",
        "recipe": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "architecture": f"784-200-200-50 tanh, Bernoulli decoder (Burda 2016), {args.prior} prior",
        "final": None,
        "curve": curve,
        "target_nll": 86.76,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(),
    }

    def save() -> None:
        record["timestamp"] = datetime.now(timezone.utc).isoformat()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))

    train_until, deadline = utc_today_at(args.train_until), utc_today_at(args.deadline)
    budget = 60.0 * args.minutes
    train_cpu, steps, next_eval, last_loss = 0.0, 0, 0.0, math.nan
    wall_start = time.perf_counter()
    while True:
        out_of_time = train_cpu >= budget or time.time() >= train_until
        if train_cpu >= next_eval or out_of_time:
            nll = test_nll(vae, test[: args.curve_n], args.curve_k, eval_batch, seed=1)
            curve.append(
                {
                    "train_cpu_s": train_cpu,
                    "wall_s": time.perf_counter() - wall_start,
                    "steps": steps,
                    "epochs": steps * args.batch_size / 60_000,
                    "train_loss": last_loss,
                    "test_nll": nll.value,
                    "test_nll_stderr": nll.stderr,
                }
            )
            print(
                f"cpu {train_cpu:7.1f}s  steps {steps:7d}  epochs {curve[-1]['epochs']:6.2f}  "
                f"IWAE-{args.curve_k} NLL (first {args.curve_n} test) {nll}",
                flush=True,
            )
            save()
            next_eval += args.eval_every
            if out_of_time:
                break
        start = time.process_time()
        if args.cosine:
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(args.lr, train_cpu / budget)
        x = data.batch("train", args.batch_size, generator).float()
        optimizer.zero_grad()
        loss_value = vae.loss(x)
        loss_value.backward()
        optimizer.step()
        train_cpu += time.process_time() - start
        steps += 1
        last_loss = loss_value.item()

    eval_cpu = 0.0
    evaluation = chunked_nll(vae, test[: args.n_test], args.final_k, args.chunk, 2)
    for final, n_done, eval_cpu in evaluation:
        record["final"] = {
            "test_nll": final.value,
            "stderr": final.stderr,
            "kind": final.kind,
            "k": args.final_k,
            "n_test": n_done,
            "eval_cpu_s": eval_cpu,
        }
        save()
        print(f"IWAE-{args.final_k} test NLL on the first {n_done} images: {final}", flush=True)
        if time.time() >= deadline:
            break
    print(f"paper (Burda et al. 2016, VAE, 1 layer, k=1): 86.76; eval took {eval_cpu:.0f} CPU-s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
