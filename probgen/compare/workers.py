"""Parallel worker processes for a comparison: one per core, one intra-op thread each.

A comparison's families are small models whose steps do not gain from a
second thread (docs/training.md), so the cores are used by running families
side by side, each in its own process with ``torch.set_num_threads(1)``.
Processes are started with ``spawn`` (a fresh interpreter: no forked torch
thread pools or locks), so the function and its arguments must be picklable
(module-level functions, dataclasses). Results come back in the order of
the items, whichever finishes first.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import TypeVar

import torch

__all__ = ["map_in_processes"]

Item = TypeVar("Item")
Result = TypeVar("Result")


def _one_thread() -> None:
    torch.set_num_threads(1)


def map_in_processes(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    *,
    on_error: Callable[[Item, BaseException], Result],
    on_done: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    """``[function(item) for item in items]`` in ``workers`` spawned processes.

    ``on_done`` is called in this process as each result arrives; a call that
    raises here (a worker that died, an unpicklable result) gives
    ``on_error(item, error)`` in its place, so the other items go on.
    """
    context = multiprocessing.get_context("spawn")
    results: dict[int, Result] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        futures: dict[Future[Result], int] = {
            pool.submit(function, item): i for i, item in enumerate(items)
        }
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as error:  # the item's failure, reported in its place
                results[i] = on_error(items[i], error)
            on_done(results[i])
    return [results[i] for i in range(len(items))]
