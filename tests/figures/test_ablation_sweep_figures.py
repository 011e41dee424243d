"""Ablation sweep figures on hand-made tables: a layer × (heads + MLP) grid per quantity, a
centred diverging scale for the signed change, labels L0H0 and L0 MLP with values printed,
and on a set each cell's 95% interval on hover; the knock-out link of a cell is the steering
kind's spec for that component."""
import numpy as np
import pandas as pd

from analyses import AnalysisSpec, Result
from analyses.core.catalogue import CATALOGUE
from analyses.core.knockout import knockout_spec
from analyses.kinds.sets import SUMMARIES, summary_table

COLUMNS = list(CATALOGUE["ablation_sweep"].tables["effects"])
PROMPT = dict(prompt="When Mary and John went to the store, John gave a drink to", answer=" Mary", wrong=" John")


def effects(shift: float = 0.0) -> pd.DataFrame:
    """2 layers × 2 heads + MLPs; L0H0 alone breaks the answer."""
    rows = [{"component": "intact", "site": "none", "layer": -1, "head": -1, "metric": 4.0 + shift, "delta": 0.0,
             "top1": 1.0, "top_token": " Mary"}]
    for layer in range(2):
        for head in (0, 1, None):
            label = f"L{layer}H{head}" if head is not None else f"L{layer}.mlp"
            delta = -4.0 if label == "L0H0" else 0.1 * (layer + 1) + shift
            rows.append({"component": label, "site": "mlp" if head is None else "head", "layer": layer,
                         "head": -1 if head is None else head, "metric": 4.0 + shift + delta, "delta": delta,
                         "top1": float(label != "L0H0"), "top_token": " John" if label == "L0H0" else " Mary"})
    return pd.DataFrame(rows, columns=COLUMNS)


def prompt_result() -> Result:
    return Result(spec=AnalysisSpec(kind="ablation_sweep", **PROMPT), tables={"effects": effects()},
                  meta={"metric": "logit(' Mary') − logit(' John')"})


def set_result() -> Result:
    per_example = pd.concat([effects(shift).assign(example=i) for i, shift in enumerate((-0.2, 0.0, 0.3))])
    examples = pd.DataFrame({"example": [0, 1, 2], "prompt": ["a", "b", "c"], "answer": [" Mary"] * 3,
                             "wrong": [" John"] * 3})
    summary = summary_table(per_example, SUMMARIES["ablation_sweep"]["effects"], examples)
    return Result(spec=AnalysisSpec(kind="ablation_sweep", dataset="ioi"),
                  tables={"effects": per_example, "effects_summary": summary, "examples": examples},
                  meta={"n_examples": 3})


def test_a_prompts_grids_are_layer_by_heads_and_mlp_with_values_and_a_centred_scale():
    figures = prompt_result().figures()
    assert list(figures) == ["delta", "top1"]
    delta = figures["delta"]
    trace = delta.data[0]
    assert trace.zmid == 0 and trace.zmin == -trace.zmax  # signed: centred, symmetric
    assert list(delta.layout.xaxis.ticktext) == ["H0", "H1", "MLP"]
    assert list(delta.layout.yaxis.ticktext) == ["L0", "L1"]
    assert delta.layout.xaxis.title.text and delta.layout.yaxis.title.text == "layer"
    assert trace.text[0][0] == "L0H0<br>-4.00" and trace.text[1][2] == "L1 MLP<br>0.20"
    assert np.asarray(trace.z)[0, 0] == -4.0
    assert "Mary" in delta.layout.title.text
    top1 = figures["top1"].data[0]
    assert top1.zmin == 0 and top1.zmax == 1 and np.asarray(top1.z)[0, 0] == 0


def test_a_sets_grids_show_means_and_their_intervals_on_hover():
    result = set_result()
    figures = result.figures()
    delta = figures["delta"]
    assert "mean over 3 examples" in delta.layout.title.text
    hover = delta.data[0].customdata[1][1]  # L1H1
    summary = result.tables["effects_summary"].set_index(["component", "quantity"])
    row = summary.loc[("L1H1", "delta")]
    assert f"{row['ci_low']:.3f} to {row['ci_high']:.3f}" in hover and "n = 3" in hover
    assert "Wilson" in figures["top1"].data[0].customdata[0][0]


def test_a_cells_knockout_link_is_the_steering_spec_of_that_component():
    one = knockout_spec(prompt_result().spec, "L0.mlp")
    assert (one.kind, one.ablate, one.ablation, one.prompt, one.answer, one.wrong) == (
        "steering", "L0.mlp", "mean", PROMPT["prompt"], " Mary", " John")
    on_set = knockout_spec(AnalysisSpec(kind="ablation_sweep", dataset="ioi", ablation="zero"), "L0H0")
    assert (on_set.dataset, on_set.ablation, on_set.prompt, on_set.max_new_tokens) == ("ioi", "zero", None, 1)
