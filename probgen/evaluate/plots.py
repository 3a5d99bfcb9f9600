"""Pictures of samples: scatter plots, image grids and decoded text, saved to a file.

Drawn with matplotlib's object API (``matplotlib.figure.Figure`` rendered by
the Agg canvas), so no display and no global pyplot state are involved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from probgen.core import InvalidInput

__all__ = ["image_grid", "plot_samples"]

_MAX_POINTS = 5000
_MAX_IMAGES = 64
_MAX_LINES = 8


def plot_samples(
    samples: torch.Tensor | np.ndarray,
    path: str | Path,
    data: torch.Tensor | np.ndarray | None = None,
    title: str | None = None,
    *,
    levels: int | None = None,
    decoder: Callable[[Sequence[int]], str] | None = None,
) -> Path:
    """Save a picture of ``samples`` to ``path`` (format from the suffix, e.g. .png).

    The picture follows the shape of the samples:

    - (B, 2) points: a scatter plot, with ``data`` (N, 2) drawn behind in grey;
    - (B, 1) values: histograms of samples and ``data``;
    - (B, C, H, W) with C = 1 or 3 (or (B, H, W)): an image grid, beside a grid of
      ``data`` when given; intensities span [0, levels - 1] when ``levels`` is
      given, else the range of the samples;
    - (B, T) integer token ids: the first sequences as text, decoded by
      ``decoder`` (ids -> str) when given, else the ids themselves.

    Other shapes raise ``InvalidInput``. Returns the path written.
    """
    x = _numpy(samples)
    ref = None if data is None else _numpy(data)
    path = Path(path)
    if x.ndim == 2 and np.issubdtype(x.dtype, np.integer):
        fig = _text_figure(x, decoder)
    elif x.ndim == 2 and x.shape[1] == 2:
        fig = _scatter_figure(x, ref)
    elif x.ndim == 2 and x.shape[1] == 1:
        fig = _histogram_figure(x, ref)
    elif x.ndim in (3, 4):
        fig = _image_figure(x, ref, levels)
    else:
        raise InvalidInput(
            f"plot_samples: cannot draw samples of shape {x.shape}; expected (B, 1), (B, 2), "
            "(B, H, W), (B, C, H, W) with C in (1, 3), or integer tokens (B, T)"
        )
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def image_grid(images: np.ndarray, ncols: int | None = None, fill: float = 0.5) -> np.ndarray:
    """Tile images (B, C, H, W) into one array (rows·H + gaps, cols·W + gaps, C).

    Tiles are laid out row by row, ``ncols`` per row (default ⌈√B⌉), with
    one-pixel gaps holding ``fill``.
    """
    b, c, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(b))
    nrows = math.ceil(b / ncols)
    grid = np.full((nrows * (h + 1) - 1, ncols * (w + 1) - 1, c), fill, dtype=images.dtype)
    for k, img in enumerate(images):
        r, q = divmod(k, ncols)
        grid[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = img.transpose(1, 2, 0)
    return grid


def _numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _scatter_figure(x: np.ndarray, ref: np.ndarray | None) -> Figure:
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    if ref is not None:
        ref = ref[:_MAX_POINTS]
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.7", alpha=0.5, label="data")
    x = x[:_MAX_POINTS]
    ax.scatter(x[:, 0], x[:, 1], s=2, c="tab:blue", alpha=0.6, label="samples")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", markerscale=4)
    return fig


def _histogram_figure(x: np.ndarray, ref: np.ndarray | None) -> Figure:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    if ref is not None:
        ax.hist(ref[:, 0], bins=60, density=True, color="0.7", alpha=0.7, label="data")
    ax.hist(x[:, 0], bins=60, density=True, color="tab:blue", alpha=0.6, label="samples")
    ax.legend()
    return fig


def _image_figure(x: np.ndarray, ref: np.ndarray | None, levels: int | None) -> Figure:
    panels = [("samples", _as_nchw(x[:_MAX_IMAGES]))]
    if ref is not None:
        panels.insert(0, ("data", _as_nchw(ref[:_MAX_IMAGES])))
    vmin, vmax = (0.0, float(levels - 1)) if levels else (float(x.min()), float(x.max()))
    fig = Figure(figsize=(4 * len(panels), 4.4))
    for k, (name, images) in enumerate(panels):
        ax: Axes = fig.add_subplot(1, len(panels), k + 1)
        scaled = np.clip((images.astype(np.float64) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
        grid = image_grid(scaled)
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
        ax.set_title(name)
        ax.axis("off")
    return fig


def _as_nchw(x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.shape[1] not in (1, 3):
        raise InvalidInput(
            f"plot_samples: images need 1 or 3 channels (B, C, H, W), got shape {x.shape}"
        )
    return x


def _text_figure(x: np.ndarray, decoder: Callable[[Sequence[int]], str] | None) -> Figure:
    decode = decoder or (lambda ids: " ".join(str(i) for i in ids))
    blocks = [f"── sample {k} ──\n{decode(row.tolist())}" for k, row in enumerate(x[:_MAX_LINES])]
    text = "\n".join(blocks)
    height = 0.8 + 0.17 * (text.count("\n") + 1)  # inches: room for a title, then the lines
    fig = Figure(figsize=(10, height))
    fig.text(0.01, 1 - 0.6 / height, text, family="monospace", fontsize=9, va="top",
             parse_math=False)  # fmt: skip
    return fig
