"""Digits 8×8: test NLL under the discrete 17-level likelihood for every family, per CPU budget.

Data: ``probgen.data.Digits`` (scikit-learn's 1797 UCI digits, values 0…16,
D = 64), rows [:1000] train, [1000:1350] validation (unused), [1350:] test
(447 images), Tomczak's protocol. Every model is built by
``probgen.models.build_model("name", Digits.spec, **options)``, so density
models (flows) are ``Dequantized`` and see y = (x + u)/17 ∈ [0, 1)^64, while
the VAE (discretised-logistic decoder), MADE and PixelCNN (categorical
conditionals), DDPM and flow matching (their own dequantization to [−1, 1],
the same U-Net) model the levels directly.

Recipe: float32, Adam (lr 1e-3), batches of 128 drawn with replacement from
the training split, trained on ``model.loss`` until ``--budget`` CPU-seconds
(``time.process_time``) have been spent, torch pinned to ``--threads``
threads (1 by default, see /work/shared/BENCHMARKING.md). Early stopping as
in Tomczak's examples: ``model.loss`` on the validation split is measured
``--checks`` times, evenly over the budget (not counted in it), and the
parameters with the lowest are evaluated. Model options are in ``MODELS``
below and written to the JSON.

Figures, on the test split, all in nats per image of the discrete likelihood
P(x) on {0, …, 16}^64 (bits/dim = NLL / (64 ln 2), the convention of
``probgen.data.dequantize.bits_per_dim`` with ``dequantized=False``):

    vae        ELBO (1 draw) and IWAE-K (K = ``--iwae-k``, 5000): upper bounds
    made       exact −log P(x)
    pixelcnn   exact −log P(x)
    realnvp, maf, nsf   −E_u[log p((x+u)/K)] + D log K, an upper bound, averaged
               over ``--draws`` draws of u per image
    ddpm       probability-flow ODE (Hutchinson trace, dequantized: an upper
               bound) and the variational bound (VLB, discretised decoder)
    flow_matching   the flow's ODE (linear path, velocity U-Net, independent
               coupling; Hutchinson trace, dequantized like DDPM: an upper bound)

Each row gives the mean over test images with its standard error. Writes a
table and ``benchmarks/results/digits.json``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/digits.py                # 120 CPU-s per model
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/digits.py --budget 20 --models made realnvp

References: Alpaydin & Kaynak (1998), UCI optical digits; Tomczak (2022),
"Deep Generative Modeling"; Theis, van den Oord & Bethge (2016), "A note on
the evaluation of generative models"; Burda, Grosse & Salakhutdinov (2016),
"Importance weighted autoencoders".
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from probgen.core import Estimate, GenerativeModel
from probgen.data import Digits
from probgen.data.dequantize import bits_per_dim
from probgen.evaluate.likelihood import (
    ELBOBound,
    IWAEBound,
    LogLikelihoodEstimator,
    ModelLogProb,
    log_probs,
)
from probgen.models import build_model
from probgen.models.diffusion.likelihood import HutchinsonDivergence
from probgen.models.diffusion.model import LikelihoodMethod, ODELikelihood, VLBLikelihood

RESULTS = Path(__file__).resolve().parent / "results"
TRAIN = {"optimizer": "Adam", "lr": 1e-3, "batch": 128, "dtype": "float32"}
MODELS: dict[str, dict[str, Any]] = {
    "vae": {"latent_dim": 16, "hidden": [256, 256], "channels": [32, 64]},
    "made": {"hidden": [512, 512]},
    "pixelcnn": {"hidden": 64, "layers": 5},
    "realnvp": {"transforms": 8, "hidden": [256, 256]},
    "maf": {"transforms": 8, "hidden": [256, 256]},
    "nsf": {"transforms": 5, "hidden": [256, 256], "bins": 8},
    "ddpm": {"chain_steps": 1000, "sample_steps": 1000},
    "flow_matching": {},
}
"""Options passed to ``build_model`` for each family."""


class DiffusionLikelihood(LogLikelihoodEstimator):
    """A diffusion model's log P(x) by a given method (ODE or VLB) instead of its default."""

    def __init__(self, method: LikelihoodMethod) -> None:
        self.method = method

    def kind(self, model: GenerativeModel) -> str:
        return "bound"  # both methods bound the discrete log P(x) (see the module docstring)

    def __call__(
        self,
        model: GenerativeModel,
        x: Tensor,
        generator: torch.Generator | None,
        condition: Tensor | None = None,
    ) -> Tensor:
        return self.method(model.denoiser, x, model.levels, generator)


@dataclass(frozen=True)
class Evaluation:
    """One reported figure: a label, the estimator of log P(x), draws averaged per image.

    ``n_test`` limits the figure to the first test images (None: all 447).
    """

    label: str
    estimator: LogLikelihoodEstimator
    draws: int = 1
    n_test: int | None = None


def evaluations(name: str, args: argparse.Namespace) -> list[Evaluation]:
    """The figures reported for family ``name``."""
    ode_hutchinson = Evaluation(
        "ODE (Hutchinson)",
        DiffusionLikelihood(ODELikelihood(HutchinsonDivergence())),
        n_test=args.diffusion_n_test,
    )
    table: dict[str, Callable[[], list[Evaluation]]] = {
        "vae": lambda: [
            Evaluation("ELBO", ELBOBound(1)),
            Evaluation(f"IWAE-{args.iwae_k}", IWAEBound(args.iwae_k)),
        ],
        "made": lambda: [Evaluation("exact", ModelLogProb())],
        "pixelcnn": lambda: [Evaluation("exact", ModelLogProb())],
        "ddpm": lambda: [
            ode_hutchinson,
            Evaluation(
                "VLB",
                DiffusionLikelihood(VLBLikelihood(MODELS["ddpm"]["chain_steps"])),
                n_test=args.diffusion_n_test,
            ),
        ],
        "flow_matching": lambda: [ode_hutchinson],
    }
    dequantized = [Evaluation(f"dequantized bound, {args.draws} draws", ModelLogProb(), args.draws)]
    return table.get(name, lambda: dequantized)()


@torch.no_grad()
def validation_loss(model: GenerativeModel, validation: Tensor, seed: int) -> float:
    """``model.loss`` on the whole validation split, with the same random numbers at every check."""
    model.eval()
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return model.loss(validation).item()
    finally:
        model.train()


def train(
    model: GenerativeModel, data: Digits, budget: float, checks: int, seed: int
) -> dict[str, Any]:
    """Adam on ``model.loss`` of random training batches until ``budget`` CPU-seconds are spent.

    Early stopping: the validation loss is measured ``checks`` times, evenly
    over the budget, and the parameters with the lowest are kept. Checks are
    not counted in the budget.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=TRAIN["lr"])
    generator = torch.Generator().manual_seed(seed)
    validation = data.split("validation")
    best_loss, best_state, best_step = math.inf, copy.deepcopy(model.state_dict()), 0
    model.train()
    steps, spent, next_check = 0, 0.0, budget / checks
    while spent < budget:
        start = time.process_time()
        x = data.batch("train", TRAIN["batch"], generator)
        optimizer.zero_grad()
        model.loss(x).backward()
        optimizer.step()
        steps += 1
        spent += time.process_time() - start
        if spent >= min(next_check, budget):
            next_check += budget / checks
            loss = validation_loss(model, validation, seed)
            if loss < best_loss:
                best_loss, best_state, best_step = loss, copy.deepcopy(model.state_dict()), steps
    model.load_state_dict(best_state)
    return {
        "steps": steps,
        "train_cpu_seconds": spent,
        "best_step": best_step,
        "best_validation_loss": best_loss,
    }


def evaluate(
    model: GenerativeModel, test: Tensor, evaluation: Evaluation, batch: int, seed: int
) -> dict[str, Any]:
    """NLL (nats/image) and bits/dim of the discrete likelihood, means over images with stderr."""
    generator = torch.Generator().manual_seed(seed)
    test = test[: evaluation.n_test]
    start = time.process_time()
    per_draw = [
        log_probs(model, test, batch, estimator=evaluation.estimator, generator=generator)
        for _ in range(evaluation.draws)
    ]
    values = torch.stack(per_draw).double().mean(0)  # (N,), averaged over draws of u
    spent = time.process_time() - start
    nll = Estimate.from_samples(-values, kind=evaluation.estimator.kind(model))
    dim = math.prod(Digits.spec.event_shape)
    bpd = Estimate.from_samples(
        bits_per_dim(values, dim, Digits.spec.levels, dequantized=False), kind=nll.kind
    )
    return {
        "label": evaluation.label,
        "kind": nll.kind,
        "draws": evaluation.draws,
        "n_test": len(test),
        "nll": nll.value,
        "nll_stderr": nll.stderr,
        "bpd": bpd.value,
        "bpd_stderr": bpd.stderr,
        "eval_cpu_seconds": spent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="CPU seconds per model")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--checks", type=int, default=20, help="validation checks (early stop)")
    parser.add_argument("--iwae-k", type=int, default=5000)
    parser.add_argument("--draws", type=int, default=10, help="draws of u per image (flows)")
    parser.add_argument(
        "--diffusion-n-test",
        type=int,
        default=None,
        help="first test images for the DDPM and flow-matching figures (the VLB costs 1000 "
        "passes; default all)",
    )
    parser.add_argument(
        "--family-options",
        type=json.loads,
        default={},
        help='JSON per family over MODELS, e.g. {"flow_matching": {"time_power": 2.0}}',
    )
    parser.add_argument("--eval-batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "digits.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = Digits()
    test = data.split("test")
    runs: list[dict[str, Any]] = []
    print(
        f"{'model':9} {'best/steps':>11} {'figure':28} {'n':>4} {'NLL nats':>17} {'bits/dim':>15} "
        f"{'eval s':>7}"
    )
    for name in args.models:
        torch.manual_seed(args.seed)
        options = MODELS[name] | args.family_options.get(name, {})
        model = build_model(name, data.spec, **options)
        run: dict[str, Any] = {
            "model": name,
            "class": type(model).__name__,
            "inner": type(getattr(model, "model", model)).__name__,
            "likelihood": model.likelihood.value,
            "options": options,
        }
        run |= train(model, data, args.budget, args.checks, args.seed)
        model.eval()
        run["figures"] = []
        runs.append(run)
        for e in evaluations(name, args):
            f = evaluate(model, test, e, args.eval_batch, args.seed + 1)
            run["figures"].append(f)
            print(
                f"{name:9} {run['best_step']:5d}/{run['steps']:<5d} {f['label']:28} "
                f"{f['n_test']:4d} {f['nll']:9.2f} ± {f['nll_stderr']:5.2f} "
                f"{f['bpd']:7.3f} ± {f['bpd_stderr']:.3f} {f['eval_cpu_seconds']:7.1f}",
                flush=True,
            )

    record = {
        "benchmark": "digits",
        "data": "Digits 8x8, 17 levels; train rows [:1000], test rows [1350:] (447)",
        "train": TRAIN,
        "budget_cpu_seconds": args.budget,
        "iwae_k": args.iwae_k,
        "draws": args.draws,
        "seed": args.seed,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
