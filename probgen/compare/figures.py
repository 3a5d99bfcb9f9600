"""The comparison's pictures: samples beside the data, 2-D density heatmaps, training curves.

Every picture is a PNG file drawn with matplotlib's object API (no pyplot
state, no display). Heatmaps show what a model's ``log_prob`` means, labelled
by its likelihood kind:

    exact / estimate   p_θ(x) = exp log p_θ(x)
    bound              exp ELBO(x) ≤ p_θ(x)
    unnormalized       exp(−E_θ(x)) / Ẑ, with Ẑ = Σ_grid exp(−E_θ) ΔA the Riemann
                       sum over the plotted box (the model's own log Z is unknown)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from probgen.core import GenerativeModel, Likelihood, OutOfRangeWarning
from probgen.data.base import Dataset
from probgen.evaluate.likelihood import log_probs
from probgen.evaluate.plots import image_grid, plot_samples

__all__ = [
    "Box",
    "density_grid",
    "heatmap_label",
    "plot_class_samples",
    "plot_density",
    "plot_samples_beside_data",
    "plot_tile",
    "plot_training",
]

_DPI = 80
_HEATMAP_LABELS = {
    Likelihood.EXACT: "p_θ(x)",
    Likelihood.ESTIMATE: "p_θ(x) (estimate)",
    Likelihood.BOUND: "exp ELBO(x) ≤ p_θ(x)",
    Likelihood.UNNORMALIZED: "exp(−E_θ(x)) / Ẑ_grid",
}


class Box:
    """An axis-aligned 2-D box [x0, x1] × [y0, y1] around data, padded by ``pad`` of its size."""

    def __init__(self, data: Tensor, pad: float = 0.1) -> None:
        x = data.detach().double().cpu().reshape(len(data), -1)
        lo, hi = x.min(dim=0).values, x.max(dim=0).values
        margin = pad * (hi - lo).clamp_min(1e-6)
        self.lo, self.hi = (lo - margin).tolist(), (hi + margin).tolist()

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1), matplotlib's ``imshow`` extent."""
        return (self.lo[0], self.hi[0], self.lo[1], self.hi[1])

    def grid(self, resolution: int) -> tuple[Tensor, float]:
        """Cell centres (R², 2), row-major from the bottom row, and the cell area ΔA."""
        axes = [
            torch.linspace(a, b, resolution + 1, dtype=torch.float64)
            for a, b in zip(self.lo, self.hi, strict=True)
        ]
        centres = [(t[1:] + t[:-1]) / 2 for t in axes]
        yy, xx = torch.meshgrid(centres[1], centres[0], indexing="ij")
        area = math.prod((b - a) / resolution for a, b in zip(self.lo, self.hi, strict=True))
        return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1), area


def density_grid(model: GenerativeModel, box: Box, resolution: int) -> np.ndarray:
    """The heatmap values (R, R) of ``model`` on ``box`` (see the module docstring).

    Rows run bottom to top (``imshow(origin="lower")``). Raises
    ``IntractableLikelihood`` for a model without a density.
    """
    points, area = box.grid(resolution)
    with warnings.catch_warnings():  # the grid's corners are no data: extrapolation is the point
        warnings.simplefilter("ignore", OutOfRangeWarning)
        logp = log_probs(model, points).detach().double().cpu()
    if model.likelihood is Likelihood.UNNORMALIZED:
        logp = logp - torch.logsumexp(logp, dim=0) - math.log(area)
    return logp.exp().reshape(resolution, resolution).numpy()


def plot_density(values: np.ndarray, box: Box, path: Path, title: str, label: str) -> Path:
    """Save a heatmap of ``values`` (R, R) over ``box`` with a colour bar labelled ``label``."""
    fig = Figure(figsize=(4.4, 4))
    ax = fig.add_subplot()
    image = ax.imshow(values, origin="lower", extent=box.extent, cmap="magma", aspect="equal")
    fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def heatmap_label(model: GenerativeModel) -> str:
    """What the heatmap of ``model`` shows, by its likelihood kind."""
    return _HEATMAP_LABELS[model.likelihood]


def plot_samples_beside_data(samples: Tensor, dataset: Dataset, path: Path, title: str) -> Path:
    """Samples drawn over (2-D) or beside (images, text) as many examples of the test split."""
    reference = dataset.split("test")[: len(samples)]
    return plot_samples(
        samples,
        path,
        data=reference,
        title=title,
        levels=dataset.spec.levels,
        decoder=getattr(dataset, "decode", None),
    )


TILE_IMAGES = 16
"""Images in a small multiple (a 4 × 4 grid)."""

TILE_POINTS = 1000
"""Points in a small multiple of 2-D data."""


def plot_tile(
    samples: Tensor, dataset: Dataset, box: Box | None, path: Path, title: str
) -> Path | None:
    """One small multiple of the report's sample grid; None for data that is neither.

    Every tile of a comparison has the same size and scale, so tiles side by
    side compare: the first ``TILE_IMAGES`` images in a 4 × 4 grid with
    intensities over the data's levels [0, L − 1] (or [0, 1] for continuous
    images), or the first ``TILE_POINTS`` 2-D points in the data's ``box``
    (required for 2-D data).
    """
    x = samples.detach().double().cpu().numpy()
    fig = Figure(figsize=(2.2, 2.4))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
    if x.ndim in (3, 4) and (x.ndim == 3 or x.shape[1] in (1, 3)):
        images = (x[:, None] if x.ndim == 3 else x)[:TILE_IMAGES]
        levels = dataset.spec.levels
        scale = float(levels - 1) if levels else 1.0
        grid = image_grid(np.clip(images / scale, 0, 1), 4)
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    elif x.ndim == 2 and x.shape[1] == 2 and box is not None:
        points = x[:TILE_POINTS]
        ax.scatter(points[:, 0], points[:, 1], s=1.5, c="tab:blue", alpha=0.5, linewidths=0)
        x0, x1, y0, y1 = box.extent
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
    else:
        return None
    ax.set_xticks([])
    ax.set_yticks([])
    fig.suptitle(title, fontsize=9, y=0.97)
    return _save(fig, path)


def plot_class_samples(
    model: GenerativeModel,
    dataset: Dataset,
    path: Path,
    title: str,
    per_class: int = 8,
    seed: int = 0,
) -> Path | None:
    """Samples of p_θ(x | c) for every class c: one row of images per class, or 2-D points
    coloured by class; None for other data (or a model not conditioned on classes)."""
    spec = model.condition_spec
    if spec is None or not spec.is_classes:
        return None
    generator = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        draws = [
            model.sample(per_class, condition=k, generator=generator).detach().cpu()
            for k in range(spec.classes)
        ]
    x = torch.cat(draws).double().numpy()
    fig = Figure(figsize=(4, 4.4))
    ax = fig.add_subplot()
    ax.set_title(title)
    if x.ndim in (3, 4):  # one row of images per class
        images = x[:, None] if x.ndim == 3 else x
        levels = dataset.spec.levels
        low, high = (0.0, levels - 1.0) if levels else (x.min(), x.max())
        grid = image_grid(np.clip((images - low) / max(high - low, 1e-12), 0, 1), per_class)
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
        ax.set_ylabel("class (top: 0)")
        ax.set_xticks([])
        ax.set_yticks([])
    elif x.ndim == 2 and x.shape[1] == 2:  # points coloured by class
        labels = np.repeat(np.arange(spec.classes), per_class)
        ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
        ax.set_aspect("equal", adjustable="datalim")
    else:
        return None
    return _save(fig, path)


def plot_training(history: Sequence[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Each player's loss and the validation NLL (when recorded) against training seconds.

    ``history`` holds the engine's records (``elapsed``, ``loss/<player>``,
    ``val_nll…``); returns None when it has no loss to draw.
    """
    keys = sorted({k for r in history for k in r if k.startswith("loss/")})
    val_keys = sorted({k for r in history for k in r if k.startswith("val_nll")})
    if not keys:
        return None
    panels = [("training loss", keys), *([("validation NLL (nats)", val_keys)] if val_keys else [])]
    fig = Figure(figsize=(4.4 * len(panels), 3.4))
    for i, (name, group) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key in group:
            points = [(r["elapsed"], r[key]) for r in history if key in r and "elapsed" in r]
            if points:
                t, v = zip(*points, strict=True)
                ax.plot(t, v, lw=1.2, label=key.removeprefix("loss/"))
        ax.set_xlabel("training time (s)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path
