"""A rich progress bar for the training loop: steps, steps/s, and each player's latest loss."""

from __future__ import annotations

from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["TrainingProgress"]


class _StepsPerSecond(ProgressColumn):
    """Speed of the task in steps per second (blank until rich has measured it)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} steps/s", style="progress.data.speed")


class TrainingProgress:
    """Context manager around a rich ``Progress``; a no-op when ``enabled`` is false.

    ``advance()`` after every round; ``show(losses)`` when new losses are logged.
    """

    def __init__(self, total: int, initial: int, *, enabled: bool, description: str) -> None:
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _StepsPerSecond(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
            )
            self._task = self._progress.add_task(
                description, total=total, completed=initial, losses=""
            )

    def __enter__(self) -> TrainingProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self) -> None:
        """One more round done."""
        if self._progress is not None:
            self._progress.advance(self._task)

    def show(self, losses: dict[str, float]) -> None:
        """Display the latest loss of every player."""
        if self._progress is not None:
            text = "  ".join(f"{name} {value:.4g}" for name, value in losses.items())
            self._progress.update(self._task, losses=text)
