"""Simulation-based inference: amortised posterior estimation p(θ | x) against sbi's NPE.

A probgen conditional flow is trained on simulated pairs (θ, x) as a model of θ
given the condition x (``build_model`` standardises θ and x on the training
split), then drawn from at each of sbibm's ten observations x_o. Its samples
are scored by the classifier two-sample test against sbibm's reference
posterior samples of that observation (``probgen.evaluate.two_sample.c2st``:
sbibm's MLP recipe; 0.5 is indistinguishable, 1 disjoint), and the ten
accuracies are averaged. sbi's NPE (Greenberg et al. 2019) is trained on the
same files, in its own environment (``benchmarks/sbi_peer.py npe``), and its
samples are scored by the same function on the same reference rows.

Tasks: ``gaussian_linear`` (θ ∈ R¹⁰, x | θ ~ N(θ, 0.1 I), prior N(0, 0.1 I))
and ``two_moons`` (θ ∈ [−1, 1]², bimodal posterior), as defined by sbibm;
budgets 10³, 10⁴ and 10⁵ simulations. The observations, the reference samples
and the training pairs come from sbibm (``benchmarks/sbi_peer.py reference``,
sbibm's prior and simulator, seed 1000·seed + budget), so both sides train on
one file per (task, budget, seed).

Recipe, the same on both sides (sbi's defaults): batch 200, Adam lr 5e-4,
gradient norm clipped at 5, 10 % of the pairs held out for validation,
stopping after 20 epochs without a better validation loss and keeping the
best weights; one thread per process. probgen: the engine (``fit``) on the
``arrays`` data set of the file, each family of ``--families`` with the
library's defaults (NSF: 5 autoregressive rational-quadratic spline layers,
8 bins, MADE conditioners 64-64; MAF: 5 affine MADE layers, 64-64), the
validation once per epoch and the library's ``refit: auto`` (on ≤ 10 000
training pairs, i.e. at 10³ and 10⁴, the early-stopped run is followed by a
fresh model trained for its best step count on training and validation
together, and that refit is in the training time; ``--train-options
'{"refit": false}'`` gives sbi's procedure exactly). sbi: ``NPE(prior)`` with
its default density estimator (an nflows MAF, 5 transforms of 50-50 tanh
units). Samples outside the prior's support
(two_moons' box) are redrawn on both sides, as sbi's ``DirectPosterior`` does.
Times are training only (no sampling, and no library imports: lightning_fabric,
which the engine imports on first use, is imported before the clock as sbi's
side imports sbi), in CPU seconds (``time.process_time``
of the training process) and wall seconds; the sides alternate (A B, B A, …)
so machine load falls on both.

``--c2st-samples`` posterior and reference rows per observation go into each
C2ST (sbibm uses 10 000; fewer weaken the classifier equally on both sides and
cost much less: the MLP runs up to 1000 epochs when the sets are close).
``--phase train`` trains and samples every side and writes ``--out`` without
C2ST; ``--phase score`` then adds the C2ST of the rows in ``--out``, in a
process of its own. Each side's samples and training record are kept in
``--samples-dir``; a side whose files exist there is not retrained, so a cut
run resumes where it stopped.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. .venv/bin/python benchmarks/sbi.py \\
        --sbibm-python /work/venvs/sbibm/bin/python --sbi-python /work/venvs/sbi/bin/python

References: Lueckmann, Boelts, Greenberg, Gonçalves & Macke (2021),
"Benchmarking simulation-based inference" (sbibm); Papamakarios & Murray
(2016), "Fast ε-free inference of simulation models with Bayesian conditional
density estimation"; Greenberg, Nonnenmacher & Macke (2019), "Automatic
posterior transformation for likelihood-free inference"; Durkan, Bekasov,
Murray & Papamakarios (2019), "Neural spline flows".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning_fabric  # noqa: F401  (imported before any clock starts, as sbi's side imports sbi)
import numpy as np
import torch
from torch import Tensor

from probgen.evaluate.two_sample import c2st
from probgen.train import fit
from probgen.train.config import ComponentConfig, RunConfig, TrainConfig, atomic_write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TASKS = ("gaussian_linear", "two_moons")
BATCH, LR, CLIP, VALIDATION, PATIENCE = 200, 5e-4, 5.0, 0.1, 20
"""sbi's training defaults (``NeuralInference.train``), used on both sides."""
BOX = {"two_moons": 1.0}
"""Tasks whose prior is uniform on [−b, b]^P: samples outside are redrawn."""


def prepare(args: argparse.Namespace) -> None:
    """sbibm's observations, reference samples and training pairs, unless already written."""
    for task in args.tasks:
        files = [args.data / task / f"pairs_{n}_{s}.npz" for n in args.budgets for s in args.seeds]
        if (args.data / task / "reference.npy").is_file() and all(f.is_file() for f in files):
            continue
        command = [str(args.sbibm_python), str(HERE / "sbi_peer.py"), "reference", "--task", task]
        command += ["--budgets", *map(str, args.budgets), "--seeds", *map(str, args.seeds)]
        subprocess.run([*command, "--out", str(args.data)], check=True, env=_one_thread())


def _one_thread() -> dict[str, str]:
    """The peers' environment: one thread, and no PYTHONPATH (they never import probgen)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def in_support(task: str, theta: Tensor) -> Tensor:
    """Whether each row of θ (S, P) lies in the prior's support, (S,)."""
    bound = BOX.get(task)
    if bound is None:
        return torch.ones(len(theta), dtype=torch.bool)
    return (theta.abs() <= bound).all(1)


def draw(model: Any, task: str, x_o: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n draws from the model's p(θ | x_o) within the prior's support, (n, P)."""
    kept: list[Tensor] = []
    total = 0
    while total < n:
        with torch.no_grad():
            theta = model.sample(n, condition=x_o, generator=generator)
        theta = theta[in_support(task, theta)]
        kept.append(theta)
        total += len(theta)
    return torch.cat(kept)[:n]


def probgen_side(
    args: argparse.Namespace, family: str, task: str, pairs: Path, obs: Tensor, seed: int
) -> dict:
    """Train ``family`` by the engine on the pairs file; posterior samples at each x_o."""
    n_train = len(np.load(pairs)["x"]) - int(VALIDATION * len(np.load(pairs)["x"]))
    train = TrainConfig(
        steps=10**9,
        batch_size=BATCH,
        lr=LR,
        grad_clip=CLIP,
        early_stopping=True,
        patience=PATIENCE,
        eval_every=-(-n_train // BATCH),  # validate once per epoch, as sbi does
        threads=1,
        device="cpu",
        log_every=10**6,
        **args.train_options,
    )
    data = {"path": str(pairs), "conditions": str(pairs), "validation": VALIDATION, "test": 0.0}
    config = RunConfig(
        model=ComponentConfig(family, dict(args.family_options.get(family, {}))),
        data=ComponentConfig("arrays", data),
        name=f"sbi-{task}",
        seed=seed,
        train=train,
    )
    with tempfile.TemporaryDirectory() as run_dir:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fit(config, Path(run_dir), progress=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    model = result.model.eval()
    generator = torch.Generator().manual_seed(seed)
    start = time.process_time()
    samples = torch.stack([draw(model, task, o, args.samples, generator) for o in obs])
    return {
        "samples": samples,
        "train_cpu_seconds": cpu,
        "train_wall_seconds": wall,
        "sample_cpu_seconds": time.process_time() - start,
        "steps": result.steps,
        "best_step": result.best_step,
        "stop_reason": result.stop_reason,
        "parameters": sum(p.numel() for p in model.parameters()),
        "validation": [[r["step"], r["val_nll"]] for r in result.history if "val_nll" in r],
    }


def sbi_side(args: argparse.Namespace, task: str, pairs: Path, seed: int) -> dict:
    """sbi's NPE on the same pairs file, in sbi's environment (``sbi_peer.py npe``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "samples.npy"
        command = [str(args.sbi_python), str(HERE / "sbi_peer.py"), "npe", "--task", task]
        command += [
            "--pairs",
            str(pairs),
            "--observations",
            str(args.data / task / "observations.npy"),
        ]
        command += ["--samples", str(args.samples), "--seed", str(seed), "--out", str(out)]
        # cwd: sbi writes its TensorBoard logs to ./sbi-logs
        done = subprocess.run(
            command, check=True, capture_output=True, text=True, env=_one_thread(), cwd=tmp
        )
        record = json.loads(done.stdout.strip().splitlines()[-1])
        record["samples"] = torch.from_numpy(np.load(out))
    return record


def score(samples: Tensor, reference: Tensor, n: int, seed: int) -> list[float]:
    """C2ST accuracy of each observation's first n samples against its first n reference rows."""
    return [c2st(s[:n], r[:n], seed=seed).value for s, r in zip(samples, reference, strict=True)]


def side_files(args: argparse.Namespace, task: str, budget: int, seed: int, side: str):
    """Where one side's posterior samples (.npy) and training record (.json) are kept."""
    stem = args.samples_dir / f"{task}_{budget}_{seed}_{side}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def train_side(args: argparse.Namespace, task: str, budget: int, seed: int, side: str) -> dict:
    """One side's training record; its samples saved beside it (kept files are reused)."""
    samples_file, record_file = side_files(args, task, budget, seed, side)
    if samples_file.is_file() and record_file.is_file():  # a cut run resumes here
        return json.loads(record_file.read_text())
    pairs = args.data / task / f"pairs_{budget}_{seed}.npz"
    if side == "sbi":
        record = sbi_side(args, task, pairs, seed)
    else:
        obs = torch.from_numpy(np.load(args.data / task / "observations.npy"))
        record = probgen_side(args, side.removeprefix("probgen-"), task, pairs, obs, seed)
    samples = record.pop("samples").double().numpy()
    samples_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = samples_file.with_name(samples_file.name + ".tmp.npy")
    np.save(tmp, samples)
    os.replace(tmp, samples_file)
    record["load_average"] = os.getloadavg()
    write(record_file, record)
    return record


def gaussian_fit_kl(samples: np.ndarray, x_o: np.ndarray) -> float:
    """KL(N(m, S) ‖ N(x_o/2, 0.05 I)) of the Gaussian fitted to samples (S, P) of gaussian_linear.

    With prior N(0, 0.1 I) and x | θ ~ N(θ, 0.1 I) the posterior is N(x_o/2, 0.05 I):
    KL = ½ [tr S / v + ‖m − μ‖² / v − P + P log v − log det S], v = 0.05.
    """
    v, mean, cov = 0.05, samples.mean(0), np.cov(samples.T)
    p = len(mean)
    gap = float(((mean - x_o / 2) ** 2).sum())
    return 0.5 * (np.trace(cov) / v + gap / v - p + p * np.log(v) - np.linalg.slogdet(cov)[1])


def score_side(args: argparse.Namespace, row: dict, side: str) -> None:
    """The C2ST of one side's saved samples against the reference, into ``row[side]``.

    The figures also go into the side's record in ``--samples-dir``, so a side
    scored once at this size (e.g. sbi's, shared by several probgen runs) is not
    scored again.
    """
    samples_file, record_file = side_files(args, row["task"], row["budget"], row["seed"], side)
    kept = json.loads(record_file.read_text())
    if kept.get("c2st_samples") == args.c2st_samples:
        row[side].update({k: v for k, v in kept.items() if k.startswith(("c2st", "gaussian"))})
        return
    reference = torch.from_numpy(np.load(args.data / row["task"] / "reference.npy"))
    start = time.process_time()
    samples = torch.from_numpy(np.load(samples_file))
    per_obs = score(samples, reference, args.c2st_samples, row["seed"])
    scored: dict[str, Any] = {
        "c2st_per_observation": per_obs,
        "c2st": float(np.mean(per_obs)),
        "c2st_samples": args.c2st_samples,
        "c2st_cpu_seconds": time.process_time() - start,
    }
    if row["task"] == "gaussian_linear":  # the closed-form posterior, beside the C2ST
        obs = np.load(args.data / "gaussian_linear" / "observations.npy")
        kls = [gaussian_fit_kl(s, o) for s, o in zip(samples.numpy(), obs, strict=True)]
        scored["gaussian_fit_kl"] = float(np.mean(kls))
    row[side].update(scored)
    write(record_file, {**kept, **scored})


def run_pair(args: argparse.Namespace, task: str, budget: int, seed: int, flip: bool) -> dict:
    """Both sides on one (task, budget, seed), in the order A B or B A; scored unless told not."""
    order = [f"probgen-{family}" for family in args.families] + ["sbi"]
    order = order[::-1] if flip else order
    row: dict[str, Any] = {"task": task, "budget": budget, "seed": seed, "order": order}
    for side in order:
        row[side] = train_side(args, task, budget, seed, side)
    if args.phase == "all":
        for side in order:
            score_side(args, row, side)
    return row


def table(rows: list[dict], families: list[str]) -> str:
    """Markdown table of the rows: C2ST and training CPU (wall) seconds of each side."""
    sides = [f"probgen-{f}" for f in families] + ["sbi"]
    head = ["task", "simulations", "seed"]
    head += [f"{s} C2ST" for s in sides] + [f"{s} train CPU-s (wall)" for s in sides]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["task"], f"{r['budget']:,}", str(r["seed"])]
        cells += [f"{r[s]['c2st']:.3f}" if "c2st" in r[s] else "—" for s in sides]
        cells += [
            f"{r[s]['train_cpu_seconds']:.1f} ({r[s]['train_wall_seconds']:.0f})" for s in sides
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(path: Path, payload: dict) -> None:
    """JSON written atomically (a temporary file renamed into place)."""
    atomic_write_text(path, json.dumps(payload, indent=2))


SAMPLES_DIR = Path("/work/sbi-bench/samples")
"""Where each side's posterior samples and training record are kept, unless told otherwise."""


def score_rows(args: argparse.Namespace) -> None:
    """The C2ST of every side of every row in ``args.out`` not yet scored at this size."""
    payload = json.loads(args.out.read_text())
    for row in payload["rows"]:
        for side in row["order"]:
            if row[side].get("c2st_samples") != args.c2st_samples:
                score_side(args, row, side)
                payload["recipe"]["c2st_samples"] = args.c2st_samples
                write(args.out, payload)  # after every side: a cut run keeps what it scored
        print(table([row], payload["recipe"]["families"]).splitlines()[-1], flush=True)
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sbibm-python", type=Path, default=Path("/work/venvs/sbibm/bin/python"))
    parser.add_argument("--sbi-python", type=Path, default=Path("/work/venvs/sbi/bin/python"))
    parser.add_argument("--data", type=Path, default=Path("/work/sbi-bench/data"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--families",
        nargs="*",
        default=["nsf", "maf"],
        help="probgen families; none: sbi alone (its files then serve later probgen runs)",
    )
    parser.add_argument(
        "--family-options",
        type=json.loads,
        default={},
        help='JSON per family, e.g. {"nsf": {"transforms": 5}}',
    )
    parser.add_argument(
        "--train-options",
        type=json.loads,
        default={},
        help='JSON of probgen TrainConfig keys over the recipe, e.g. {"refit": false}',
    )
    parser.add_argument("--samples", type=int, default=10_000, help="posterior draws per x_o")
    parser.add_argument("--c2st-samples", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "sbi.json")
    parser.add_argument(
        "--phase",
        choices=("all", "train", "score"),
        default="all",
        help="train: train and sample, save (no C2ST); score: the C2ST of the rows in --out",
    )
    parser.add_argument(
        "--samples-dir",
        type=Path,
        default=None,
        help="each side's samples and training record; kept files are reused, not retrained "
        f"(default {SAMPLES_DIR}; --phase score: the directory --out was trained with)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    if args.phase == "score":
        if args.samples_dir is None:  # score the samples this --out was trained on
            recipe = json.loads(args.out.read_text())["recipe"]
            args.samples_dir = Path(recipe.get("samples_dir", SAMPLES_DIR))
        score_rows(args)
        return
    args.samples_dir = SAMPLES_DIR if args.samples_dir is None else args.samples_dir
    prepare(args)
    rows: list[dict] = []
    payload: dict[str, Any] = {
        "benchmark": "sbi",
        "recipe": {
            "batch": BATCH, "lr": LR, "grad_clip": CLIP, "validation": VALIDATION,
            "patience_epochs": PATIENCE, "families": args.families,
            "family_options": args.family_options, "train_options": args.train_options,
            "samples": args.samples, "samples_dir": str(args.samples_dir),
            "c2st_samples": args.c2st_samples, "observations": 10,
            "command": " ".join(sys.argv),
        },
        "versions": {
            "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "threads": torch.get_num_threads(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
    }  # fmt: skip
    k = 0
    for seed in args.seeds:
        for budget in args.budgets:
            for task in args.tasks:
                rows.append(run_pair(args, task, budget, seed, flip=bool(k % 2)))
                k += 1
                payload["load_average"] = os.getloadavg()
                write(args.out, payload)  # after every pair: a cut run keeps what it measured
                print(table(rows[-1:], args.families).splitlines()[-1], flush=True)
    print(table(rows, args.families))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
