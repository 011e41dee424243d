"""Progress reads as a person would write it: '1 example', never '1 examples', and a run over
a set counts its examples up ('examples 1–2 of 3', then 'example 3 of 3'), not the size of
each batch ('121 examples' then '16')."""
import re

import pytest

from analyses import AnalysisSpec
from analyses.core.progress import counted, span_of

pytestmark = pytest.mark.usefixtures("private_cache")

IOI_ROWS = [
    {"clean": "When Mary and John went to the store, John gave a drink to",
     "corrupted": "When Mary and John went to the store, Mary gave a drink to", "answer": " Mary", "wrong": " John"},
    {"clean": "When Kate and Fred went to the house, Fred gave a coin to",
     "corrupted": "When Kate and Fred went to the house, Kate gave a coin to", "answer": " Kate", "wrong": " Fred"},
    {"clean": "When Nina and Jack went to the farm, Jack threw a ball to",
     "corrupted": "When Nina and Jack went to the farm, Nina threw a ball to", "answer": " Nina", "wrong": " Jack"},
]


def test_counts_take_their_plural_and_spans_count_up():
    assert counted(1, "example") == "1 example" and counted(2, "example") == "2 examples"
    assert counted(0, "cell") == "0 cells"
    assert span_of(0, 1, 1) == "example 1 of 1"
    assert span_of(0, 121, 137) == "examples 1–121 of 137"
    assert span_of(121, 16, 137) == "examples 122–137 of 137"


def numbers_after(messages, word):
    return [int(m.group(1)) for text in messages for m in [re.search(word + r"s? (\d+)", text)] if m]


def test_a_circuits_progress_counts_its_examples_up_in_words(embedded, monkeypatch):
    from analyses.core.datasets import PromptSet
    from analyses.kinds import circuit

    # a budget that holds one example of these prompts per batch: three batches per stage
    monkeypatch.setattr(circuit, "BUDGET_BYTES", 4 * 2**20)
    messages = []
    spec = AnalysisSpec(kind="circuit", clean=IOI_ROWS[0]["clean"], corrupted=IOI_ROWS[0]["corrupted"],
                        answer=" Mary", wrong=" John", method="eap")
    circuit.run(embedded, spec, lambda fraction, text: messages.append(text))
    assert not any(re.search(r"\b1 examples\b", text) for text in messages), messages
    assert any("running circuits: example 1 of 1" in text for text in messages), messages

    messages.clear()
    prompt_set = PromptSet(name="three", rows=tuple(IOI_ROWS))
    set_spec = AnalysisSpec(kind="circuit", dataset="ioi", method="eap")
    circuit.run_set(embedded, set_spec, prompt_set, lambda fraction, text: messages.append(text))
    scoring = [text for text in messages if text.startswith("scoring edges")]
    assert len(scoring) > 1 and numbers_after(scoring, "example") == sorted(numbers_after(scoring, "example"))
    assert all(" of 3" in text for text in scoring) and not any("1 examples" in text for text in messages)

