"""Head detector figures: one layer × head grid per detector (scores 0 to 1), one head's
profile across detectors, and the ablation check."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures.layout import MAX_VALUE_TEXT, cells, grid, head_label, head_tick, heatmap, layer_head_axes, title
from analyses.figures.text import plot_text


def figures(result) -> dict[str, go.Figure]:
    scores = result.tables["scores"]
    not_scored = result.meta.get("not_scored", {})
    shown = {f"scores_{d}": head_score_heatmap(scores, d, not_scored.get(d))
             for d in dict.fromkeys(scores["detector"])}
    if "ablation" in result.tables:
        shown["ablation"] = head_ablation_chart(result.tables["ablation"])
    return shown


def head_score_heatmap(scores: pd.DataFrame, detector: str, not_scored: str | None = None) -> go.Figure:
    """Layer × head heatmap of one detector's scores (the heads `scores` table), 0 to 1; when
    the detector could not score (`not_scored` says why), an empty grid that says so."""
    rows = scores[scores["detector"] == detector]
    events = int(rows["events"].iloc[0]) if "events" in rows and len(rows) else None
    table = grid(rows, ["layer"], "head", "score")
    z = table.to_numpy(dtype=float)
    y_ticks = [str(int(layer)) for layer in table.index]
    x_ticks = [head_tick(h) for h in table.columns]
    tl = (grid(rows, ["layer"], "head", "tl_score").reindex_like(table).to_numpy(dtype=float)
          if "tl_score" in rows else np.full_like(z, np.nan))
    shown_tl = bool(np.isfinite(tl).any() and not np.allclose(tl, z, equal_nan=True))

    def hover_text(i, j, v):
        text = f"{head_label(table.index[i], table.columns[j])}<br>score {v:.3f}"
        text += f"<br>TransformerLens detect_head {tl[i, j]:.3f}" if shown_tl else ""
        return text + (f"<br>over {events:,} events" if events is not None else "")

    hover = cells(z, hover_text)
    fig = go.Figure(heatmap(z, hover, signed=False, colorbar="score",
                            values_in_cells=len(x_ticks) <= MAX_VALUE_TEXT))
    note = f"each score averages {events:,} events ({EVENTS.get(detector, 'observations')})" if events else None
    fig.update_layout(title=title(f"{plot_text(detector)} score of every head", note),
                      **layer_head_axes(x_ticks, y_ticks))
    if not_scored:
        fig.update_layout(title=title(f"{plot_text(detector)}: not scored", plot_text(not_scored)))
        fig.add_annotation(text="no scores: too few events", showarrow=False, xref="paper",
                           yref="paper", x=0.5, y=0.5, font={"size": 16})
        fig.update_xaxes(range=[-0.5, len(x_ticks) - 0.5])  # the empty grid keeps its shape
        fig.update_yaxes(range=[-0.5, len(y_ticks) - 0.5])
    return fig


EVENTS = {  # what one event is, per detector
    "previous_token": "query positions over the sequences",
    "duplicate_token": "query positions over the sequences",
    "induction": "second-copy tokens over the sequences",
    "retrieval": "code tokens the model copied",
}


def head_profile_chart(scores: pd.DataFrame, layer: int, head: int) -> go.Figure:
    """One head's score under every detector in the `scores` table, as bars."""
    rows = scores[(scores["layer"] == layer) & (scores["head"] == head)]
    names = [plot_text(str(d)) for d in rows["detector"]]
    fig = go.Figure(go.Bar(
        x=names, y=rows["score"], marker={"color": "#4C78A8"}, text=[f"{v:.3f}" for v in rows["score"]],
        textposition="outside", hovertemplate="%{x}: %{y:.3f}<extra></extra>",
    ))
    fig.update_layout(
        title={"text": f"Head {head_label(layer, head)} under each detector"},
        xaxis={"title": {"text": "detector"}}, yaxis={"title": {"text": "score"}, "range": [0, 1.08]},
        height=320, margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig


METRICS = {  # each behaviour's metric: what it measures (a panel title) and its unit (the axis)
    "second_copy_loss": ("second-copy loss", "nats/token"),
    "needle_recall": ("needle recall", "share of needles"),
}
TOP, RANDOM = "#4C78A8", "#9D9A96"


def head_ablation_chart(ablation: pd.DataFrame) -> go.Figure:
    """The heads `ablation` table: per detector, how much mean-ablating its top heads hurts
    its behaviour (a bar), beside each random set of as many other heads (a dot each):
    drop > 0, the behaviour got worse. One panel per metric, each on its own axis with its
    unit: nats and shares never share an axis."""
    metrics = list(dict.fromkeys(ablation["metric"]))
    fig = make_subplots(rows=1, cols=len(metrics), horizontal_spacing=0.12,
                        subplot_titles=[plot_text(METRICS.get(m, (m, ""))[0]) for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        part = ablation[ablation["metric"] == metric]
        detectors = list(dict.fromkeys(part["detector"]))
        for label, color, offset in (("top", TOP, -0.18), ("random", RANDOM, 0.18)):
            rows = part[part["ablated"] == label]
            x = [detectors.index(d) + offset for d in rows["detector"]]
            hover = list(zip(rows["heads"].fillna("").astype(str).map(plot_text), rows["baseline"], rows["after"]))
            template = ("heads %{customdata[0]}<br>baseline %{customdata[1]:.4g}"
                        "<br>ablated %{customdata[2]:.4g}<br>drop %{y:.4g}<extra></extra>")
            if label == "top":
                trace = go.Bar(x=x, y=rows["drop"], width=0.3, name="top heads", marker={"color": color})
            else:
                trace = go.Scatter(x=x, y=rows["drop"], mode="markers", name="random sets of as many heads",
                                   marker={"color": color, "size": 10, "line": {"width": 1, "color": "white"}})
            trace.update(customdata=hover, hovertemplate=template, legendgroup=label, showlegend=col == 1)
            fig.add_trace(trace, row=1, col=col)
        unit = METRICS.get(metric, (metric, "its own units"))[1]
        fig.update_yaxes(title={"text": f"drop ({plot_text(unit)})"}, zeroline=True, row=1, col=col)
        fig.update_xaxes(title={"text": "detector"}, tickmode="array", tickvals=list(range(len(detectors))),
                         ticktext=[plot_text(str(d)) for d in detectors], range=[-0.6, len(detectors) - 0.4],
                         row=1, col=col)
    fig.update_layout(
        title=title("Mean-ablating each detector's top heads, against random sets of as many heads",
                    "drop > 0: the detector's behaviour got worse"),
        height=420, margin={"l": 70, "r": 20, "t": 100, "b": 80},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig
