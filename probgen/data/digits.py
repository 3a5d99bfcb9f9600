"""The 8×8 handwritten digits that ship with scikit-learn (UCI optical digits)."""

from __future__ import annotations

import torch
from torch import Tensor

from probgen.core import ConditionSpec, DataSpec
from probgen.data.quantized import QuantizedDataset

__all__ = ["Digits"]

SPLIT_ROWS = {"train": slice(0, 1000), "validation": slice(1000, 1350), "test": slice(1350, None)}
"""Rows of ``load_digits()`` in each split: 1000 / 350 / 447 (Tomczak's protocol)."""


class Digits(QuantizedDataset):
    """1797 grayscale 8×8 digits with 17 intensity levels, values 0…16.

    Splits are the first 1000 rows (train), the next 350 (validation) and the
    last 447 (test) of ``sklearn.datasets.load_digits`` in its stored order,
    the protocol of the examples of Tomczak's book. Events have shape
    ``(1, 8, 8)``; ``spec.levels = 17``. Loaded from the copy inside
    scikit-learn, so no download is needed.

    With ``conditional=True`` the data are pairs (image, digit class):
    ``spec.condition = ConditionSpec(classes=10)``, ``draw`` returns the
    classes of the drawn rows and ``conditions(split)`` is ``labels(split)``.

    References: Alpaydin & Kaynak (1998), "Optical Recognition of Handwritten
    Digits", UCI Machine Learning Repository; Tomczak (2022), "Deep
    Generative Modeling", Springer.
    """

    spec = DataSpec((1, 8, 8), levels=17)
    feature_net = "digits"

    def __init__(self, conditional: bool = False) -> None:
        if conditional:
            self.spec = DataSpec((1, 8, 8), levels=17, condition=ConditionSpec(classes=10))
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype("uint8")).unsqueeze(1)  # (1797, 1, 8, 8)
        targets = torch.from_numpy(digits.target).long()  # (1797,)
        self._images = {name: images[rows] for name, rows in SPLIT_ROWS.items()}
        self._targets = {name: targets[rows] for name, rows in SPLIT_ROWS.items()}

    def stored(self, split: str) -> Tensor:
        self._check_split(split)
        return self._images[split]

    def labels(self, split: str) -> Tensor:
        """The digit class 0…9 of every example of ``split``, shape ``(N,)``, torch.long."""
        self._check_split(split)
        return self._targets[split]
