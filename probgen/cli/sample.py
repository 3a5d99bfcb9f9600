"""``probgen sample``: draws of a run or a pretrained folder, as a picture, an array or text.

A run folder (``probgen train``) brings its data set, so its samples can be
pictured beside the test data, a text run prints text (``probgen.cli.text``)
and a GAN run can be corrected by a density ratio calibrated on its training
data (``--refine``, ``probgen.cli.refine``); a pretrained folder
(``probgen export``) brings only the model. Conditional runs draw from
p(x | c) at ``--condition``, conditional diffusion runs with classifier-free
guidance of scale ``--guidance``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
import yaml
from rich.console import Console
from safetensors.torch import save_file

from probgen.cli.refine import refine_samples
from probgen.cli.text import family, generate_text, is_text_run, write_text
from probgen.core import GenerativeModel, InvalidInput
from probgen.data.base import Dataset
from probgen.evaluate.plots import plot_samples
from probgen.train import load_run

__all__ = ["SAMPLE_FORMATS", "draw", "sample", "write_picture"]


def sample(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A run folder (probgen train) or a pretrained folder (probgen export)."
        ),
    ],
    n: Annotated[
        int | None, typer.Option("-n", "--n", help="Number of samples (default 64; text: 1).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output file: .png, .npy or .safetensors; .txt for text runs (default: "
            "RUN_DIR/samples.npy, samples.npy here for a pretrained folder)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the samples.")] = 0,
    refine: Annotated[
        str | None,
        typer.Option(
            help="GANs: correct the generator by a density ratio calibrated on the run's "
            "training data: mh (independence Metropolis-Hastings, 1000 proposals per "
            "sample) or rejection (exact, e^M proposals per sample: slow when the "
            "generator is far from the data)."
        ),
    ] = None,
    calibration_steps: Annotated[
        int, typer.Option(help="With --refine: steps calibrating the ratio (512 per side).")
    ] = 2000,
    condition: Annotated[
        str | None,
        typer.Option(
            help="Conditional runs: draw from p(x | c): a class label (3) or a vector "
            "([0.5, 1.0]), parsed as YAML."
        ),
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            help="Conditional diffusion runs: classifier-free guidance of scale w "
            "((1 + w) eps(x, c) - w eps(x); Ho & Salimans 2022)."
        ),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(help="Text runs: the text to continue, e.g. 'ROMEO:'.")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Text runs: characters drawn after the prompt (500).")
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(help="Autoregressive runs: divide the logits by T (0: greedy)."),
    ] = None,
    top_k: Annotated[
        int | None, typer.Option(help="Autoregressive runs: draw among the k likeliest values.")
    ] = None,
    top_p: Annotated[
        float | None,
        typer.Option(help="Autoregressive runs: draw among the likeliest values of mass p."),
    ] = None,
) -> None:
    """Draw samples from a trained run or a pretrained folder: a picture (.png) or an array
    (.npy, .safetensors); text runs print text (or write it to a .txt file)."""
    model, dataset = _load_model(run_dir)
    model.eval()
    filters = {
        k: v
        for k, v in {"temperature": temperature, "top_k": top_k, "top_p": top_p}.items()
        if v is not None
    }
    if filters and not _takes(model, next(iter(filters))):
        raise InvalidInput(
            f"--{next(iter(filters)).replace('_', '-')} applies to autoregressive runs "
            f"(the transformer, MADE, PixelCNN), not to {type(model).__name__}"
        )
    text = dataset is not None and is_text_run(model, dataset)
    if not text and (prompt is not None or max_new_tokens is not None):
        raise InvalidInput(
            "--prompt and --max-new-tokens apply to text runs (a transformer trained on a "
            f"text corpus), not to {type(model).__name__} on "
            + (type(dataset).__name__ if dataset is not None else "a pretrained folder")
        )
    if text and (out is None or out.suffix == ".txt"):
        if guidance is not None or refine is not None:
            raise InvalidInput("--guidance and --refine do not apply to text runs")
        c = None if condition is None else _parse_condition(model, condition)
        generator = torch.Generator(device=model.device).manual_seed(seed)
        new = 500 if max_new_tokens is None else max_new_tokens
        texts = generate_text(model, dataset, prompt or "", new, n or 1, generator, c, **filters)
        if out is None:
            typer.echo("\n\n".join(texts))
        else:
            write_text(texts, out)
            Console().print(f"wrote {len(texts)} text sample(s) of {new} new characters to {out}")
        return
    n = 64 if n is None else n
    out = out or (run_dir if dataset is not None else Path()) / "samples.npy"
    if out.suffix not in SAMPLE_FORMATS:
        raise typer.BadParameter(
            f"cannot write {out.suffix or 'a file without suffix'} ({out}); "
            f"choose one of: {', '.join(SAMPLE_FORMATS)}"
        )
    if n < 1:
        raise typer.BadParameter(f"-n must be positive, got {n}")
    if calibration_steps < 1:
        raise typer.BadParameter(f"--calibration-steps must be positive, got {calibration_steps}")
    c = None if condition is None else _parse_condition(model, condition)
    note = "" if condition is None else f" given c = {condition}"
    if guidance is not None:
        if c is None or not _takes(model, "guidance"):
            raise InvalidInput(
                "--guidance applies to conditional diffusion runs, given --condition"
            )
        note += f", guidance w = {guidance:g}"
    if refine is None:
        options = filters if guidance is None else {"guidance": guidance, **filters}
        x = draw(model, n, seed, c, **options).cpu()
    elif dataset is None:
        raise InvalidInput(
            "--refine calibrates on the run's training data: pass a run folder, not a "
            "pretrained one"
        )
    else:
        with Console().status(f"calibrating the density ratio ({calibration_steps} steps)"):
            refined = refine_samples(model, dataset, refine, n, calibration_steps, seed)
        x = refined.samples.cpu()
        note = f" ({refine}-corrected, acceptance {refined.acceptance_rate:.3g})"
    out.parent.mkdir(parents=True, exist_ok=True)
    _SAMPLE_WRITERS[out.suffix](x, out, dataset, f"{n} samples from {run_dir.name}{note}")
    Console().print(f"wrote {n} samples of shape {tuple(x.shape[1:])} to {out}{note}")


def _load_model(path: Path) -> tuple[GenerativeModel, Dataset | None]:
    """A run folder's model and data set, or a pretrained folder's model and None."""
    from probgen.pretrained import CONFIG_NAME, from_pretrained

    if (path / CONFIG_NAME).is_file() and not (path / "config.yaml").is_file():
        return from_pretrained(path), None
    model, _, dataset = load_run(path)
    return model, dataset


def draw(
    model: GenerativeModel,
    n: int,
    seed: int,
    condition: torch.Tensor | None = None,
    **options: Any,
) -> torch.Tensor:
    """``model.sample(n, condition=, **options)`` in eval mode, without gradients, seeded."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    model.eval()
    with torch.no_grad():
        return model.sample(n, condition=condition, generator=generator, **options)


def _takes(model: GenerativeModel, option: str) -> bool:
    """Whether the family inside the data wrappers takes ``sample(..., option=)``."""
    return option in inspect.signature(type(family(model)).sample).parameters


def _parse_condition(model: GenerativeModel, text: str) -> torch.Tensor:
    """``--condition``'s text (YAML: a label or a list) as one condition of ``model``'s spec."""
    spec = model.condition_spec
    if spec is None:
        raise InvalidInput(f"--condition: {type(model).__name__} is unconditional")
    value = yaml.safe_load(text)
    if spec.is_classes:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(
                f"--condition: expected a class label 0..{spec.classes - 1}, got {text!r}"
            )
        return spec.expand(value, 1)[0].to(model.device)
    try:
        vector = torch.as_tensor(value, dtype=torch.get_default_dtype())
    except (TypeError, ValueError, RuntimeError) as e:
        raise InvalidInput(
            f"--condition: expected a vector of shape {spec.shape}, got {text!r}"
        ) from e
    return spec.expand(vector, 1)[0].to(model.device)


def write_picture(x: torch.Tensor, path: Path, dataset: Dataset | None, title: str) -> None:
    """The samples' picture, beside the test data of ``dataset`` (None: the samples alone)."""
    plot_samples(
        x,
        path,
        data=None if dataset is None else dataset.split("test")[: len(x)],
        title=title,
        levels=None if dataset is None else dataset.spec.levels,
        decoder=getattr(dataset, "decode", None),
    )


def _write_npy(x: torch.Tensor, path: Path, dataset: Dataset | None, title: str) -> None:
    np.save(path, x.numpy())


def _write_safetensors(x: torch.Tensor, path: Path, dataset: Dataset | None, title: str) -> None:
    save_file({"samples": x.contiguous()}, str(path))


_SAMPLE_WRITERS = {".png": write_picture, ".npy": _write_npy, ".safetensors": _write_safetensors}
SAMPLE_FORMATS = tuple(_SAMPLE_WRITERS)
"""File types ``probgen sample --out`` writes: a picture or the array (key ``samples``)."""
