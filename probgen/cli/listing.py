"""``probgen list``: what the registries hold, each name with one line about it."""

from __future__ import annotations

import functools
import inspect

from rich.markup import escape
from rich.table import Table

from probgen.registry import DATASETS, METRICS, MODELS, SAMPLERS, Registry

__all__ = ["KINDS", "describe", "registry_table"]

KINDS: dict[str, Registry] = {
    "models": MODELS,
    "data": DATASETS,
    "metrics": METRICS,
    "samplers": SAMPLERS,
}
"""The registries ``probgen list`` shows, by the word that selects one."""


def describe(registry: Registry, name: str) -> str:
    """The first docstring line of the implementation registered under ``name``.

    Bound default arguments are shown first, e.g. ``[shape=8gaussians]``.
    Importing runs the module's code, so any failure is caught and shown as
    ``unavailable: <error>``: one broken module never hides the other names.
    """
    try:
        obj = registry.get(name)
    except Exception as e:  # a listing shows every failure instead of crashing
        return f"unavailable: {type(e).__name__}: {e}"
    bound = ""
    if isinstance(obj, functools.partial):
        bound = "[" + ", ".join(f"{k}={v}" for k, v in obj.keywords.items()) + "] "
        obj = obj.func
    lines = (inspect.getdoc(obj) or "").strip().splitlines()
    return bound + (lines[0] if lines else "")


def registry_table(title: str, registry: Registry, *, targets: bool = False) -> Table:
    """A rich table of ``registry``: name, description, and the import path if ``targets``."""
    table = Table(title=title, title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("description", overflow="fold")
    if targets:
        table.add_column("implementation", style="dim", overflow="fold")
    for name in registry.names():
        row = [name, escape(describe(registry, name))]
        table.add_row(*row, *([registry.target(name)] if targets else []))
    if not registry.names():
        table.add_row("(none registered)", "")
    return table
