"""How long computations report progress and learn they were cancelled.

An analysis calls `progress(fraction, message)` between batches. The worker's
callback records it for the UI and raises `Cancelled` when the job was
cancelled, so an analysis stops at its next report with no extra checks.
"""
from collections.abc import Callable

Progress = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised inside a computation whose job was cancelled."""


def silent(fraction: float, message: str) -> None:
    """The progress callback of callers who do not watch."""


def counted(n: int, noun: str) -> str:
    """'1 example', '3 examples': a count with its noun (plural by an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def span_of(done: int, size: int, total: int, noun: str = "example") -> str:
    """Which of `total` items a step works on, counting up: 'example 3 of 137' for one,
    'examples 1–121 of 137' for a batch of `size` after `done` finished ones."""
    if size == 1:
        return f"{noun} {done + 1} of {total}"
    return f"{noun}s {done + 1}–{done + size} of {total}"
