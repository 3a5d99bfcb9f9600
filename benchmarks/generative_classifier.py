"""Generative classifiers by Bayes' rule against a discriminative MLP of the same size.

Every class-conditional model p_θ(x | c) with a likelihood is a classifier,

    log p_θ(c | x) = log p_θ(x | c) + log π_c − log Σ_k p_θ(x | k) π_k,

with π the training split's label frequencies
(``probgen.evaluate.classifiers.generative_classifier``). With an exact
likelihood (MADE) this is the Bayes classifier of the model's joint law; with a
bound (a dequantised flow, the VAE's IWAE bound, the DDPM's ODE likelihood of
dequantised data) it is a classifier but not the Bayes classifier of any model,
since the bounds' gaps differ between classes: the ``kind`` column says which.

Data: ``digits`` (``Digits(conditional=True)``: 1000 train, 350 validation,
447 test, 17 levels, 8×8) or ``mnist`` (``MNIST(binarize=True,
conditional=True)``: 60 000 training images, dynamically binarized, the
first ``--n-test`` test images with one fixed binarization; binarized so that
MADE's categorical outputs stay small, 2 levels instead of 256).

Generative models: trained by the engine, ``probgen.train.fit`` with a
``RunConfig`` naming the registered data set with ``{conditional: true}``
(options in ``MODELS``), Adam lr 1e-3, batch 128, ``--budget`` CPU-seconds
(``budget_clock: cpu``, validation counted in it), one thread, seed
``--seed``; early stopping ``auto`` (on for digits, keeping the best
validation NLL; off for MNIST, which has no validation split here) except
DDPM, whose validation likelihood is an ODE solve per image (off). The VAE
trains on the ELBO and is scored by the IWAE bound L_K (``--iwae-k``); the
DDPM by its probability-flow ODE likelihood with Hutchinson traces, on the
first ``--ddpm-test`` test images only (10 ODE solves per image).

Baseline: for each generative model an MLP p(c | x) on x / (levels − 1) with
two hidden layers of the width that gives about the same parameter count,
trained with cross-entropy on batches drawn the same way, for the same
CPU-time budget; on digits it is early-stopped on the validation
cross-entropy checked once per epoch (counted in the budget), stopped after
20 checks without improvement, as the engine does. It is scored by the same
accuracy, ECE (``expected_calibration_error``, 15 bins) and label NLL on the
same test images.

Figures: accuracy ± binomial standard error, ECE, label NLL ± standard error
(nats), parameter count, training steps and CPU seconds, scoring CPU seconds.
Prints a table and writes ``benchmarks/results/generative_classifier.json``
(``--out``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generative_classifier.py --data digits
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generative_classifier.py --data mnist \
        --root ../shared/data --budget 120 --models made maf vae

References: Ng & Jordan (2002), "On discriminative vs. generative
classifiers"; Guo, Pleiss, Sun & Weinberger (2017), "On calibration of modern
neural networks"; Germain et al. (2015), MADE; Papamakarios et al. (2017),
MAF; Sohn, Lee & Yan (2015), CVAE; Ho & Salimans (2022), classifier-free
guidance.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from probgen.data.base import Dataset
from probgen.evaluate.classifiers import expected_calibration_error, generative_classifier
from probgen.registry import DATASETS
from probgen.train import fit
from probgen.train.config import ComponentConfig, RunConfig, TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, LR, BINS = 128, 1e-3, 15
PATIENCE = 20  # validations without a better one before stopping: the engine's default
MODELS: dict[str, dict[str, dict[str, Any]]] = {
    "digits": {
        "made": {"hidden": [512, 512]},
        "maf": {"transforms": 8, "hidden": [256, 256]},
        "nsf": {"transforms": 5, "hidden": [256, 256], "bins": 8},
        "vae": {"latent_dim": 16, "hidden": [256, 256], "channels": [32, 64]},
        "ddpm": {"chain_steps": 1000},
    },
    "mnist": {
        "made": {"hidden": [512, 512]},
        "maf": {"transforms": 5, "hidden": [256, 256]},
        "nsf": {"transforms": 3, "hidden": [256, 256], "bins": 8},
        "vae": {"latent_dim": 32, "hidden": [512, 256], "channels": [32, 64]},
        "ddpm": {"chain_steps": 1000},
    },
}
"""Model options of each family per data set (``model.options`` of the run's config)."""
KIND_NOTE = {
    "made": "exact",
    "maf": "dequantised bound",
    "nsf": "dequantised bound",
    "vae": "IWAE bound",
    "ddpm": "ODE, dequantised bound",
}


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """``data.options`` of the runs: class labels on, MNIST binarized."""
    if args.data == "mnist":
        return {"root": str(args.root), "binarize": True, "conditional": True}
    return {"conditional": True}


def run_config(name: str, args: argparse.Namespace) -> RunConfig:
    """The engine's config of family ``name``: CPU budget, one thread, batch 128, Adam 1e-3."""
    train = TrainConfig(
        steps=10**9,
        time_budget=args.budget,
        budget_clock="cpu",
        batch_size=BATCH,
        lr=LR,
        threads=1,
        device="cpu",
        log_every=100,
        early_stopping=False if name == "ddpm" else "auto",
    )
    return RunConfig(
        model=ComponentConfig(name, dict(MODELS[args.data][name])),
        data=ComponentConfig(args.data, dataset_options(args)),
        name=f"gclf-{args.data}-{name}",
        seed=args.seed,
        train=train,
    )


def parameters(module: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def set_iwae_k(model: nn.Module, k: int) -> None:
    """Score a VAE (inside any wrapper) by L_K instead of the ELBO it trained with."""
    for module in model.modules():
        if hasattr(module, "log_prob_k"):
            module.log_prob_k = k


def label_prior(dataset: Dataset) -> Tensor:
    """π: the training split's label frequencies, (K,) float64."""
    labels = dataset.conditions("train")
    counts = torch.bincount(labels.long(), minlength=dataset.spec.condition.classes).double()
    return counts / counts.sum()


def scores(log_post: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy (binomial stderr), ECE and label NLL (stderr) of log p(c | x) (N, K)."""
    n = len(labels)
    accuracy = (log_post.argmax(1) == labels).double().mean().item()
    nll = -log_post.gather(1, labels[:, None]).squeeze(1).double()
    return {
        "accuracy": accuracy,
        "accuracy_stderr": math.sqrt(accuracy * (1 - accuracy) / n),
        "ece": expected_calibration_error(log_post.exp(), labels, BINS),
        "nll": nll.mean().item(),
        "nll_stderr": (nll.std() / math.sqrt(n)).item(),
    }


def generative_row(name: str, args: argparse.Namespace, test: Tensor, labels: Tensor) -> dict:
    """Train family ``name`` by the engine, then score its Bayes-rule classifier on the test set."""
    config = run_config(name, args)
    with tempfile.TemporaryDirectory() as run_dir:
        result = fit(config, Path(run_dir), progress=False)
    model, dataset = result.model, result.dataset
    if name == "vae":
        set_iwae_k(model, args.iwae_k)
    n = args.ddpm_test if name == "ddpm" else len(test)
    start = time.process_time()
    report = generative_classifier(
        model,
        test[:n],
        labels[:n],
        label_prior(dataset),
        bins=BINS,
        generator=torch.Generator().manual_seed(args.seed),
    )
    accuracy, ece, nll = (
        report[k] for k in ("classifier_accuracy", "classifier_ece", "classifier_nll")
    )
    return {
        "model": name,
        "kind": accuracy.kind,
        "likelihood": KIND_NOTE[name] + (f" (K = {args.iwae_k})" if name == "vae" else ""),
        "options": MODELS[args.data][name],
        "parameters": parameters(model),
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "best_step": result.best_step,
        "train_cpu_seconds": result.history[-1]["elapsed"],
        "n_test": n,
        "accuracy": accuracy.value,
        "accuracy_stderr": accuracy.stderr,
        "ece": ece.value,
        "nll": nll.value,
        "nll_stderr": nll.stderr,
        "score_cpu_seconds": time.process_time() - start,
    }


class MLPClassifier(nn.Module):
    """p(c | x) = softmax(W₃ relu(W₂ relu(W₁ x/(K−1) + b₁) + b₂) + b₃), x (B, *event) -> (B, C)."""

    def __init__(self, dim: int, width: int, classes: int, levels: int) -> None:
        super().__init__()
        self.scale = 1.0 / (levels - 1)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(dim, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self.net(x.float() * self.scale), dim=1)


def width_for(target: int, dim: int, classes: int) -> int:
    """The width w of two hidden layers whose (d+1)w + (w+1)w + (w+1)C parameters are nearest."""
    # w² + (d + C + 2) w + C − target = 0
    b = dim + classes + 2
    return max(1, round((-b + math.sqrt(b * b + 4 * (target - classes))) / 2))


@torch.no_grad()
def mean_cross_entropy(net: nn.Module, x: Tensor, labels: Tensor) -> float:
    """−mean log p(c_n | x_n) over x, in eval mode."""
    net.eval()
    try:
        return -net(x).gather(1, labels[:, None]).mean().item()
    finally:
        net.train()


def baseline_row(
    target: int, args: argparse.Namespace, dataset: Dataset, test: Tensor, labels: Tensor
) -> dict:
    """An MLP of about ``target`` parameters, trained with cross-entropy for ``--budget`` CPU-s.

    Early-stopped on the validation cross-entropy when the data have a
    validation split, as the engine stops the generative models: checked once
    per epoch (at least 10 steps, counted in the budget), stopping after
    ``PATIENCE`` checks without a better one and keeping the best weights.
    """
    spec = dataset.spec
    dim, classes = math.prod(spec.event_shape), spec.condition.classes
    torch.manual_seed(args.seed)
    net = MLPClassifier(dim, width_for(target, dim, classes), classes, spec.levels)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(args.seed)
    has_validation = args.data == "digits"
    if has_validation:
        val_x, val_c = dataset.split("validation"), dataset.conditions("validation")
        interval = max(10, math.ceil(dataset.train_size / BATCH))
    best, best_state, best_step = math.inf, None, 0
    steps, start = 0, time.process_time()
    stop_reason = "time_budget"
    while time.process_time() - start < args.budget:
        x, c = dataset.draw("train", BATCH, generator)
        loss = -net(x).gather(1, c[:, None]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        if has_validation and steps % interval == 0:
            value = mean_cross_entropy(net, val_x, val_c)
            if value < best:
                best, best_state, best_step = value, copy.deepcopy(net.state_dict()), steps
            elif steps - best_step >= PATIENCE * interval:
                stop_reason = "early_stopping"
                break
    spent = time.process_time() - start
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    start = time.process_time()
    with torch.no_grad():
        log_post = net(test).double()
    return {
        "model": "mlp",
        "kind": "discriminative",
        "likelihood": "p(c | x)",
        "options": {"hidden": [net.net[1].out_features] * 2},
        "parameters": parameters(net),
        "steps": steps,
        "stop_reason": stop_reason,
        "best_step": best_step if has_validation else None,
        "train_cpu_seconds": spent,
        "n_test": len(test),
        **scores(log_post, labels),
        "score_cpu_seconds": time.process_time() - start,
    }


def print_row(row: dict) -> None:
    name = row["model"] + ("" if row["model"] != "mlp" else f" {row['options']['hidden'][0]}w")
    print(
        f"{name:9} {row['likelihood']:24} {row['parameters']:>9,} {row['steps']:>7} "
        f"{row['n_test']:>6} {100 * row['accuracy']:6.2f} ± {100 * row['accuracy_stderr']:4.2f} "
        f"{row['ece']:6.3f} {row['nll']:7.3f} ± {row['nll_stderr']:5.3f} "
        f"{row['score_cpu_seconds']:8.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=list(MODELS), default="digits")
    parser.add_argument("--root", type=Path, default=Path("../shared/data"), help="MNIST files")
    parser.add_argument("--models", nargs="+", default=None, help="default: made maf vae ddpm")
    parser.add_argument(
        "--budget", type=float, default=None, help="CPU-s per model (120 digits, 300 MNIST)"
    )
    parser.add_argument("--n-test", type=int, default=None, help="first test images (MNIST 2000)")
    parser.add_argument("--ddpm-test", type=int, default=100, help="first test images for DDPM")
    parser.add_argument("--iwae-k", type=int, default=None, help="K of L_K (100 digits, 20 MNIST)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "generative_classifier.json")
    args = parser.parse_args()
    digits = args.data == "digits"
    args.models = args.models or (["made", "maf", "vae", "ddpm"] if digits else ["made", "vae"])
    unknown = sorted(set(args.models) - set(MODELS[args.data]))
    if unknown:
        choices = ", ".join(MODELS[args.data])
        parser.error(f"--models: unknown {unknown[0]!r}; choose from {choices}")
    args.budget = args.budget or (120.0 if digits else 300.0)
    args.n_test = args.n_test or (None if digits else 2000)
    args.iwae_k = args.iwae_k or (100 if digits else 20)
    torch.set_num_threads(1)

    dataset = DATASETS.get(args.data)(**dataset_options(args))
    test = dataset.split("test")[: args.n_test]
    labels = dataset.conditions("test")[: args.n_test].long()
    print(
        f"{args.data}: {args.budget:g} CPU-s per model, {len(test)} test images, seed {args.seed}"
    )
    print(
        f"{'model':9} {'likelihood':24} {'params':>9} {'steps':>7} {'n':>6} {'accuracy %':>14} "
        f"{'ECE':>6} {'label NLL':>15} {'score s':>8}"
    )
    rows: list[dict] = []
    for name in args.models:
        row = generative_row(name, args, test, labels)
        print_row(row)
        n = row["n_test"]  # the baseline is scored on the same test images
        baseline = baseline_row(row["parameters"], args, dataset, test[:n], labels[:n])
        baseline["baseline_for"] = name
        print_row(baseline)
        rows += [row, baseline]
        write(args, rows)
    print(f"wrote {args.out}")


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    """The JSON of the rows so far (rewritten after each model), per data set."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.is_file() else {}
    existing[args.data] = {
        "rows": rows,
        "recipe": {
            "data": args.data,
            "data_options": {k: v for k, v in dataset_options(args).items() if k != "root"},
            "budget_cpu_seconds": args.budget,
            "budget_clock": "time.process_time",
            "batch": BATCH,
            "optimizer": "Adam",
            "lr": LR,
            "ece_bins": BINS,
            "n_test": args.n_test,
            "ddpm_test": args.ddpm_test,
            "iwae_k": args.iwae_k,
            "seed": args.seed,
            "prior": "training label frequencies",
            "baseline": "MLP, two hidden layers of equal width, about the generative "
            "model's parameter count, cross-entropy, same budget",
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    args.out.write_text(json.dumps(existing, indent=1))


if __name__ == "__main__":
    main()
