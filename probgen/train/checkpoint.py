"""Checkpoints without pickle: safetensors for tensors, JSON for the rest, written atomically."""

from __future__ import annotations

from probgen.core import ProbgenError

__all__ = ["CheckpointError"]


class CheckpointError(ProbgenError, OSError):
    """A checkpoint is missing or unreadable; the message says which file and why."""
