"""The ``probgen`` command line: ``list``, ``train``, ``sample``, ``evaluate`` (see docs/cli.md)."""

from probgen.cli.app import app, main

__all__ = ["app", "main"]
