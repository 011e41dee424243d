"""Figures a reader can read (issue 26, item 5), on hand-made tables: the steering strip's
words fit their cells, a long attention pattern labels its last query and key, a set's bars
set its axis (the examples' dots clipped at its edge, and said so) with direct logit
attribution's total shown, set positions are labelled by their tokens, and a head is "L0H0"
everywhere ("H0" on a head axis)."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analyses.figures import layout
from analyses.figures.text import VISIBLE_SPACE

# --------------------------------------------------------------------------- head labels


def test_a_head_is_L0H0_and_a_head_axis_reads_H0():
    from analyses.figures.dla import dla_head_heatmap
    from analyses.figures.heads import head_score_heatmap
    from analyses.figures.sets import head_mean_heatmap

    assert layout.head_label(1, 2) == "L1H2" and layout.head_tick(2) == "H2"
    heads = [(layer, head) for layer in range(2) for head in range(3)]
    dla = dla_head_heatmap(pd.DataFrame([("head", layer, head, 0.1 * head) for layer, head in heads],
                                        columns=["component", "layer", "head", "value"]))
    scores = head_score_heatmap(pd.DataFrame([("induction", layer, head, 0.5) for layer, head in heads],
                                             columns=["detector", "layer", "head", "score"]), "induction")
    summary = pd.DataFrame([("head_out", layer, -1, head, 0.2, 0.1, 0.3, 9) for layer, head in heads],
                           columns=["granularity", "layer", "position", "head", "mean", "ci_low", "ci_high", "n"])
    for fig in (dla, scores, head_mean_heatmap(summary)):
        assert list(fig.layout.xaxis.ticktext) == ["H0", "H1", "H2"]
        assert "L1H2" in np.array(fig.data[0].customdata)[1, 2]


# --------------------------------------------------------------------------- attention


def patterns_table(n: int, heads=((0, 0),)) -> pd.DataFrame:
    rows = [(layer, head, q, k, 1.0 / (q + 1)) for layer, head in heads for q in range(n) for k in range(q + 1)]
    return pd.DataFrame(rows, columns=["layer", "head", "query_pos", "key_pos", "weight"])


@pytest.mark.parametrize("n", [5, 61, 228, 240])
def test_a_long_patterns_last_query_and_key_are_labelled_and_labels_do_not_crowd(n):
    from analyses.figures.attention import head_pattern

    tokens = [f" t{p}" for p in range(n)]
    fig = head_pattern(patterns_table(n), 0, 0, tokens)
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        where = list(axis.tickvals)
        assert where[0] == 0 and where[-1] == n - 1  # the final query row has its label
        assert f"t{n - 1}" in axis.ticktext[-1]
        gaps = np.diff(where)
        assert gaps.min() >= gaps.max() / 2  # no two labels crammed together at the end
    plot_px = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    assert plot_px / len(fig.layout.yaxis.tickvals) >= 12  # a 12 px row of text per label at least


def test_one_heads_pattern_grid_is_titled_by_that_head_not_every_head():
    from analyses.figures.attention import pattern_grid

    one = pattern_grid(patterns_table(6, heads=((1, 3),)))
    assert "every head" not in one.layout.title.text and "L1H3" in one.layout.title.text
    several = pattern_grid(patterns_table(6, heads=((0, 0), (0, 1))))
    assert "every head" in several.layout.title.text


# --------------------------------------------------------------------------- steering strip


def test_the_strip_writes_no_word_wider_than_its_cell():
    from analyses.figures import steering

    words = [" Baghdad", " Germany", " capital", ".", " internationalisation", " a"]
    generations = pd.DataFrame([{"layer": 2, "coeff": c, "ablated": False, "sample": 0, "text": "",
                                 "tokens": json.dumps(words * 3), "logprobs": json.dumps([-0.5] * 18)}
                                for c in (0.0, 1.0)]).astype({"layer": "Int64"})
    strip = steering.generation_strip(generations)
    trace = strip.data[0]
    written = [cell for row in trace.text for cell in row if cell]
    cell_px = steering.STRIP_PLOT_PX / 18
    assert all(steering.text_px(cell, trace.textfont.size) <= cell_px for cell in written)
    assert any(cell.endswith("…") for cell in written)  # the long ones shortened...
    hover = " ".join(h for row in trace.customdata for h in row)
    assert f"{VISIBLE_SPACE}internationalisation" in hover  # ...and whole on hover
    assert "shortened" in strip.layout.title.text


# --------------------------------------------------------------------------- sets


def dla_set(outlier: float = 40.0):
    """Twelve examples, components whose means are ~1, and one far example of the MLP."""
    rows = []
    for e in range(12):
        for component, layer, head, value in (("embed", -1, -1, 0.1), ("attn", 0, -1, 1.0 + 0.1 * e),
                                              ("mlp", 0, -1, 0.5), ("head", 0, 1, 0.8 + 0.1 * e),
                                              ("bias", -1, -1, 0.0)):
            rows.append((e, component, layer, head, value))
    frame = pd.DataFrame(rows, columns=["example", "component", "layer", "head", "value"])
    frame.loc[(frame.example == 2) & (frame.component == "mlp"), "value"] = outlier
    from analyses.kinds.sets import SUMMARIES, summary_table

    examples = pd.DataFrame({"example": range(12), "n_tokens": 7})
    summary = summary_table(frame, SUMMARIES["dla"]["contributions"], examples)
    return SimpleNamespace(kind="dla", meta={"n_examples": 12},
                           tables={"contributions": frame, "contributions_summary": summary, "examples": examples})


def test_a_set_charts_axis_is_set_by_its_bars_and_intervals_and_clipped_dots_are_said():
    from analyses.figures.sets import figures

    result = dla_set()
    chart = figures(result)["contributions_summary"]
    summary = result.tables["contributions_summary"]
    low, high = chart.layout.xaxis.range
    finite = summary.dropna(subset=["ci_low"])
    assert low <= min(0, finite.ci_low.min()) and high >= finite.ci_high.max()
    assert high < 40  # the outlying dot do not stretch it
    dots = [trace for trace in chart.data if trace.type == "scatter"]
    xs = np.concatenate([np.array(d.x, dtype=float) for d in dots])
    assert xs.max() <= high and xs.min() >= low  # every dot drawn inside: the outliers at the edge
    clipped = [d for d in dots if "beyond" in d.name]
    assert clipped and 40.0 in np.array(clipped[0].customdata, dtype=float)[:, 1]  # its value on hover
    assert "beyond the axis" in chart.layout.title.text


def test_a_dla_set_shows_the_total_the_components_sum_to():
    from analyses.core.summary import mean_interval
    from analyses.figures.sets import figures

    result = dla_set(outlier=0.5)
    chart = figures(result)["contributions_summary"]
    bars = [trace for trace in chart.data if trace.type == "bar"]
    labels = [label for bar in bars for label in bar.y]
    total = [label for label in labels if label.startswith("total")]
    assert total
    frame = result.tables["contributions"]
    per_example = frame[frame.component.isin(["embed", "attn", "mlp", "bias"])].groupby("example").value.sum()
    expected = mean_interval(per_example.to_numpy())
    bar = next(b for b in bars if total[0] in b.y)
    i = list(bar.y).index(total[0])
    assert bar.x[i] == pytest.approx(expected["mean"])
    assert bar.x[i] + bar.error_x.array[i] == pytest.approx(expected["ci_high"])
    assert list(chart.layout.yaxis.categoryarray)[0] == total[0]  # on top


def test_a_set_chart_labels_each_position_by_its_token():
    from analyses.figures.sets import figures
    from analyses.kinds.sets import SUMMARIES, summary_table

    clean = {5: ["<s>", " Mary", " gave", " to", " her"], 6: ["<s>", " A", " Mary", " gave", " to", " x"]}
    corrupted = {5: ["<s>", " John", " gave", " to", " her"], 6: ["<s>", " A", " John", " gave", " to", " x"]}
    rows, examples = [], []
    for e, n in enumerate((5, 5, 6)):
        examples.append({"example": e, "n_tokens": n, "clean_baseline": 2.0, "corrupted_baseline": -1.0,
                         "clean_tokens": json.dumps(clean[n]), "corrupted_tokens": json.dumps(corrupted[n])})
        rows += [(e, n, "resid_pre", 0, p, -1, 0.5 + p, 0.5) for p in range(n)]
    effects = pd.DataFrame(rows, columns=["example", "n_tokens", "granularity", "layer", "position", "head",
                                          "raw", "value"])
    examples = pd.DataFrame(examples)
    summary = summary_table(effects, SUMMARIES["activation_patching"]["effects"], examples)
    result = SimpleNamespace(kind="activation_patching", meta={"n_examples": 3},
                             tables={"effects": effects, "effects_summary": summary, "examples": examples})
    labels = list(figures(result)["effects_summary"].data[0].y)
    assert f"{VISIBLE_SPACE}Mary→{VISIBLE_SPACE}John (position 1 of 5)" in " | ".join(labels)
    assert f"{VISIBLE_SPACE}Mary→{VISIBLE_SPACE}John (position 2 of 6)" in " | ".join(labels)
    assert f"{VISIBLE_SPACE}her (position 4 of 5)" in " | ".join(labels)
    assert not any("n_tokens" in label for label in labels)
