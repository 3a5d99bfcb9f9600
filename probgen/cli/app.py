"""The ``probgen`` command: list, train, sample, export, evaluate, compare.

Every user error (unknown names, malformed or ill-typed configs, missing or
unreadable files and checkpoints, bad flags) ends the command with exactly
one line ``error: <problem and valid choices>`` on stderr and exit code 2,
never a traceback. Programming errors still show their traceback.
"""

from __future__ import annotations

import inspect
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
import yaml
from rich.console import Console
from safetensors import SafetensorError
from safetensors.torch import save_file
from typer.core import TyperGroup

from probgen.cli.data import data_flags, data_name, other_data
from probgen.cli.listing import KINDS, registry_table
from probgen.cli.metrics import evaluate, metrics_table, write_metrics
from probgen.cli.refine import refine_samples
from probgen.cli.text import generate_text, is_text_run, write_text
from probgen.core import GenerativeModel, InvalidInput, ProbgenError
from probgen.data.base import SPLITS, Dataset
from probgen.evaluate.plots import plot_samples
from probgen.models.wrapper import DataWrapper
from probgen.train import (
    ConfigError,
    RunConfig,
    build,
    fit,
    load_config,
    load_run,
    parse_overrides,
    standardization_record,
)

__all__ = ["EXIT_USER_ERROR", "SAMPLE_FORMATS", "app", "main"]

EXIT_USER_ERROR = 2
"""Exit code of every user error (as for command-line usage errors)."""

DATA_HELP = (
    "A registered data set (see probgen list data) or your own file: .csv, .tsv, .parquet, "
    ".npy, .npz, .safetensors, .txt, or a folder of images (docs/data.md)."
)


_USER_ERRORS = (ProbgenError, yaml.YAMLError, OSError, SafetensorError, typer.TyperException)


class _OneLineErrors(TyperGroup):
    """Runs the command and turns every user error into one line on stderr, exit code 2."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _USER_ERRORS as e:
            message = e.format_message() if isinstance(e, typer.TyperException) else _describe(e)
            typer.echo(f"error: {' '.join(message.split())}", err=True)
            code = EXIT_USER_ERROR
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code if isinstance(code, int) else 0)
        return code


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and not isinstance(e, ProbgenError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__


app = typer.Typer(
    cls=_OneLineErrors,
    help="probgen: train, sample and evaluate generative models on one probabilistic footing.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


def main() -> None:
    """Console-script entry point (``probgen = probgen.cli:main``)."""
    app()


@app.command("list")
def list_(
    kind: Annotated[
        str | None,
        typer.Argument(help="One of: models, data, metrics, samplers (default: all)."),
    ] = None,
    targets: Annotated[bool, typer.Option(help="Also show each module:attribute.")] = False,
) -> None:
    """Show the registered models, data sets, metrics and samplers."""
    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
    console = Console()
    for name, registry in KINDS.items():
        if kind in (None, name):
            console.print(registry_table(name, registry, targets=targets))


@app.command()
def train(
    config_path: Annotated[
        Path | None, typer.Argument(metavar="CONFIG.yaml", help="Run config (YAML).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name (see probgen list).")] = None,
    data: Annotated[str | None, typer.Option(help=DATA_HELP)] = None,
    steps: Annotated[int | None, typer.Option(help="Training rounds.")] = None,
    time_budget: Annotated[float | None, typer.Option(help="Stop after this many s.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per batch.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    name: Annotated[str | None, typer.Option(help="Run name: outputs go to OUT/NAME.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    out: Annotated[Path, typer.Option(help="Folder holding run folders.")] = Path("runs"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in OUT/NAME.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run OUT/NAME.")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any config key, e.g. --set model.options.hidden=[64,64]."),
    ] = None,
    n_samples: Annotated[int, typer.Option(help="Samples for sample metrics/picture.")] = 2000,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a model (YAML config and/or flags; flags win) and write runs/NAME/."""
    overrides = parse_overrides(set_ or [])
    flags = {
        "model.name": model,
        **({} if data is None else data_flags(data)),
        "train.steps": steps,
        "train.time_budget": time_budget,
        "train.batch_size": batch_size,
        "train.lr": lr,
        "seed": seed,
        "name": name,
        "train.device": device,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if resume and config_path is None:
        config_path = out / (name or RunConfig.name) / "config.yaml"
    config = load_config(config_path, overrides)
    run_dir = out / config.name
    _check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if overwrite:
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
        for stale in ("history.json", "metrics.json", "samples.png"):
            (run_dir / stale).unlink(missing_ok=True)
    model_, dataset = _build(config)
    console = Console()
    result = fit(config, run_dir, resume=resume, progress=progress, model=model_, dataset=dataset)
    last = result.history[-1] if result.history else {}
    losses = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if _is_loss(k, v))
    console.print(
        f"trained {config.model.name} on {data_name(config)}: {result.steps} steps in "
        f"{result.wall_time:.1f} s ({result.stop_reason}); final {losses or 'loss n/a'}"
    )
    _report(console, result.model, result.dataset, run_dir, "test", None, n_samples, config.seed)
    console.print(
        f"outputs in {run_dir}/: config.yaml, checkpoint/, history.json, metrics.json, samples.png"
    )


@app.command()
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
        x = _draw(model, n, seed, c, **options).cpu()
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


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (probgen train).")],
    directory: Annotated[Path, typer.Argument(help="The pretrained folder to write.")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the model files of an existing folder.")
    ] = False,
) -> None:
    """Write a run's model as a shareable folder: config.json, model.safetensors, README.md.

    The folder follows the Hugging Face Hub's layout (huggingface_hub.upload_folder
    uploads it); probgen.from_pretrained and probgen sample read it back.
    """
    from probgen.pretrained import load  # the saving code loads only when it runs

    folder = load(run_dir).save_pretrained(directory, overwrite=overwrite)
    Console().print(
        f"wrote {folder}/: config.json, model.safetensors, README.md (the model card); "
        "load it with probgen.from_pretrained"
    )


@app.command("evaluate")
def evaluate_(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by probgen train.")],
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    metrics: Annotated[
        str | None, typer.Option(help="Comma-separated metric names (see probgen list metrics).")
    ] = None,
    n_samples: Annotated[int, typer.Option(help="Samples for sample metrics.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed of the samples.")] = 0,
    max_examples: Annotated[
        int | None,
        typer.Option(help="Score only the first N examples of the split (default: all).", min=1),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Score on other data: a data file or folder (read with the run's file "
            "options) or a registered name; default: the run's data."
        ),
    ] = None,
) -> None:
    """Evaluate a trained run on a split; print a table and update RUN_DIR/metrics.json.

    With --data, the results are kept under SPLIT:FILE in metrics.json, beside the run's own.
    """
    if split not in SPLITS:
        raise typer.BadParameter(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    names = None if metrics is None else [m.strip() for m in metrics.split(",") if m.strip()]
    model, config, dataset = load_run(run_dir)
    record = None
    if data is not None:  # kept beside the run's own results in metrics.json
        dataset = other_data(config, dataset.spec, data)
        record = f"{split}:{Path(data).name}"
    _report(
        Console(),
        model,
        dataset,
        run_dir,
        split,
        names,
        n_samples,
        seed,
        picture=False,
        max_examples=max_examples,
        record=record,
    )


@app.command()
def compare(
    config_path: Annotated[
        Path | None,
        typer.Argument(metavar="CONFIG.yaml", help="Comparison config (default: the built-in)."),
    ] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated model names.")] = None,
    data: Annotated[str | None, typer.Option(help=DATA_HELP)] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(help="Training seconds per model instead of fixed steps (CPU s by default)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Outputs go to OUT/NAME (NAME from the config).")] = (
        Path("runs")
    ),
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing comparison OUT/NAME.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train models on one data set in parallel workers; write report.html, report.md."""
    from probgen.compare import command  # the comparison's imports load only when it runs

    overrides = command.overrides_from_flags(models, data, time_budget)
    command.compare(config_path, out, overrides=overrides, overwrite=overwrite, progress=progress)


def _report(
    console: Console,
    model: GenerativeModel,
    dataset: Dataset,
    run_dir: Path,
    split: str,
    names: list[str] | None,
    n_samples: int,
    seed: int,
    *,
    picture: bool = True,
    max_examples: int | None = None,
    record: str | None = None,
) -> None:
    """Compute metrics, write metrics.json (and samples.png), print the table.

    The results go under ``record`` in metrics.json (default: the split's name).
    """
    n = len(dataset.split(split)[:max_examples])
    with console.status(f"evaluating {type(model).__name__} on {n} {split} examples"):
        results = evaluate(
            model,
            dataset,
            names or None,
            split=split,
            n_samples=n_samples,
            seed=seed,
            max_examples=max_examples,
        )
    record = record or split
    write_metrics(run_dir / "metrics.json", record, results, standardization_record(model))
    console.print(metrics_table(results, f"{record} split ({n} examples)"))
    if picture:
        # a conditional model is drawn at the test rows' conditions, as the picture's data
        conditions = dataset.conditions("test")
        if model.condition_spec is None or conditions is None:
            x = _draw(model, n_samples, seed)
        else:
            conditions = conditions[:n_samples].to(model.device)
            x = _draw(model, len(conditions), seed, conditions)
        _picture(x.cpu(), run_dir / "samples.png", dataset, run_dir.name)


def _build(config: RunConfig) -> tuple[GenerativeModel, Dataset]:
    """``build(config)``, with options the constructors reject reported as a ConfigError.

    Validation checks option names against signatures, but a constructor
    taking ``**options`` (a toy shape's parameters) can only reject them here.
    """
    try:
        return build(config)
    except TypeError as e:
        raise ConfigError(
            f"cannot build model {config.model.name!r} on data {config.data.name!r} with "
            f"options {config.model.options} / {config.data.options}: {e}"
        ) from e


def _load_model(path: Path) -> tuple[GenerativeModel, Dataset | None]:
    """A run folder's model and data set, or a pretrained folder's model and None."""
    from probgen.pretrained import CONFIG_NAME, from_pretrained

    if (path / CONFIG_NAME).is_file() and not (path / "config.yaml").is_file():
        return from_pretrained(path), None
    model, _, dataset = load_run(path)
    return model, dataset


def _check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise typer.BadParameter("--resume and --overwrite exclude each other; choose one")
    exists = (run_dir / "checkpoint").exists()
    if resume and not exists:
        raise typer.BadParameter(f"--resume: no checkpoint in {run_dir} to continue")
    if exists and not (resume or overwrite):
        raise typer.BadParameter(
            f"run {run_dir} already exists; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --name"
        )


def _draw(
    model: GenerativeModel,
    n: int,
    seed: int,
    condition: torch.Tensor | None = None,
    **options: Any,
) -> torch.Tensor:
    generator = torch.Generator(device=model.device).manual_seed(seed)
    model.eval()
    with torch.no_grad():
        return model.sample(n, condition=condition, generator=generator, **options)


def _takes(model: GenerativeModel, option: str) -> bool:
    """Whether the family inside the data wrappers takes ``sample(..., option=)``."""
    while isinstance(model, DataWrapper):
        model = model.model
    return option in inspect.signature(type(model).sample).parameters


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


def _picture(x: torch.Tensor, path: Path, dataset: Dataset | None, title: str) -> None:
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


_SAMPLE_WRITERS = {".png": _picture, ".npy": _write_npy, ".safetensors": _write_safetensors}
SAMPLE_FORMATS = tuple(_SAMPLE_WRITERS)
"""File types ``probgen sample --out`` writes: a picture or the array (key ``samples``)."""


def _is_loss(key: str, value: Any) -> bool:
    return isinstance(value, float) and key not in ("step", "elapsed")
