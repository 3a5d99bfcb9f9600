"""Mode collapse of every adversarial variant (and the EBM) on the PacGAN ring and grid.

Protocol (Lin et al. 2018, PacGAN, Section 5.1, following VEEGAN):

- ring: 8 equal Gaussians at radius 1, σ = 0.01 (``EightGaussians(radius=1.0, std=0.01)``);
- grid: 25 equal Gaussians on {−4, −2, 0, 2, 4}², σ = 0.05
  (``TwentyFiveGaussians(spacing=2.0, std=0.05)``);
- after training, 2,500 samples are scored by ``probgen.evaluate.modes``:
  modes covered (≥ 1 high-quality sample), high-quality fraction (within 3σ of
  the nearest mode) and reverse KL(q̂ ‖ π) of the mode histogram;
- 10 seeds per (variant, data set); mean ± std over seeds (PacGAN's ± are
  standard errors, std/√10; both are in the JSON).

Training: a fresh exact sample of the mixture at every step, float32, one
thread, each player stepped by its own Adam and ``steps_per_round`` as the engine
does, for ``--budget`` CPU seconds (``time.process_time``) per run, with the
learning rate decaying linearly over the budget. Every variant has the same
networks (``NETWORKS``: 3 × 128 ReLU, latent dimension 2), a critic reading
x / (3σ) (``CRITIC_SCALE``) and a batch of 100 examples (25 critic inputs for
PacGAN4). ``--jobs`` runs that many runs at once, one process each; the budgets
are CPU time, so the figures do not depend on it.
Recipes are in ``VARIANTS``; the EBM runs when ``probgen.registry.MODELS``
has ``ebm``.

Corrected variants (``pacgan4_drs``, ``pacgan4_mh``) train exactly as
``pacgan4``, then calibrate a per-example classifier of data against the
frozen generator's proposals G(z) + N(0, σ²) (``CORRECTION``: random Fourier
features at ℓ = 2σ, 2,000 steps of 512 per side) and draw the 2,500 scored
samples by discriminator rejection sampling or independence
Metropolis–Hastings with its logit as ln p_data/q (``probgen.models.gan.refine``).
Their JSON rows say ``"corrected": true``, keep the generator's own figures
under ``uncorrected``, report the CPU seconds of calibration and sampling
beside the training budget, the acceptance rate, and how far the logit is
from the true log-ratio (``ratio_error``, against a kernel density estimate
of the proposals' law).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mode_collapse.py                 # 10 seeds
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mode_collapse.py --variants pacgan4 \
        --seeds 10 --budget 60 --out benchmarks/results/mode_collapse_pacgan4.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mode_collapse.py --variants pacgan4_mh \
        --seeds 10 --budget 30 --out benchmarks/results/mode_collapse_pacgan4_mh.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mode_collapse.py --seeds 3 --budget 10
    .venv/bin/python benchmarks/mode_collapse.py --runs log.txt --budget 10 --seeds 3

Writes ``benchmarks/results/mode_collapse.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from mode_collapse_correction import CORRECTION, Correction, correct
from torch import Tensor

from probgen.core import DataSpec, GenerativeModel
from probgen.distributions import GaussianMixture
from probgen.distributions.shapes import EightGaussians, TwentyFiveGaussians
from probgen.evaluate.modes import assign_modes, mode_metrics_for
from probgen.models.gan import FGAN, GAN, WGAN, WGANGP, IndependenceMetropolisHastings
from probgen.registry import MODELS

RESULTS = Path(__file__).resolve().parent / "results"
MODES = {"ring": 8, "grid": 25}

DATASETS: dict[str, Callable[[], GaussianMixture]] = {
    "ring": lambda: EightGaussians(radius=1.0, std=0.01),
    "grid": lambda: TwentyFiveGaussians(spacing=2.0, std=0.05),
}

# Lin et al. 2018, "PacGAN: The power of two samples in generative adversarial
# networks", NeurIPS, Table 1 (10 trials, mean ± standard error): modes, % high
# quality, reverse KL.
PACGAN_TABLE_1: dict[str, dict[str, tuple[tuple[float, float], ...]]] = {
    "ring": {
        "GAN": ((6.3, 0.5), (98.2, 0.2), (0.45, 0.09)),
        "ALI": ((6.6, 0.3), (97.6, 0.4), (0.36, 0.04)),
        "PacGAN2": ((7.9, 0.1), (95.6, 2.0), (0.07, 0.03)),
        "PacGAN3": ((7.8, 0.1), (97.7, 0.3), (0.10, 0.02)),
        "PacGAN4": ((7.8, 0.1), (95.9, 1.4), (0.07, 0.02)),
    },
    "grid": {
        "GAN": ((17.3, 0.8), (94.8, 0.7), (0.70, 0.07)),
        "ALI": ((24.1, 0.4), (95.7, 0.6), (0.14, 0.03)),
        "PacGAN2": ((23.8, 0.7), (91.3, 0.8), (0.13, 0.04)),
        "PacGAN3": ((24.6, 0.4), (94.2, 0.4), (0.06, 0.02)),
        "PacGAN4": ((24.8, 0.2), (93.6, 0.6), (0.04, 0.01)),
    },
}

# Srivastava et al. 2017, "VEEGAN: Reducing mode collapse in GANs using implicit
# variational learning", NeurIPS, Table 1: modes and % high quality on their 2-D
# ring and grid (no error bars, no reverse KL; their networks and budget).
VEEGAN_TABLE_1: dict[str, dict[str, tuple[float, float]]] = {
    "ring": {
        "GAN": (1.0, 99.3),
        "ALI": (2.8, 0.13),
        "Unrolled GAN": (7.6, 35.6),
        "VEEGAN": (8.0, 52.9),
    },
    "grid": {
        "GAN": (3.3, 0.5),
        "ALI": (15.8, 1.6),
        "Unrolled GAN": (23.6, 16.0),
        "VEEGAN": (24.6, 40.0),
    },
}


# Small MLPs (3 hidden layers of 128 ReLU units, latent dimension 2) for the
# generator and the critic of every variant: on one CPU thread they run about
# 5 times as many rounds per second as PacGAN's 4×400 generator, and a round
# count, not width, is what the CPU budget limits.
NETWORKS: dict[str, Any] = {"latent_dim": 2, "hidden": (128, 128, 128)}

# The critic reads x / ℓ with ℓ = CRITIC_SCALE · σ, σ the modes' standard
# deviation (``critic_scale`` of ``build_networks``): at PyTorch's default
# initialisation an MLP resolves input structure of size ~1, and modes of
# width σ = 0.01 are invisible to it (docs/gan.md). ``--critic-scale 0`` turns
# it off (the critic reads x).
CRITIC_SCALE = 3.0


@dataclass
class Recipe:
    """How one variant is built (``build(event_shape, **networks)``), trained and corrected."""

    build: Callable[..., GenerativeModel]
    networks: dict[str, Any] = field(default_factory=lambda: dict(NETWORKS))
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    steps_per_round: dict[str, int] = field(default_factory=dict)
    batch: int = 100
    critic_scale: float | None = CRITIC_SCALE
    correction: Correction | None = None

    def model(self, truth: GaussianMixture) -> GenerativeModel:
        """A fresh model for ``truth``'s events; the critic reads x / (critic_scale · σ)."""
        options = dict(self.networks)
        if self.critic_scale:
            options["critic_scale"] = self.critic_scale * truth.component_stds.min().item()
        return self.build(truth.event_shape, **options)

    def describe(self) -> dict[str, Any]:
        """The recipe as JSON-ready fields."""
        return {
            "model": repr(self.build),
            "networks": {
                k: list(x) if isinstance(x, tuple) else x for k, x in self.networks.items()
            },
            "critic_scale_in_sigma": self.critic_scale,
            "lr": self.lr,
            "betas": list(self.betas),
            "steps_per_round": self.steps_per_round,
            "batch": self.batch,
            "correction": self.correction.describe() if self.correction else None,
        }


def _wasserstein(build: Callable[..., GenerativeModel], **options: Any) -> Recipe:
    """Several critic steps per generator step with Adam β = (0.5, 0.9) (Gulrajani et al. 2017)."""
    return Recipe(build, betas=(0.5, 0.9), steps_per_round={"critic": 5}, **options)


VARIANTS: dict[str, Recipe] = {
    "gan": Recipe(GAN),
    "gan_minimax": Recipe(partial(GAN, non_saturating=False)),
    **{
        f"fgan_{d}": Recipe(partial(FGAN, divergence=d))
        for d in ("kl", "reverse_kl", "js", "pearson", "hellinger", "total_variation")
    },
    **{f"pacgan{m}": Recipe(partial(GAN, pack=m)) for m in (2, 4)},
    "pacgan4_drs": Recipe(partial(GAN, pack=4), correction=CORRECTION),
    "pacgan4_mh": Recipe(
        partial(GAN, pack=4),
        correction=replace(CORRECTION, sampler=partial(IndependenceMetropolisHastings, steps=1000)),
    ),
    "wgan": _wasserstein(WGAN, lr=5e-4),
    "wgan_gp": _wasserstein(WGANGP),
}
if "ebm" in MODELS:
    VARIANTS["ebm"] = Recipe(
        lambda s: MODELS.get("ebm").for_data(DataSpec(s)),
        networks={},
        betas=(0.9, 0.999),
        critic_scale=None,
    )


def train(
    model: GenerativeModel, truth: GaussianMixture, recipe: Recipe, budget: float, seed: int
) -> int:
    """Step every player with its own Adam for ``budget`` CPU seconds; returns the rounds run.

    The learning rate decays linearly with the CPU time used, from ``recipe.lr``
    to 2% of it at the end of the budget.
    """
    data_rng = torch.Generator().manual_seed(10_000 + seed)
    optimizers = {
        p: torch.optim.Adam(params, lr=recipe.lr, betas=recipe.betas)
        for p, params in model.players().items()
    }
    start = time.process_time()
    rounds = 0
    while (used := time.process_time() - start) < budget:
        for optimizer in optimizers.values():  # linear decay over the budget sharpens the modes
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * max(1.0 - used / budget, 0.02)
        for player, optimizer in optimizers.items():
            for _ in range(recipe.steps_per_round.get(player, 1)):
                x = truth.sample(recipe.batch, generator=data_rng)
                loss = model.loss(x, player)
                model.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        rounds += 1
    return rounds


def distance_quartiles(samples: Tensor, truth: GaussianMixture) -> list[float]:
    """Quartiles of d = min_k ‖x − μ_k‖/σ_k over ``samples``."""
    _, d = assign_modes(samples, truth.means, truth.component_stds)
    quartiles = torch.quantile(d.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return [round(q, 3) for q in quartiles.tolist()]


def recipe_for(variant: str, hidden: tuple[int, ...] | None, critic_scale: float | None) -> Recipe:
    """``VARIANTS[variant]`` with the hidden widths and critic scale (in σ) overridden if given.

    The EBM has no critic; its recipe keeps ``critic_scale=None``.
    """
    recipe = VARIANTS[variant]
    if hidden is not None and "hidden" in recipe.networks:
        recipe = replace(recipe, networks={**recipe.networks, "hidden": hidden})
    if critic_scale is not None and recipe.critic_scale is not None:
        recipe = replace(recipe, critic_scale=critic_scale)
    return recipe


def run(
    variant: str,
    data: str,
    seed: int,
    budget: float,
    n_samples: int,
    hidden: tuple[int, ...] | None = None,
    critic_scale: float | None = None,
) -> dict[str, Any]:
    """Train one (variant, data set, seed) and score ``n_samples`` of its samples.

    Besides the three mode figures, reports the quartiles of the standardised
    distance d = min_k ‖x − μ_k‖/σ of the samples to their nearest mode: a
    generator spreading its mass uniformly along the ring (radial spread σ), or
    uniformly over the grid's square [−5, 5]², has quartiles (9.8, 19.6, 29.3),
    or (11.3, 16.0, 19.5), covers every mode with a reverse KL near 0, and has
    only 7.2%, or 1.7%, high-quality samples. A corrected variant scores its
    corrected samples and keeps the generator's own under ``uncorrected``;
    ``cpu_seconds`` then includes calibration and sampling.
    """
    torch.manual_seed(seed)
    truth = DATASETS[data]().float()
    recipe = recipe_for(variant, hidden, critic_scale)
    model = recipe.model(truth).float()
    start = time.process_time()
    try:
        rounds = train(model, truth, recipe, budget, seed)
        samples = model.sample(n_samples, generator=torch.Generator().manual_seed(seed))
        report: dict[str, Any] = {}
        if recipe.correction is not None:
            report["uncorrected"] = {
                **mode_metrics_for(truth, samples).as_dict(),
                "d_quartiles": distance_quartiles(samples, truth),
            }
            samples, details = correct(model, truth, recipe.correction, n_samples, seed)
            report.update(details)
        report.update(mode_metrics_for(truth, samples).as_dict())
        report["d_quartiles"] = distance_quartiles(samples, truth)
        error = None
    except Exception as e:  # a diverged run is a result too; report it, keep going
        rounds, report, error = -1, {}, f"{type(e).__name__}: {e}"
    return {
        "variant": variant,
        "data": data,
        "seed": seed,
        "rounds": rounds,
        "cpu_seconds": time.process_time() - start,
        **report,
        "error": error,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, std and standard error over seeds of each figure.

    Failed runs (e.g. ``CriticDiverged``) are counted, not averaged; a reverse KL
    of ``inf`` (no high-quality sample at all) is counted under ``collapsed`` and
    left out of the reverse-KL mean, while its 0 modes and 0% still count.
    ``at_target`` counts the runs meeting issue 4's target: every mode, ≥ 95%
    high quality, reverse KL ≤ 0.04. Corrected runs add the CPU seconds of
    calibration + sampling (``correction_cpu_seconds``), the acceptance rate,
    the generator's own high-quality fraction and the ratio's centred error.
    """
    ok = [r for r in runs if r["error"] is None]
    out: dict[str, dict[str, float]] = {
        "failed": {"count": float(len(runs) - len(ok))},
        "collapsed": {"count": float(sum(not math.isfinite(r["reverse_kl"]) for r in ok))},
        "at_target": {
            "count": float(
                sum(
                    r["modes"] == MODES[r["data"]]
                    and r["high_quality"] >= 0.95
                    and r["reverse_kl"] <= 0.04
                    for r in ok
                )
            )
        },
    }
    for r in ok:
        if r.get("corrected"):
            r["correction_cpu_seconds"] = r["calibration_cpu_seconds"] + r["sampling_cpu_seconds"]
            r["uncorrected_high_quality"] = r["uncorrected"]["high_quality"]
            r["ratio_rms_centred"] = r["ratio_error"]["rms_centred"]
    keys = ("modes", "high_quality", "reverse_kl", "cpu_seconds", "correction_cpu_seconds")
    keys += ("acceptance_rate", "uncorrected_high_quality", "ratio_rms_centred")
    for key in keys:
        values = [r[key] for r in ok if key in r and math.isfinite(r[key])]
        if not values:
            continue
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = {
            "mean": statistics.fmean(values),
            "std": std,
            "stderr": std / math.sqrt(len(values)),
        }
    return out


def _cell(summary: dict[str, dict[str, float]], key: str, scale: float, fmt: str) -> str:
    if key not in summary:
        return "—"
    s = summary[key]
    return f"{s['mean'] * scale:{fmt}} ± {s['std'] * scale:{fmt}}"


def table(summaries: dict[str, dict[str, dict[str, dict[str, float]]]], data: str) -> str:
    """Our figures (mean ± std over seeds) with the published ones below them."""
    lines = [
        f"{data} ({MODES[data]} modes)",
        f"{'model':<22}{'modes':>14}{'high quality %':>18}{'reverse KL':>18}"
        f"{'collapsed':>11}{'failed':>8}{'at target':>11}",
    ]
    notes = []
    for variant, per_data in summaries.items():
        s = per_data[data]
        corrected = "correction_cpu_seconds" in s
        lines.append(
            f"{variant + ' *' * corrected:<22}{_cell(s, 'modes', 1, '.1f'):>14}"
            f"{_cell(s, 'high_quality', 100, '.1f'):>18}{_cell(s, 'reverse_kl', 1, '.3f'):>18}"
            f"{int(s['collapsed']['count']):>11}{int(s['failed']['count']):>8}"
            f"{int(s['at_target']['count']):>11}"
        )
        if corrected:
            notes.append(
                f"  * {variant}: corrected samples; before correction "
                f"{_cell(s, 'uncorrected_high_quality', 100, '.1f')}% high quality; "
                f"calibration + sampling {_cell(s, 'correction_cpu_seconds', 1, '.0f')} CPU-s "
                f"beside the training budget; acceptance "
                f"{_cell(s, 'acceptance_rate', 100, '.2f')}%; log-ratio error (centred RMS) "
                f"{_cell(s, 'ratio_rms_centred', 1, '.2f')}"
            )
    lines += notes
    lines.append("published, PacGAN Table 1 (mean ± stderr):")
    for name, (modes, hq, kl) in PACGAN_TABLE_1[data].items():
        lines.append(
            f"  {name:<20}{modes[0]:>8.1f} ± {modes[1]:.1f}{hq[0]:>12.1f} ± {hq[1]:.1f}"
            f"{kl[0]:>12.2f} ± {kl[1]:.2f}"
        )
    lines.append("published, VEEGAN Table 1 (their set-up, no error bars):")
    for name, (modes, hq) in VEEGAN_TABLE_1[data].items():
        lines.append(f"  {name:<20}{modes:>8.1f}{hq:>18.1f}{'—':>18}")
    return "\n".join(lines)


def write(args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    """The JSON of every run so far: recipes, per-run figures, summaries, versions."""
    runs = sorted(runs, key=lambda r: (r["variant"], r["data"], r["seed"]))
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    summaries = {
        v: {
            d: summarise([r for r in runs if r["variant"] == v and r["data"] == d])
            for d in args.data
            if any(r["variant"] == v and r["data"] == d for r in runs)
        }
        for v in variants
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "protocol": "PacGAN ring-8 (r=1, σ=0.01) and grid-25 ({-4..4}², σ=0.05)",
                "budget_cpu_seconds": args.budget,
                "seeds": sorted({r["seed"] for r in runs}),
                "samples": args.samples,
                "threads": args.threads,
                "jobs": args.jobs,
                "recipes": {
                    v: recipe_for(
                        v, tuple(args.hidden) if args.hidden else None, args.critic_scale
                    ).describe()
                    for v in variants
                    if v in VARIANTS
                },
                "summary": summaries,
                "runs": runs,
                "published": {"pacgan_table_1": PACGAN_TABLE_1, "veegan_table_1": VEEGAN_TABLE_1},
                "torch": torch.__version__,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "timestamp": datetime.now(timezone.utc).isoformat(),
            },
            indent=1,
        )
    )


def _run_pinned(task: tuple[Any, ...]) -> dict[str, Any]:
    """``run`` in a worker process pinned to ``threads`` threads."""
    *job, threads = task
    torch.set_num_threads(threads)
    return run(*job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    parser.add_argument("--budget", type=float, default=120.0, help="CPU seconds per run")
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--hidden", type=int, nargs="+", help="hidden widths of every network (default NETWORKS)"
    )
    parser.add_argument(
        "--critic-scale",
        type=float,
        help=f"the critic reads x/(c·σ); 0 = reads x (default c = {CRITIC_SCALE})",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once, each in its own process (CPU budgets)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "mode_collapse.json")
    parser.add_argument(
        "--runs", type=Path, help="summarise the run lines of an earlier log instead of training"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.runs is not None:  # re-summarise the JSON lines an earlier invocation printed
        lines = args.runs.read_text().splitlines()
        runs = [json.loads(line) for line in lines if line.startswith("{")]
        args.variants = list(dict.fromkeys(r["variant"] for r in runs))
        args.data = list(dict.fromkeys(r["data"] for r in runs))
    else:
        hidden = tuple(args.hidden) if args.hidden else None
        tasks = [  # seed-major, so a cut-short benchmark has the same seeds in every cell
            (
                variant,
                data,
                seed,
                args.budget,
                args.samples,
                hidden,
                args.critic_scale,
                args.threads,
            )
            for seed in range(args.first_seed, args.first_seed + args.seeds)
            for variant in args.variants
            for data in args.data
        ]
        runs = []
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            for r in pool.map(_run_pinned, tasks):
                runs.append(r)
                print(json.dumps(r), flush=True)
                write(args, runs)  # an interrupted benchmark keeps every finished run
    summaries = {
        v: {
            d: summarise([r for r in runs if r["variant"] == v and r["data"] == d])
            for d in args.data
        }
        for v in args.variants
    }
    for data in args.data:
        print()
        print(table(summaries, data))

    write(args, runs)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
