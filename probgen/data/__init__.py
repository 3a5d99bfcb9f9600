"""Data sets: toy 2-D shapes, digits, MNIST, text; dequantization and bits/dim."""

from probgen.data.base import SPLITS, ArrayDataset, Dataset

__all__ = ["SPLITS", "ArrayDataset", "Dataset"]
