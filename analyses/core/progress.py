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
