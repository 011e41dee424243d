"""Checks the pipeline tests share: a training stage is done once, and asking for more of it
is refused by name rather than silently redone or skipped."""
import pytest

from analyses.core.errors import UserError
from analyses.dictionaries import formats
from analyses.dictionaries.pipeline import train


def assert_done_once(plan, folder, more, refusal: str) -> None:
    """A second run of `plan` leaves `folder`'s weights byte for byte; the plan `more` (a stage
    asked for more than was done) is refused with a message matching `refusal`."""
    weights = (folder / formats.SPARSIFY_WEIGHTS).read_bytes()
    train(plan)
    assert (folder / formats.SPARSIFY_WEIGHTS).read_bytes() == weights
    with pytest.raises(UserError, match=refusal):
        train(more)
