"""A set's examples table: each example's inputs and its prompt's length (`n_tokens`), for
every kind that runs over a set (direct logit attribution's showed None)."""
import pytest
from test_progress_messages import IOI_ROWS

from analyses import AnalysisSpec

pytestmark = pytest.mark.usefixtures("private_cache")


def test_a_dla_sets_examples_table_gives_each_prompts_length(embedded):
    """`n_tokens` in the examples table is each prompt's token count (it showed None)."""
    from analyses.core.datasets import PromptSet
    from analyses.kinds import dla, sets
    from analyses.kinds.tokens import prompt_tokens

    rows = tuple({"prompt": r["clean"], "answer": r["answer"], "wrong": r["wrong"]} for r in IOI_ROWS)
    spec = AnalysisSpec(kind="dla", dataset="ioi")
    result = sets.run(dla.run, embedded, spec, PromptSet(name="three", rows=rows))
    lengths = result.tables["examples"]["n_tokens"]
    expected = [int(prompt_tokens(embedded.bridge, r["prompt"]).shape[1]) for r in rows]
    assert lengths.notna().all() and [int(n) for n in lengths] == expected
