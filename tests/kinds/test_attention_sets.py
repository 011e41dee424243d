"""Attention from the last position: `last` is the last row of the patterns, `answers` sums it
over the positions holding the answer's and the wrong answer's tokens, and over a prompt set
each example equals its own single-prompt run, the summaries are Student's t means, and on
ioi L0H0 looks at the subject (the wrong answer's token)."""
import numpy as np
import pytest

from analyses import AnalysisSpec, compute
from analyses.core.summary import mean_interval
from analyses.kinds import attention

pytestmark = pytest.mark.usefixtures("private_cache")

IOI = dict(prompt="When Mary and John went to the store, John gave a drink to", answer=" Mary", wrong=" John")


@pytest.fixture(scope="module")
def ioi_set():
    return compute(AnalysisSpec(kind="attention", dataset="ioi"))


def test_last_is_the_last_row_of_the_patterns_and_answers_sums_it_where_the_tokens_are(embedded):
    result = attention.run(embedded, AnalysisSpec(kind="attention", **IOI))
    patterns, last, answers = (result.tables[n] for n in ("patterns", "last", "answers"))
    n = result.meta["n_tokens"]
    expected = patterns[patterns["query_pos"] == n - 1].rename(columns={"key_pos": "position"})
    merged = last.merge(expected, on=["layer", "head", "position"], suffixes=("", "_p"))
    assert len(merged) == len(last) and np.allclose(merged["weight"], merged["weight_p"])
    tokens = result.meta["tokens"]
    john = [p for p, t in enumerate(tokens) if t == " John"]
    assert len(john) == 2  # the subject, twice
    row = answers[(answers["layer"] == 0) & (answers["head"] == 0) & (answers["target"] == "wrong")].iloc[0]
    assert row["n_positions"] == 2
    assert row["weight"] == pytest.approx(last[(last["layer"] == 0) & (last["head"] == 0)
                                              & last["position"].isin(john)]["weight"].sum())


def test_a_target_the_prompt_does_not_hold_gets_nan_not_zero(embedded):
    result = attention.run(embedded, AnalysisSpec(kind="attention", prompt=IOI["prompt"], answer=" Tom"))
    answers = result.tables["answers"]
    assert set(answers["target"]) == {"answer"} and answers["weight"].isna().all()
    assert (answers["n_positions"] == 0).all()


def test_each_example_of_a_set_equals_its_single_prompt_run(ioi_set, embedded):
    examples = ioi_set.tables["examples"]
    for i in (0, 57, 199):
        row = examples[examples["example"] == i].iloc[0]
        single = attention.run(embedded, AnalysisSpec(kind="attention", prompt=row["prompt"], answer=row["answer"],
                                                      wrong=row["wrong"]))
        for name in ("last", "answers"):
            ours = ioi_set.tables[name].query(f"example == {i}")
            np.testing.assert_allclose(ours["weight"].to_numpy(), single.tables[name]["weight"].to_numpy(),
                                       atol=1e-5)
    assert "patterns" not in ioi_set.tables  # a set keeps the last query's tables only


def test_on_ioi_l0h0_looks_at_the_subject_with_an_interval(ioi_set):
    summary = ioi_set.tables["answers_summary"].set_index(["layer", "head", "target"])
    wrong, answer = summary.loc[(0, 0, "wrong")], summary.loc[(0, 0, "answer")]
    assert wrong["ci_low"] > 0.9 and answer["ci_high"] < 0.05
    assert wrong["interval"] == "t" and wrong["n"] == 200
    per_example = ioi_set.tables["answers"].query("layer == 0 and head == 0 and target == 'wrong'")["weight"]
    assert wrong["ci_high"] == pytest.approx(mean_interval(per_example.to_numpy())["ci_high"])
    last = ioi_set.tables["last_summary"]
    assert set(last["n_tokens"]) == set(ioi_set.tables["examples"]["n_tokens"])  # grouped by length


def test_the_set_figures_name_heads_and_tokens_and_show_intervals(ioi_set):
    figures = ioi_set.figures()
    assert list(figures) == ["last_by_head", "to_answers"]
    grid = figures["last_by_head"]
    assert grid.layout.yaxis.ticktext[0] == "L0H0"
    assert "␣" in "".join(grid.layout.xaxis.ticktext)  # positions named by tokens, not numbers
    assert "95% interval" in grid.data[0].customdata[0][0]
    answers = figures["to_answers"]
    assert len(answers.data) == 2 and answers.data[0].texttemplate  # values printed
    assert list(answers.layout.xaxis.ticktext)[0] == "H0"
