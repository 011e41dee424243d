"""The logit lens's `positions` window: single positions and inclusive ranges, checked when the
spec is made, each error naming the field and what was wrong."""
import pytest

from analyses import AnalysisSpec
from analyses.core import listtext
from analyses.core.errors import SpecError


def test_spans_read_single_positions_and_inclusive_ranges_sorted_once_each():
    assert listtext.spans("12, 3-5, 4") == [3, 4, 5, 12]
    assert listtext.spans("7") == [7]


@pytest.mark.parametrize("text, problem", [("5-3", "runs backwards"), ("a-3", "is not a position"),
                                           ("-2", "is not a position"), ("", "is empty")])
def test_a_bad_window_is_refused_when_the_spec_is_made(text, problem):
    with pytest.raises(SpecError, match=f"positions: .*{problem}"):
        AnalysisSpec(kind="logit_lens", prompt="Hello", positions=text)


def test_the_window_round_trips_through_a_link():
    spec = AnalysisSpec(kind="logit_lens", prompt="Hello there", positions="0, 2-3")
    assert AnalysisSpec.from_query(spec.to_query()) == spec
