"""A Bayesian flow on 100 points of a 2-D shape: posterior predictive vs the point estimate.

One RealNVP (coupling MLPs, so the local reparameterisation applies) is
trained twice on the same ``--n-train`` exact samples of ``--shape``, with
the same steps, batch and Adam settings:

    point   maximum likelihood, θ̂ = argmax Σ_n log p_θ(x_n)
    bayes   mean-field q(θ) on every weight (Bayes by Backprop), prior N(0, s²),
            maximising ELBO = Σ_n E_q log p_θ(x_n) - KL(q ‖ p)

Reported, on ``--n-test`` fresh exact samples (the held-out "near" set):

    test NLL   -1/n Σ_i log p̂(x_i): p̂ = p_θ̂ for the point estimate, and
               1/S Σ_s p_{θ_s} (θ_s ~ q, S = ``--samples``) for the posterior
               predictive, each with its standard error over test points
    true NLL   -1/n Σ_i log p(x_i) under the exact shape density, the floor
    uncertainty  Var_s[log p_{θ_s}(x)] on the near set and on points on a ring
               of radius ``--far`` (outside the data), medians and quartiles

and a figure: training points over the log predictive density, and the
uncertainty map. Writes ``benchmarks/results/bayes_few_points.{json,png}``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bayes_few_points.py               # 3000 steps
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bayes_few_points.py --steps 600   # short

References: Blundell et al. (2015), "Weight Uncertainty in Neural Networks";
Kingma, Salimans & Welling (2015), "Variational Dropout and the Local
Reparameterization Trick".
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from probgen.bayes import BayesianModel, MeanField
from probgen.core import Estimate, GenerativeModel
from probgen.data.toy import ToyDataset
from probgen.models.flows import RealNVP

RESULTS = Path(__file__).resolve().parent / "results"


def train(model: GenerativeModel, data: Tensor, steps: int, batch: int, lr: float) -> float:
    """Adam on ``model.loss`` over minibatches of ``data``; returns the CPU seconds used."""
    params = [p for p in model.players()["model"] if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(0)
    start = time.process_time()
    for _ in range(steps):
        x = data[torch.randint(len(data), (batch,), generator=g)]
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.process_time() - start


def quartiles(t: Tensor) -> dict[str, float]:
    q = torch.quantile(t, torch.tensor([0.25, 0.5, 0.75], dtype=t.dtype))
    return {"q25": q[0].item(), "median": q[1].item(), "q75": q[2].item()}


def ring(radius: float, n: int) -> Tensor:
    angles = torch.linspace(0, 2 * math.pi, n + 1)[:-1]
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def figure(
    path: Path, bayes: BayesianModel, point: GenerativeModel, data: Tensor, samples: int
) -> None:
    lim = 4.0
    axis = torch.linspace(-lim, lim, 60)
    grid = torch.cartesian_prod(axis, axis)  # (3600, 2), x varies slowest
    with torch.no_grad():
        pred = bayes.predictive(grid, samples=samples)
        point_lp = point.log_prob(grid)
    maps = [
        ("point estimate: log p_θ̂(x)", point_lp.clamp_min(-12)),
        ("posterior predictive: log p(x | data)", pred.log_prob.clamp_min(-12)),
        ("epistemic uncertainty: log10 Var_θ log p_θ(x)", pred.uncertainty.log10()),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, (title, values) in zip(axes, maps, strict=True):
        image = values.reshape(60, 60).T.numpy()
        mesh = ax.imshow(image, origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis")
        ax.scatter(data[:, 0], data[:, 1], s=6, c="white", edgecolors="black", linewidths=0.3)
        ax.set_title(title, fontsize=10)
        fig.colorbar(mesh, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="two_moons")
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--samples", type=int, default=64, help="posterior draws S")
    parser.add_argument("--prior-std", type=float, default=1.0)
    parser.add_argument("--far", type=float, default=4.0, help="radius of the far ring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    data = ToyDataset(args.shape, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    train_x, test_x = data.split("train"), data.split("test")
    far_x = ring(args.far, 64)

    torch.manual_seed(args.seed)
    point = RealNVP((2,), transforms=4, hidden=(32, 32))
    torch.manual_seed(args.seed)
    bayes = BayesianModel(
        RealNVP((2,), transforms=4, hidden=(32, 32)),
        MeanField(prior_std=args.prior_std, init_std=1e-3),
        num_data=len(train_x),
        samples=args.samples,
    )
    cpu = {
        "point": train(point, train_x, args.steps, args.batch, args.lr),
        "bayes": train(bayes, train_x, args.steps, args.batch, args.lr),
    }

    with torch.no_grad():
        true_nll = Estimate.from_samples(-data.truth.log_prob(test_x), kind="exact")
        point_nll = Estimate.from_samples(-point.log_prob(test_x), kind="exact")
        near = bayes.predictive(test_x)
        far = bayes.predictive(far_x)
    bayes_nll = Estimate.from_samples(-near.log_prob, kind=bayes.likelihood.value)
    results: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu_seconds": cpu,
        "test_nll": {
            "true": vars(true_nll),
            "point_estimate": vars(point_nll),
            "posterior_predictive": vars(bayes_nll),
            "posterior_predictive_monte_carlo_stderr": near.mean().stderr,
        },
        "uncertainty": {"near": quartiles(near.uncertainty), "far": quartiles(far.uncertainty)},
        "posterior_mean_std": torch.cat(
            [bayes.posterior.std(n).flatten() for n in bayes.posterior.names]
        )
        .mean()
        .item(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bayes_few_points.json").write_text(json.dumps(results, indent=1))
    figure(args.out / "bayes_few_points.png", bayes, point, train_x, args.samples)

    print(f"{args.shape}, N = {args.n_train}, {args.steps} steps, S = {args.samples}")
    print(f"  test NLL  true            {true_nll}")
    print(f"  test NLL  point estimate  {point_nll}")
    print(f"  test NLL  predictive      {bayes_nll}  (MC se {near.mean().stderr:.4f})")
    u_near, u_far = results["uncertainty"]["near"], results["uncertainty"]["far"]
    print(f"  uncertainty median  near {u_near['median']:.4g}   far {u_far['median']:.4g}")
    print(f"  CPU seconds  point {cpu['point']:.1f}  bayes {cpu['bayes']:.1f}")
    print(f"  wrote {args.out / 'bayes_few_points.json'} and .png")


if __name__ == "__main__":
    main()
