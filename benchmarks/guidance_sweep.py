"""Classifier-free guidance on the 8×8 digits: guidance scale w against FID and accuracy.

Recipe: a conditional DDPM (``build_model("ddpm", Digits(conditional=True).spec)``:
the library's small U-Net, linear β over 1000 steps, ε-prediction, condition
dropout p_uncond = 0.1) trained on (image, class) pairs of the training split
(1000 rows) with Adam (batch 128, learning rate 1e-3 decayed by a cosine of the
CPU time used) for a CPU-time budget on one thread, float32. Then, for each w,
the same sampler and steps (ancestral, 250 steps by default) draw |X_k| samples
of each class k (X_k: the test rows of class k, 447 in all), all with one seed
(common random numbers across w), and the shipped digits classifier scores them
(``probgen.evaluate.class_quality``): ``sample_class_accuracy`` (its accuracy
at recovering k), FID of all samples against the test split and per-class FID
against X_k, on its 64 features.

The "real data" row is the ceiling and floor at these sizes: the classifier's
accuracy on the test images, and the FD of |X_k| training images of class k
(all 447 for the overall FID) to the test rows.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. .venv/bin/python \\
        benchmarks/guidance_sweep.py --budget 600

Writes benchmarks/results/guidance_sweep.json and guidance_sweep.png.

Reference: Ho & Salimans (2022), "Classifier-free diffusion guidance", Figure 4.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from probgen.data import Digits
from probgen.evaluate.class_quality import ClassQuality, class_conditional_quality
from probgen.evaluate.features import ClassifierFeatures, default_features
from probgen.evaluate.samples import frechet_distance
from probgen.models import build_model

RESULTS = Path("benchmarks/results")


def train(model: torch.nn.Module, data: Digits, args: argparse.Namespace) -> dict:
    """Adam on (x, c) pairs until ``args.budget`` CPU seconds; lr follows a cosine of CPU time."""
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    start, steps, losses = time.process_time(), 0, []
    while (used := time.process_time() - start) < args.budget:
        for group in opt.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * used / args.budget))
        x, c = data.draw("train", args.batch, g)
        loss = model.loss(x, condition=c)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        steps += 1
        if steps % 500 == 0:
            recent = sum(losses[-500:]) / 500
            print(f"  step {steps}: loss {recent:.4f}, {used:.0f} CPU-s", flush=True)
    return {"steps": steps, "cpu_seconds": time.process_time() - start, "final_loss": losses[-1]}


def real_data_row(data: Digits, net: ClassifierFeatures, seed: int) -> dict:
    """The classifier's accuracy on the test rows; FD of as many training rows to them."""
    test, labels = data.split("test"), data.conditions("test")
    train, train_labels = data.split("train"), data.conditions("train")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        correct = net.logits(test.float()).argmax(dim=1) == labels
    fids, drawn = [], []
    for k in range(10):
        rows = train[train_labels == k]
        n = int((labels == k).sum())
        pick = rows[torch.randperm(len(rows), generator=g)[:n]].float()
        drawn.append(pick)
        fids.append(frechet_distance(pick, test[labels == k].float(), net).item())
    overall = frechet_distance(torch.cat(drawn), test.float(), net).item()
    return {
        "guidance": None,
        "sample_class_accuracy": correct.double().mean().item(),
        "accuracy_stderr": correct.double().std().item() / math.sqrt(len(correct)),
        "fid": overall,
        "per_class_fid": sum(fids) / len(fids),
        "per_class": {"fid": fids},
    }


def sweep_row(w: float, quality: ClassQuality, test: Tensor, net: ClassifierFeatures) -> dict:
    accuracy = quality.sample_class_accuracy
    overall = frechet_distance(torch.cat(quality.samples), test.float(), net).item()
    return {
        "guidance": w,
        "sample_class_accuracy": accuracy.value,
        "accuracy_stderr": accuracy.stderr,
        "fid": overall,
        "per_class_fid": quality.per_class_fid.value,
        "per_class": {"accuracy": quality.accuracy.tolist(), "fid": quality.fid.tolist()},
    }


def plot(rows: list[dict], real: dict, path: Path) -> None:
    """FID and per-class FID (left axis) and accuracy (right axis) against w."""
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ws = [r["guidance"] for r in rows]
    ax.plot(ws, [r["fid"] for r in rows], "o-", color="tab:blue", label="FID (all classes)")
    ax.plot(ws, [r["per_class_fid"] for r in rows], "s--", color="tab:blue", label="per-class FID")
    for key in ("fid", "per_class_fid"):
        ax.axhline(real[key], color="tab:blue", lw=0.8, ls=":")
    ax.set_xlabel("guidance scale w")
    ax.set_ylabel("Fréchet distance (digits classifier features)")
    right = ax.twinx()
    right.errorbar(
        ws,
        [r["sample_class_accuracy"] for r in rows],
        yerr=[r["accuracy_stderr"] for r in rows],
        fmt="^-",
        color="tab:red",
        label="accuracy on samples",
    )
    right.axhline(real["sample_class_accuracy"], color="tab:red", lw=0.8, ls=":")
    right.set_ylabel("classifier accuracy on samples", color="tab:red")
    right.set_ylim(0, 1.02)
    handles = [*ax.get_legend_handles_labels()[0], *right.get_legend_handles_labels()[0]]
    labels = [h.get_label() for h in handles]
    ax.legend(
        handles, [*labels[:-1], f"{labels[-1]} (dotted: real data)"], fontsize=8, loc="center right"
    )
    ax.set_title("Classifier-free guidance, conditional DDPM on 8×8 digits")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=600.0, help="training CPU seconds")
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--sampler", default="ancestral")
    parser.add_argument("--steps", type=int, default=250, help="sampler steps")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "guidance_sweep.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(args.seed)
    data = Digits(conditional=True)
    model = build_model("ddpm", data.spec)
    print(f"training {type(model).__name__} for {args.budget:.0f} CPU-s", flush=True)
    training = train(model, data, args)
    net = default_features(data.spec.event_shape, levels=data.spec.levels, name="digits")
    test, labels = data.split("test"), data.conditions("test")
    real = real_data_row(data, net, args.seed)
    rows = []
    for w in args.guidance:
        start = time.process_time()
        quality = class_conditional_quality(
            model,
            test,
            labels,
            net,
            generator=torch.Generator().manual_seed(args.seed + 1),
            guidance=w,
            sampler=args.sampler,
            steps=args.steps,
        )
        rows.append(sweep_row(w, quality, test, net) | {"cpu_seconds": time.process_time() - start})
        r = rows[-1]
        print(
            f"  w = {w:g}: accuracy {r['sample_class_accuracy']:.3f}, FID {r['fid']:.2f}, "
            f"per-class FID {r['per_class_fid']:.2f} ({r['cpu_seconds']:.0f} CPU-s)",
            flush=True,
        )
    print(f"\n{'w':>6} {'accuracy':>15} {'FID':>8} {'per-class FID':>14}")
    for r in [*rows, real]:
        label = "real" if r["guidance"] is None else f"{r['guidance']:g}"
        acc = f"{r['sample_class_accuracy']:.3f} ± {r['accuracy_stderr']:.3f}"
        print(f"{label:>6} {acc:>15} {r['fid']:>8.2f} {r['per_class_fid']:>14.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "guidance_sweep",
        "recipe": {
            "data": "digits (conditional), train 1000 rows, test 447 rows",
            "model": "ddpm defaults (U-Net, linear 1000-step chain, noise prediction)",
            "p_uncond": model.p_uncond,
            "budget_cpu_seconds": args.budget,
            "batch": args.batch,
            "lr": args.lr,
            "lr_schedule": "cosine in CPU time used",
            "sampler": args.sampler,
            "sampler_steps": args.steps,
            "samples_per_class": "as many as the test rows of the class",
            "features": "shipped digits classifier (64 features)",
            "seed": args.seed,
        },
        "training": training,
        "sweep": rows,
        "real_data": real,
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    args.out.write_text(json.dumps(report, indent=2))
    plot(rows, real, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
