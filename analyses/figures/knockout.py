"""Attention knockout figures: the change in the answer's probability by window start, one
line per source set, as Geva et al. 2023 draw it (their Fig. 2, "% change in prediction
probability"). On a prompt set each point is the mean over the examples of each example's
own relative change, with its Student-t 95% interval as an error bar.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import title
from analyses.figures.text import plot_text

SOURCE_COLOURS = {"subject": "#E45756", "other": "#4C78A8", "last": "#54A24B", "all": "#9D9D9D"}
SOURCE_NAMES = {"subject": "subject → last", "other": "other tokens → last", "last": "last → last",
                "all": "every key but BOS → last"}


def figures(result) -> dict[str, go.Figure]:
    """One prompt's sweep (`knockout`), or a set's means (`knockout_summary`)."""
    return {"change": change_chart(result)}


def set_figures(result) -> dict[str, go.Figure]:
    return figures(result)


def window_label(start: int, end: int) -> str:
    return f"L{start}" if start == end else f"L{start}–L{end}"


def curves(result) -> pd.DataFrame:
    """Per (window, source): `value` (relative change, %), `low`/`high` (its interval, NaN on
    one prompt), `prob` (the answer's probability, mean on a set) and `n`."""
    summary = result.tables.get("knockout_summary")
    if summary is None:
        table = result.tables["knockout"]
        return table.assign(value=100 * table["relative"], low=float("nan"), high=float("nan"),
                            prob=table["answer_prob"], n=1)
    keys = ["window_start", "window_end", "source"]
    relative = summary[summary["quantity"] == "relative"].set_index(keys)
    prob = summary[summary["quantity"] == "answer_prob"].set_index(keys)["mean"]
    return pd.DataFrame({"value": 100 * relative["mean"], "low": 100 * relative["ci_low"],
                         "high": 100 * relative["ci_high"], "prob": prob.reindex(relative.index),
                         "n": relative["n"]}).reset_index()


def change_chart(result) -> go.Figure:
    frame = curves(result)
    on_set = result.spec.dataset is not None
    fig = go.Figure()
    for source in dict.fromkeys(frame["source"]):
        part = frame[frame["source"] == source].sort_values("window_start")
        labels = [window_label(s, e) for s, e in zip(part["window_start"], part["window_end"])]
        error = None
        if on_set:
            error = {"type": "data", "symmetric": False, "array": part["high"] - part["value"],
                     "arrayminus": part["value"] - part["low"]}
        hover = [f"{SOURCE_NAMES.get(source, source)}, layers {label}<br>change {v:+.1f}%"
                 f"{f' [{lo:+.1f}, {hi:+.1f}]' if on_set else ''}<br>p(answer) {p:.3f}"
                 for label, v, lo, hi, p in zip(labels, part["value"], part["low"], part["high"], part["prob"])]
        fig.add_trace(go.Scatter(x=labels, y=part["value"], mode="lines+markers", error_y=error,
                                 name=SOURCE_NAMES.get(source, source), customdata=hover,
                                 hovertemplate="%{customdata}<extra></extra>",
                                 line={"color": SOURCE_COLOURS.get(source)}))
    first = frame.iloc[0]
    window = int(first["window_end"] - first["window_start"] + 1)
    if on_set:
        over = f"mean over {result.meta.get('n_examples')} examples with 95% intervals (Student's t)"
        answer = "the answer"
    else:
        over = f"intact p = {result.meta.get('intact_prob', float('nan')):.3f}"
        answer = plot_text(repr(result.meta.get("answer_token", "")))
    note = (f"{over}; attention from the last position cut in a window of "
            f"{window} layer{'s' if window != 1 else ''}, the rest renormalised")
    fig.add_hline(y=0, line={"color": "#54585A", "width": 1})
    fig.update_layout(
        title=title(f"Change in p({answer}) when the last position's attention is cut", note),
        xaxis={"title": {"text": "layers knocked out (window start–end)"}, "type": "category"},
        yaxis={"title": {"text": "relative change in p(answer) (%)"}},
        legend={"title": {"text": "edges cut"}}, height=440,
        margin={"l": 70, "r": 20, "t": 80, "b": 60},
    )
    return fig
