"""``probgen sample`` on a text run: a prompt in, readable text out.

A text run is a model that ``generate`` s token sequences (the transformer)
trained on a data set that ``encode`` s and ``decode`` s characters (a
``TextCorpus``). The prompt is encoded with the run's vocabulary (an unknown
character is an error naming it and its position), continued by
``max_new_tokens`` tokens drawn after the logit filters, and decoded back:

    x_{P:P+N} ~ p(· | x_{<P} = prompt, c)   (temperature, top-k, top-p applied)

so the printed text begins with the prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from probgen.core import GenerativeModel, InvalidInput
from probgen.data.base import Dataset
from probgen.models.wrapper import DataWrapper
from probgen.train.config import atomic_write_text

__all__ = ["family", "generate_text", "is_text_run", "write_text"]


def family(model: GenerativeModel) -> GenerativeModel:
    """The family inside the data wrappers ``build_model`` applies."""
    while isinstance(model, DataWrapper):
        model = model.model
    return model


def is_text_run(model: GenerativeModel, dataset: Dataset) -> bool:
    """Whether the run generates text: a family with ``generate`` on a data set with a codec."""
    has_codec = callable(getattr(dataset, "encode", None)) and callable(
        getattr(dataset, "decode", None)
    )
    return has_codec and callable(getattr(family(model), "generate", None))


def generate_text(
    model: GenerativeModel,
    dataset: Any,
    prompt: str,
    max_new_tokens: int,
    n: int,
    generator: torch.Generator,
    condition: torch.Tensor | None = None,
    **filters: Any,
) -> list[str]:
    """``n`` texts: ``prompt`` followed by ``max_new_tokens`` drawn characters each.

    ``filters``: ``temperature``, ``top_k``, ``top_p`` of the family's ``generate``.
    Raises ``InvalidInput`` naming a prompt character outside the vocabulary.
    """
    if n < 1:
        raise InvalidInput(f"-n must be positive, got {n}")
    if max_new_tokens < 0:
        raise InvalidInput(f"--max-new-tokens: expected >= 0, got {max_new_tokens}")
    try:
        ids = dataset.encode(prompt)
    except InvalidInput as e:
        raise InvalidInput(f"--prompt {prompt!r}: {e}") from e
    gpt = family(model)
    gpt.eval()
    with torch.no_grad():
        tokens = gpt.generate(
            n, max_new_tokens, condition, ids, generator=generator, **filters
        ).cpu()
    return [dataset.decode(row) for row in tokens]


def write_text(texts: list[str], path: Path) -> None:
    """The texts, one after another, separated by a blank line; written atomically (UTF-8)."""
    atomic_write_text(path, "\n\n".join(texts) + "\n")
