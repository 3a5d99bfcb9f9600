"""The ``probgen`` command: list, train, sample, export, evaluate, compare.

``sample`` is defined in ``probgen.cli.sample`` and ``compare``'s work in
``probgen.compare.command``; this module registers every command.

Every user error (unknown names, malformed or ill-typed configs, missing or
unreadable files and checkpoints, bad flags) ends the command with exactly
one line ``error: <problem and valid choices>`` on stderr and exit code 2,
never a traceback. Programming errors still show their traceback.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from safetensors import SafetensorError
from typer.core import TyperGroup

from probgen.cli.data import data_flags, data_name, other_data
from probgen.cli.listing import KINDS, registry_table
from probgen.cli.metrics import evaluate, metrics_table, write_metrics
from probgen.cli.sample import SAMPLE_FORMATS, draw, sample, write_picture
from probgen.core import GenerativeModel, ProbgenError
from probgen.data.base import SPLITS, Dataset
from probgen.train import (
    ConfigError,
    RunConfig,
    TrainResult,
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
        f"{result.wall_time:.1f} s ({_stop_text(result)}); final {losses or 'loss n/a'}"
    )
    _report(console, result.model, result.dataset, run_dir, "test", None, n_samples, config.seed)
    console.print(
        f"outputs in {run_dir}/: config.yaml, checkpoint/, history.json, metrics.json, samples.png"
    )


def _stop_text(result: TrainResult) -> str:
    """Why training stopped, in words; a refit names the step count early stopping chose."""
    if result.stop_reason != "refit":
        return result.stop_reason
    if result.best_step == 0:
        return "early stopping kept the model as built: it was best on validation at step 0"
    return f"refit on train + validation for the {result.best_step} steps early stopping chose"


app.command()(sample)


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
            x = draw(model, n_samples, seed)
        else:
            conditions = conditions[:n_samples].to(model.device)
            x = draw(model, len(conditions), seed, conditions)
        write_picture(x.cpu(), run_dir / "samples.png", dataset, run_dir.name)


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


def _is_loss(key: str, value: Any) -> bool:
    return isinstance(value, float) and key not in ("step", "elapsed")
