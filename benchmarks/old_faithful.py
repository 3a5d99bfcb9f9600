"""Old Faithful in its own units: held-out log-likelihood per point, every family vs scikit-learn.

Protocol (/work/shared/BENCHMARKING.md, "Old Faithful, raw units"): the 272
eruptions (minutes, 1.6–5.1) and waiting times (minutes, 43–96) of
``faithful.csv``, 5-fold cross-validation (``KFold(5, shuffle=True,
random_state=0)``), the held-out log-likelihood per point averaged over all
272 held-out points (each point is held out once), with its standard error.

- probgen: every registered family with a likelihood, built by the engine as
  a user's run is (``probgen.train.fit``: the standardising map fitted on the
  training part, early stopping on by default for small data), 2000 Adam steps
  at batch 128, lr 1e-3, one thread. The training fold is split 80/20 into
  training and validation parts (seeded), so early stopping never sees the
  held-out fold; by default (``train.refit: auto``) the run then refits a
  fresh model for the chosen steps on both parts (``--no-refit``: the
  early-stopped model itself). ``--seeds S`` repeats the whole protocol with S
  seeds (model initialisation, batches and the 80/20 split) and reports the
  mean over seeds with the spread across seeds, since one seed's figure moves
  by ±0.04 here. Flows, MADE, the Gaussian and the diffusion models (the
  probability-flow ODE with an exact divergence) give exact log p(x); the VAE
  a bound (its IWAE-K with K = 1000, labelled "bound"). The EBM's density is
  unnormalised and GANs have none: they get no row.
- ``realnvp``, ``maf``, ``nsf`` (by the engine's small-data default): the flow over a
  learned Gaussian-mixture base started by EM with BIC's number of components
  (``base: mixture``); ``ensemble``: five of the MAF ones trained side by side;
  ``vae``: the VAE started at the same EM mixture (``prior: gmm``, ``start:
  identity``); ``+normal``, ``vae+standard``: the starts of before.
  ``--bound-check K`` also scores bound-only rows by IWAE-K (10 blocks, with the
  Monte Carlo error) to show how tight IWAE-1000 is.
- ``ddpm``, ``score_sde`` (by default here) and ``flow_matching+mixture``: the network
  predicts a residual on the exact prediction of a Gaussian mixture fitted by EM
  with BIC's number of components (``reference: mixture``), so training starts at
  the mixture's density (probability-flow ODE likelihood, exact divergence);
  ``ddpm+none``, ``score_sde+none``: without the reference.
- scikit-learn: ``GaussianMixture`` (full covariances) with k = 1..5 chosen by
  BIC on the whole training fold; SciPy: ``gaussian_kde`` with Scott's rule.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/old_faithful.py --seeds 5
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/old_faithful.py --families maf,nsf --steps 500

Prints a table and writes ``benchmarks/results/old_faithful.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import gaussian_kde
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import KFold

from probgen.core import DataSpec, Likelihood, OutOfRangeWarning
from probgen.data.base import ArrayDataset
from probgen.evaluate.likelihood import IWAEBound, log_probs
from probgen.train import ComponentConfig, RunConfig, TrainConfig, fit

FAMILIES = (
    "gaussian", "realnvp", "maf", "nsf", "ensemble", "made", "vae", "ddpm", "score_sde",
    "flow_matching", "flow_matching+mixture", "realnvp+normal", "maf+normal", "nsf+normal",
    "vae+standard", "ddpm+none", "score_sde+none",
)  # fmt: skip
VARIANTS: dict[str, tuple[str, dict]] = {
    "realnvp+normal": ("realnvp", {"base": "normal"}),
    "maf+normal": ("maf", {"base": "normal"}),
    "nsf+normal": ("nsf", {"base": "normal"}),
    "ensemble": ("ensemble", {"family": "maf", "members": 5}),
    "vae+standard": ("vae", {"prior": "standard", "start": "random"}),
    "vae+gmm_prior": ("vae", {"prior": "gmm", "start": "random"}),
    "ddpm+none": ("ddpm", {"reference": "none"}),
    "score_sde+none": ("score_sde", {"reference": "none"}),
    "flow_matching+mixture": ("flow_matching", {"reference": "mixture"}),
}
"""Rows that are a registered model with options. Plain names are the family with the
engine's defaults, which on data this small (probgen.train.small_data) start the flows,
the ensemble of five MAFs, the VAE and the DDPM / score SDE at the EM/BIC Gaussian mixture
(``base: mixture``; ``prior: gmm, start: identity``; ``reference: mixture``). The
``+normal``, ``+standard`` and ``+none`` rows are the same families with the start the
engine used before (N(0, I) base, standard-normal prior, no reference);
``flow_matching+mixture`` asks for the reference flow matching does not default to;
``vae+gmm_prior`` (not in the default list: −82.4) fits only the prior, by EM, to the
encoder's means at initialisation, which sit close together, so the prior is far too
narrow."""
DATA = Path(os.environ.get("PROBGEN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load_faithful(path: Path) -> np.ndarray:
    """(272, 2) float64: eruptions and waiting, in minutes, from R's faithful.csv."""
    return np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(1, 2), dtype=np.float64)


def gmm_bic(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, int]:
    """Held-out log-likelihoods of the BIC-chosen mixture (k = 1..5), and its k."""
    fits = [GaussianMixture(k, random_state=0).fit(train) for k in range(1, 6)]
    best = min(fits, key=lambda m: m.bic(train))
    return best.score_samples(test), best.n_components


def kde(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Held-out log-likelihoods of SciPy's Gaussian KDE with Scott's bandwidth."""
    return gaussian_kde(train.T).logpdf(test.T)


def probgen_fold(
    family: str,
    train: np.ndarray,
    test: np.ndarray,
    steps: int,
    seed: int,
    refit: bool,
    extra: dict | None = None,
    bound_check: int = 0,
) -> tuple[np.ndarray, dict]:
    """Train ``family`` on 80% of ``train`` (20% validation), score ``test``; (log p, record).

    With ``bound_check`` = K' a bound-only model is also scored by IWAE-K' (``tightness``).
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    n_val = len(train) // 5
    val, fit_part = train[order[:n_val]], train[order[n_val:]]
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    dataset = ArrayDataset(as_tensor(fit_part), as_tensor(val), as_tensor(test), DataSpec((2,)))
    name, options = VARIANTS.get(family, (family, {}))
    config = RunConfig(
        model=ComponentConfig(name, dict(options)),
        data=ComponentConfig("old_faithful"),
        seed=seed,
        train=TrainConfig(
            steps=steps,
            batch_size=128,
            lr=1e-3,
            log_every=100,
            device="cpu",
            eval_every=10,
            refit="auto" if refit else False,
            **(extra or {}),
        ),
    )
    start = time.process_time()
    with tempfile.TemporaryDirectory() as run_dir, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", OutOfRangeWarning)
        result = fit(config, Path(run_dir), progress=False, dataset=dataset)
        train_cpu = time.process_time() - start
        model = result.model
        estimator = IWAEBound(1000) if model.likelihood is Likelihood.BOUND else None
        g = torch.Generator().manual_seed(seed)
        values = log_probs(model, as_tensor(test), estimator=estimator, generator=g)
        check = tightness(model, as_tensor(test), bound_check, seed) if bound_check else None
    record = {
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "best_step": result.best_step,
        "train_cpu_seconds": train_cpu,
        "kind": "bound" if estimator is not None else model.likelihood.value,
        "out_of_range_warnings": [str(w.message) for w in seen],
    }
    if check is not None:
        record["tightness"] = {"iwae_1000": float(values.double().mean()), **check}
    return values.double().cpu().numpy(), record


def tightness(model: torch.nn.Module, test: torch.Tensor, k: int, seed: int) -> dict | None:
    """IWAE-K on ``test`` from R = 10 blocks of K/10 draws, with its Monte Carlo error.

    Block r gives m_r = (1/B) Σ_b w_rb (B = K/10 importance weights); IWAE-K is
    log (1/R) Σ_r m_r, and the delta method gives its standard error
    sd(m_r) / (√R mean(m_r)) per point (reported as the mean over points). The
    raw-unit log-det of the standardising map is the same in every block.
    ``None`` for a model whose likelihood is not a bound.
    """
    if model.likelihood is not Likelihood.BOUND:
        return None
    g = torch.Generator().manual_seed(seed + 7919)
    blocks = torch.stack(
        [log_probs(model, test, estimator=IWAEBound(k // 10), generator=g) for _ in range(10)]
    ).double()  # (R, N): log m_r per point
    estimate = torch.logsumexp(blocks, 0) - math.log(10)
    m = (blocks - blocks.max(0).values).exp()
    se = m.std(0) / (math.sqrt(10) * m.mean(0))
    return {"k": k, "iwae_k": float(estimate.mean()), "se_per_point": float(se.mean())}


def train_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs (YAML values) as TrainConfig keyword arguments."""
    return {k: yaml.safe_load(v) for k, _, v in (p.partition("=") for p in pairs)}


def summary(values: np.ndarray) -> dict:
    """Mean held-out log-likelihood per point and its standard error."""
    return {
        "mean": float(values.mean()),
        "stderr": float(values.std(ddof=1) / math.sqrt(len(values))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="repeats of the whole protocol")
    parser.add_argument("--no-refit", action="store_true", help="keep the early-stopped model")
    parser.add_argument(
        "--train", nargs="*", default=[], metavar="KEY=VALUE",
        help="other train settings, e.g. ema_decay=0.99 (YAML values)",
    )  # fmt: skip
    parser.add_argument(
        "--bound-check", type=int, default=0, metavar="K",
        help="also score bound-only models by IWAE-K (e.g. 100000): how tight IWAE-1000 is",
    )  # fmt: skip
    parser.add_argument("--data", type=Path, default=DATA / "old_faithful" / "faithful.csv")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/old_faithful.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = load_faithful(args.data)
    folds = list(KFold(5, shuffle=True, random_state=0).split(x))
    rows: dict[str, dict] = {}

    held = {"gmm_bic": np.empty(len(x)), "kde_scott": np.empty(len(x))}
    chosen = []
    for train_idx, test_idx in folds:
        held["gmm_bic"][test_idx], k = gmm_bic(x[train_idx], x[test_idx])
        held["kde_scott"][test_idx] = kde(x[train_idx], x[test_idx])
        chosen.append(k)
    rows["sklearn GaussianMixture (BIC)"] = {
        **summary(held["gmm_bic"]),
        "kind": "exact",
        "k": chosen,
    }
    rows["scipy gaussian_kde (Scott)"] = {**summary(held["kde_scott"]), "kind": "exact"}

    for family in args.families.split(","):
        values, records = np.empty((args.seeds, len(x))), []
        for s in range(args.seeds):
            for i, (train_idx, test_idx) in enumerate(folds):
                values[s, test_idx], record = probgen_fold(
                    family,
                    x[train_idx],
                    x[test_idx],
                    args.steps,
                    args.seed + 100 * s + i,
                    refit=not args.no_refit,
                    extra=train_options(args.train),
                    bound_check=args.bound_check,
                )
                records.append(record)
        per_seed = values.mean(axis=1)
        paired = values.mean(axis=0) - held["gmm_bic"]  # per point, seeds averaged
        rows[family] = {
            **summary(values[0]),
            "mean": float(per_seed.mean()),
            "seed_means": per_seed.tolist(),
            "seed_sd": float(per_seed.std(ddof=1)) if args.seeds > 1 else 0.0,
            "minus_gmm": summary(paired),
            "kind": records[0]["kind"],
            "folds": records,
        }
        print(
            f"{family:<30} {rows[family]['mean']:9.3f} ± {rows[family]['stderr']:.3f}"
            f" (seeds {np.round(per_seed, 3).tolist()})",
            flush=True,
        )
        checks = [r["tightness"] for r in records if "tightness" in r]
        if checks:  # folds are equal-sized to within one point: the mean of fold means
            gain = np.mean([c["iwae_k"] - c["iwae_1000"] for c in checks])
            rows[family]["tightness"] = {"k": args.bound_check, "iwae_k_minus_1000": gain}
            print(f"{'':<30} IWAE-{args.bound_check} − IWAE-1000: {gain:+.4f} nats/point")
        _write(args, rows)

    print(
        f"\n{'model':<30} {'held-out log p / point':>24}  {'sd(seeds)':>9}"
        f"  {'minus GMM (paired)':>19}  kind     steps (median)"
    )
    for name, row in sorted(rows.items(), key=lambda r: -r[1]["mean"]):
        steps = [f["steps"] for f in row.get("folds", [])]
        shown = f"{int(np.median(steps))}" if steps else ""
        spread = f"{row['seed_sd']:.3f}" if "seed_sd" in row else ""
        gap = row.get("minus_gmm")
        versus = f"{gap['mean']:+.3f} ± {gap['stderr']:.3f}" if gap else ""
        print(
            f"{name:<30} {row['mean']:>15.3f} ± {row['stderr']:.3f}  {spread:>9}"
            f"  {versus:>19}  {row['kind']:<8} {shown}"
        )
    _write(args, rows)


def _write(args: argparse.Namespace, rows: dict) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "old_faithful",
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "recipe": {
            "folds": "KFold(5, shuffle=True, random_state=0)",
            "steps": args.steps,
            "batch_size": 128,
            "lr": 1e-3,
            "validation": "20% of each training fold",
            "refit": not args.no_refit,
            "train": train_options(args.train),
            "seeds": args.seeds,
            "bound_check": args.bound_check,
            "threads": 1,
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
