"""Train the default feature networks of the sample metrics (FID, KID, precision/recall).

    .venv/bin/python benchmarks/feature_net.py digits  # ~10 s on one CPU core
    .venv/bin/python benchmarks/feature_net.py mnist   # ~1-2 min; needs ../shared/data/mnist

Trains a ``probgen.evaluate.features.ClassifierFeatures`` MLP with Adam on the
training split (digits: rows 0-999; MNIST: 55 000 images, the last 5 000 held
out), keeps the weights of the epoch with the best validation accuracy, reports
the test accuracy, and writes ``probgen/evaluate/weights/<name>.safetensors``
with the accuracies in its metadata (read them back with
``safetensors.safe_open(path, "pt").metadata()``). Seeded: reruns give the same file.
A net records its training levels L and reads data of any K levels on that
scale (``ClassifierFeatures(input_levels=K)``), so binarized MNIST needs no net
of its own. No Fashion-MNIST recipe: only its test files are at hand.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from probgen.data.digits import Digits
from probgen.data.mnist import MNIST
from probgen.evaluate.features import WEIGHTS, ClassifierFeatures


@dataclass(frozen=True)
class Recipe:
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    lr: float


RECIPES = {
    "digits": Recipe(hidden=(128, 64), epochs=150, batch_size=100, lr=2e-3),
    "mnist": Recipe(hidden=(256, 128), epochs=8, batch_size=128, lr=1e-3),
}


def load(name: str, data_root: str | None) -> tuple[dict[str, tuple[Tensor, Tensor]], int]:
    """{split: (images (N, 1, H, W) float32, labels (N,))} and the number of levels."""
    data = Digits() if name == "digits" else MNIST(root=data_root, n_validation=5000)
    splits = {
        s: (data.stored(s).to(torch.float32), data.labels(s))
        for s in ("train", "validation", "test")
    }
    return splits, data.spec.levels


def accuracy(net: ClassifierFeatures, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return (net.logits(x).argmax(dim=1) == y).double().mean().item()


def train(name: str, data_root: str | None, seed: int) -> tuple[ClassifierFeatures, dict]:
    recipe = RECIPES[name]
    splits, levels = load(name, data_root)
    torch.manual_seed(seed)
    x, y = splits["train"]
    net = ClassifierFeatures(x.shape[1:], levels, recipe.hidden).float()
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    g = torch.Generator().manual_seed(seed)
    best, best_acc, best_epoch = copy.deepcopy(net.state_dict()), -1.0, 0
    start = time.perf_counter()
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(x), generator=g)
        for rows in order.split(recipe.batch_size):
            loss = F.cross_entropy(net.logits(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val = accuracy(net, *splits["validation"])
        if val > best_acc:
            best, best_acc, best_epoch = copy.deepcopy(net.state_dict()), val, epoch + 1
    net.load_state_dict(best)
    report = {
        "data": name,
        "train_accuracy": accuracy(net, *splits["train"]),
        "validation_accuracy": best_acc,
        "test_accuracy": accuracy(net, *splits["test"]),
        "epoch": best_epoch,
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    return net, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", choices=sorted(RECIPES))
    parser.add_argument("--data-root", default=None, help="folder holding mnist/ (MNIST only)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net, report = train(args.data, args.data_root, args.seed)
    WEIGHTS.mkdir(exist_ok=True)
    path = WEIGHTS / f"{args.data}.safetensors"
    net.save(path, metadata={k: str(v) for k, v in report.items()})
    print(json.dumps({**report, "file": str(path), "bytes": path.stat().st_size}, indent=2))


if __name__ == "__main__":
    main()
