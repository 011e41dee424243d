"""Steering figures on hand-made tables: the token strip marks what differs from the intact
model, the grids are layer × coefficient with a centred scale for the signed metric, the
vector chart reads promoted and suppressed tokens, and untrusted text is escaped."""
import json

import numpy as np
import pandas as pd

from analyses import AnalysisSpec, Result
from analyses.figures import steering as fig

PROMPT = "The capital of France is"


def generation_rows(cells):
    return pd.DataFrame([{"layer": layer, "coeff": coeff, "ablated": ablated, "sample": 0,
                          "text": "".join(tokens), "tokens": json.dumps(tokens),
                          "logprobs": json.dumps([-0.5] * len(tokens))}
                         for layer, coeff, ablated, tokens in cells]).astype({"layer": "Int64"})


def steering_result(ablated=False):
    cells = [(2, 0.0, False, [" Paris", ".", " The"]), (2, 1.0, ablated, [" Berlin", ".", " <b>x"]),
             (3, 0.0, False, [" Paris", ".", " The"]), (3, 1.0, ablated, [" Paris", ".", " The", " end"])]
    generations = generation_rows(cells)
    effects = pd.DataFrame([{"layer": layer, "coeff": coeff, "ablated": ab, "metric": -3.0 + 5 * coeff + layer,
                             "top1": float(coeff > 0), "top_token": tokens[0], "kl": 0.4 * coeff}
                            for layer, coeff, ab, tokens in cells]).astype({"layer": "Int64"})
    vector = pd.DataFrame([{"layer": 2, "norm": 8.0, "rank": r, "token_id": 10 + r, "token_str": t,
                            "score": s, "direction": d}
                           for r, (t, s, d) in enumerate([(" Berlin", 3.0, "promotes"), ("<i>", 2.0, "promotes"),
                                                          (" Paris", -3.0, "suppresses"), (" a", -1.0, "suppresses")])])
    spec = AnalysisSpec(kind="steering", prompt=PROMPT, positive="a", negative="b", layer="2,3", coeff="1",
                        answer=" Berlin", wrong=" Paris")
    return Result(spec=spec, tables={"generations": generations, "effects": effects, "vector": vector},
                  meta={"metric": "logit(' Berlin') − logit(' Paris')", "samples": 1, "resid_norms": {"2": 10.0}})


def test_the_strip_marks_the_tokens_that_differ_from_the_intact_models():
    strip = fig.generation_strip(steering_result().tables["generations"])
    z = np.array(strip.data[0].z, dtype=float)
    labels = list(strip.layout.yaxis.ticktext)
    assert labels == ["intact", "L2 × 1", "L3 × 1"]  # the intact row once, first
    assert z[0, :3].tolist() == [0, 0, 0] and np.isnan(z[0, 3])  # nothing written there
    assert z[1, :3].tolist() == [1, 0, 1]  # Berlin and the third token differ
    assert z[2, :3].tolist() == [0, 0, 0] and z[2, 3] == 1  # a token the intact model never wrote
    assert "&lt;b&gt;x" in strip.data[0].text[1][2]  # escaped
    assert strip.layout.xaxis.title.text == "generated token" and strip.layout.yaxis.title.text


def test_the_grids_are_layer_by_coefficient_and_the_metric_scale_is_centred():
    figures = fig.figures(steering_result())
    assert list(figures) == ["generations", "metric", "kl", "vector"]
    metric, kl = figures["metric"], figures["kl"]
    assert list(metric.layout.xaxis.ticktext) == ["0", "1"] and list(metric.layout.yaxis.ticktext) == ["L2", "L3"]
    assert metric.data[0].zmid == 0 and metric.data[0].zmin == -metric.data[0].zmax
    assert np.allclose(np.array(metric.data[0].z, dtype=float), [[-1, 4], [0, 5]])
    assert kl.data[0].zmin == 0 and "nats" in kl.data[0].colorbar.title.text
    assert "coefficient" in metric.layout.xaxis.title.text and "layer" in metric.layout.yaxis.title.text


def test_with_an_ablation_the_grid_shows_the_ablated_cells():
    result = steering_result(ablated=True)
    result.tables["effects"] = pd.concat([result.tables["effects"], pd.DataFrame(
        [{"layer": 2, "coeff": 0.0, "ablated": True, "metric": -9.0, "top1": 0.0, "top_token": "x", "kl": 1.0},
         {"layer": 3, "coeff": 0.0, "ablated": True, "metric": -8.0, "top1": 0.0, "top_token": "x", "kl": 1.0}]
    ).astype({"layer": "Int64"})], ignore_index=True)
    grid = fig.figures(result)["metric"]
    assert np.allclose(np.array(grid.data[0].z, dtype=float), [[-9, 4], [-8, 5]])
    assert "ablated" in grid.layout.title.text


def test_the_vector_chart_reads_promoted_and_suppressed_tokens():
    chart = fig.figures(steering_result())["vector"]
    promotes, suppresses = chart.data
    assert list(promotes.x) == [2.0, 3.0] and list(suppresses.x) == [-1.0, -3.0]
    assert "&lt;i&gt;" in list(chart.layout.yaxis.ticktext)
    assert "norm 8" in chart.layout.title.text and "norm 10" in chart.layout.title.text
    assert "W_U" in chart.layout.xaxis.title.text


def test_highlighted_html_marks_only_what_differs_and_escapes():
    html = fig.highlighted_html([" Berlin", ".", " <b>"], [" Paris", ".", " <b>"])
    assert html.count("<mark") == 1 and "&lt;b&gt;" in html and "<b>" not in html.replace("<mark", "")


def test_a_knockout_without_a_vector_draws_intact_beside_ablated():
    generations = generation_rows([(pd.NA, 0.0, False, [" Eva"]), (pd.NA, 0.0, True, [" Carl"])])
    rows = ((False, 6.0, " Eva", 0.0), (True, -1.5, " Carl", 0.1))
    effects = pd.DataFrame([{"layer": pd.NA, "coeff": 0.0, "ablated": a, "metric": m, "top1": float(not a),
                             "top_token": t, "kl": k} for a, m, t, k in rows]).astype({"layer": "Int64"})
    spec = AnalysisSpec(kind="steering", prompt="x", ablate="L0H0", answer=" Eva", wrong=" Carl")
    figures = fig.figures(Result(spec=spec, tables={"generations": generations, "effects": effects},
                                 meta={"metric": "logit difference"}))
    assert list(figures) == ["generations", "knockout"]
    assert list(figures["knockout"].data[0].x) == ["intact", "ablated"]
    assert list(figures["generations"].layout.yaxis.ticktext) == ["intact", "ablated"]


def test_a_sets_accuracy_bars_carry_wilsons_interval_and_say_so():
    from types import SimpleNamespace

    from analyses.figures.steering import set_figures
    from analyses.kinds.sets import SUMMARIES, summary_table

    effects = pd.DataFrame({"example": range(10), "layer": 1, "coeff": 0.0, "ablated": False,
                            "metric": np.linspace(0, 3, 10), "top1": [1.0] * 10, "kl": 0.0})
    summary = summary_table(effects, SUMMARIES["steering"]["effects"], pd.DataFrame())
    result = SimpleNamespace(tables={"effects_summary": summary, "examples": pd.DataFrame({"wrong": [" x"]})},
                             meta={"n_examples": 10})
    fig = set_figures(result)["effects_summary"]
    accuracy = fig.data[1]
    assert accuracy.y[0] == 1.0 and accuracy.error_y.arrayminus[0] > 0.1  # all right, yet not [1, 1]
    assert "Wilson" in fig.layout.title.text and "Wilson" in accuracy.hovertemplate
