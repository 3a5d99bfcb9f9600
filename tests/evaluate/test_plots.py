"""Pictures of samples: the right kind of figure per shape, written as a real PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from probgen.core import InvalidInput
from probgen.evaluate.plots import image_grid, plot_samples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    return matplotlib.image.imread(path)


def test_image_grid_places_every_tile_row_by_row() -> None:
    images = np.arange(5 * 2 * 3 * 4, dtype=float).reshape(5, 2, 3, 4)  # (B, C, H, W)
    grid = image_grid(images, ncols=3, fill=-1.0)
    assert grid.shape == (2 * 4 - 1, 3 * 5 - 1, 2)
    for k in range(5):
        r, c = divmod(k, 3)
        tile = grid[r * 4 : r * 4 + 3, c * 5 : c * 5 + 4]
        np.testing.assert_array_equal(tile, images[k].transpose(1, 2, 0))
    assert (grid[3, :, :] == -1).all() and (grid[:, 4, :] == -1).all()  # gaps
    assert (grid[4:, 10:, :] == -1).all()  # the unused sixth tile


def test_scatter_of_points_with_data_behind(tmp_path: Path) -> None:
    picture = _read(plot_samples(torch.randn(300, 2), tmp_path / "a.png", data=torch.randn(500, 2),
                                 title="toy"))  # fmt: skip
    assert picture.ndim == 3 and picture.shape[0] > 100


def test_histogram_of_scalars(tmp_path: Path) -> None:
    _read(plot_samples(np.random.default_rng(0).normal(size=(200, 1)), tmp_path / "h.png"))


@pytest.mark.parametrize("shape", [(10, 1, 8, 8), (10, 3, 6, 6), (10, 8, 8)])
def test_image_grids_beside_data(tmp_path: Path, shape: tuple[int, ...]) -> None:
    x = torch.randint(0, 17, shape).double()
    wide = _read(plot_samples(x, tmp_path / "w.png", data=x, levels=17))
    alone = _read(plot_samples(x, tmp_path / "s.png", levels=17))
    assert wide.shape[1] > alone.shape[1]  # two panels side by side


def test_tokens_are_decoded_as_text(tmp_path: Path) -> None:
    seen: list[list[int]] = []

    def decode(ids: list[int]) -> str:
        seen.append(ids)
        return "".join("ab$c"[i] for i in ids)  # '$' must not start mathtext

    tokens = torch.randint(0, 4, (12, 20))
    _read(plot_samples(tokens, tmp_path / "t.png", decoder=decode))
    assert seen == tokens[:8].tolist()


@pytest.mark.parametrize("shape", [(4, 5), (4, 2, 6, 6), (4, 2, 2, 2, 2)])
def test_unsupported_shapes_are_rejected(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInput, match="plot_samples"):
        plot_samples(torch.zeros(shape), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
