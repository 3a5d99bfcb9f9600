"""The comparison's pieces for p(x | c): samples by class, the generative-classifier column."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from probgen.compare.figures import plot_class_samples
from probgen.compare.run import ModelResult
from probgen.compare.table import columns
from probgen.core import ConditionSpec, DataSpec, Estimate, GenerativeModel, Likelihood
from probgen.data.base import ArrayDataset
from probgen.models.flows import MAF

PNG = b"\x89PNG\r\n\x1a\n"


class _ClassMeans(GenerativeModel):
    """x | c = k ~ N(μ_k, I) over events of any shape (points or images)."""

    likelihood = Likelihood.EXACT

    def __init__(self, means: Tensor) -> None:
        super().__init__(tuple(means.shape[1:]))
        self.means = nn.Parameter(means)
        self.condition_spec = ConditionSpec(classes=len(means))

    def sample(self, n: int, condition: Tensor | None = None, generator=None) -> Tensor:
        c = self._condition(condition, n, expand=True)
        noise = torch.randn(n, *self.event_shape, generator=generator, dtype=self.means.dtype)
        return self.means[c] + noise


def _data(shape: tuple[int, ...], levels: int | None) -> ArrayDataset:
    x, c = torch.zeros(4, *shape), torch.tensor([0, 1, 2, 0])
    spec = DataSpec(shape, levels=levels, condition=ConditionSpec(classes=3))
    return ArrayDataset(x, x, x, spec, conditions=(c, c, c))


def test_samples_by_class_for_points_and_images(tmp_path) -> None:
    points = _ClassMeans(torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]))
    path = plot_class_samples(points, _data((2,), None), tmp_path / "p.png", "points")
    assert path is not None and path.read_bytes()[:8] == PNG
    images = _ClassMeans(torch.rand(3, 1, 8, 8) * 16)
    path = plot_class_samples(images, _data((1, 8, 8), 17), tmp_path / "i.png", "images")
    assert path is not None and path.read_bytes()[:8] == PNG
    assert plot_class_samples(MAF((2,)), _data((2,), None), tmp_path / "u.png", "none") is None


def test_the_classifier_column_shows_accuracy_and_calibration() -> None:
    row = ModelResult("m", "maf", "exact")
    row.metrics = {
        "classifier_accuracy": Estimate(0.9234, 0.01, "exact"),
        "classifier_ece": Estimate(0.0123, math.nan, "exact"),
    }
    (column,) = [c for c in columns([row]) if c.key == "classifier"]
    assert column.cell(row) == "92.3% / 0.012"
    assert "classifier" not in [c.key for c in columns([ModelResult("u", "maf", "exact")])]
