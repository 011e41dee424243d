"""Activation sparsity figures: PPL-p% sparsity by layer for each p, the trade-off curve
(perplexity increase against sparsity as the shared CETT grows), the neurons' firing
frequencies at the thresholds, and which tokens light up more of each MLP."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import axis, cells, grid_height, heatmap, position_labels, title
from analyses.figures.text import plot_text

MAX_TOKEN_COLUMNS = 64  # positions of the first document the token heatmap shows
P_COLOURS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")


def figures(result) -> dict[str, go.Figure]:
    tables, meta = result.tables, result.meta
    note = f"{plot_text(str(meta.get('text', 'the text')))}; {meta.get('n_tokens', '?')} tokens"
    return {"layers": sparsity_by_layer(tables["layers"], note),
            "curve": trade_off_curve(tables["curve"], tables["summary"], note),
            "frequency": frequency_histogram(tables["neurons"], note),
            "tokens": token_heatmap(tables["tokens"])}


def p_label(p: float) -> str:
    return f"PPL-{p:g}%"


def sparsity_by_layer(layers: pd.DataFrame, note: str) -> go.Figure:
    """Grouped bars: each layer's share of neurons zeroed at each p's thresholds."""
    fig = go.Figure()
    for i, (p, rows) in enumerate(layers.groupby("p")):
        rows = rows.sort_values("layer")
        hover = [f"layer {int(r.layer)}, {p_label(p)}<br>sparsity {100 * r.sparsity:.1f}%<br>threshold "
                 f"{r.threshold:.4g} (contribution norm)<br>layer CETT {r.layer_cett:.4f}<br>perplexity "
                 f"+{r.ppl_increase:.2f}% (whole model)" for r in rows.itertuples()]
        fig.add_trace(go.Bar(x=[f"L{int(layer)}" for layer in rows.layer], y=100 * rows.sparsity,
                             name=p_label(p), marker={"color": P_COLOURS[i % len(P_COLOURS)]},
                             customdata=hover, hovertemplate="%{customdata}<extra></extra>"))
    fig.update_layout(title=title("PPL-p% sparsity by layer: the share of MLP neurons below the "
                                  "layer's CETT threshold", note),
                      barmode="group", height=420, legend={"title": {"text": "perplexity increase"}},
                      xaxis={"title": {"text": "layer"}, "type": "category"},
                      yaxis={"title": {"text": "sparsity (% of neurons zeroed per token)"}, "range": [0, 100]},
                      margin={"l": 70, "r": 20, "t": 80, "b": 50})
    return fig


def trade_off_curve(curve: pd.DataFrame, summary: pd.DataFrame, note: str) -> go.Figure:
    """Perplexity increase against sparsity, one point per CETT value measured, the found
    PPL-p% points marked."""
    curve = curve.sort_values("cett")
    fig = go.Figure(go.Scatter(
        x=100 * curve.sparsity, y=curve.ppl_increase, mode="lines+markers", name="CETT values measured",
        marker={"color": "#9D9D9D", "size": 6}, line={"color": "#BBBBBB"},
        customdata=[f"CETT {r.cett:.4f} ({plot_text(r.source)})<br>sparsity {100 * r.sparsity:.1f}%<br>"
                    f"perplexity {r.ppl_increase:+.2f}%" for r in curve.itertuples()],
        hovertemplate="%{customdata}<extra></extra>"))
    for i, r in enumerate(summary.sort_values("p").itertuples()):
        fig.add_trace(go.Scatter(
            x=[100 * r.sparsity], y=[r.ppl_increase], mode="markers", name=p_label(r.p),
            marker={"color": P_COLOURS[i % len(P_COLOURS)], "size": 13, "symbol": "diamond"},
            hovertemplate=f"{p_label(r.p)}: CETT {r.cett:.4f}<br>sparsity {100 * r.sparsity:.1f}%<br>"
                          f"perplexity {r.ppl_increase:+.2f}%<extra></extra>"))
    top = float(np.nanmax([*curve.ppl_increase, *summary.ppl_increase, 1.0]))
    fig.update_layout(title=title("Sparsity against perplexity: zeroing more of every MLP as the shared "
                                  "CETT grows", note),
                      height=440, legend={"title": {"text": "point"}},
                      xaxis={"title": {"text": "sparsity (% of neurons zeroed per token, all layers)"},
                             "range": [0, 100]},
                      yaxis={"title": {"text": "perplexity increase (%)"},
                             "range": [min(0.0, float(curve.ppl_increase.min())) - 1, min(top, 100.0) * 1.1]},
                      margin={"l": 70, "r": 20, "t": 80, "b": 50})
    return fig


def frequency_histogram(neurons: pd.DataFrame, note: str) -> go.Figure:
    """How often each neuron is kept (above its threshold), one histogram per p."""
    fig = go.Figure()
    for i, (p, rows) in enumerate(neurons.groupby("p")):
        dead, always = int(rows.dead.sum()), int(rows.always_on.sum())
        fig.add_trace(go.Histogram(x=rows.frequency, name=f"{p_label(p)} ({dead} dead, {always} always on)",
                                   xbins={"start": 0, "end": 1.0001, "size": 0.02}, opacity=0.6,
                                   marker={"color": P_COLOURS[i % len(P_COLOURS)]},
                                   hovertemplate="kept on %{x} of tokens: %{y} neurons<extra></extra>"))
    fig.update_layout(title=title("How often each neuron fires (is kept) at the PPL-p% thresholds", note),
                      barmode="overlay", height=400, legend={"title": {"text": "thresholds"}},
                      xaxis={"title": {"text": "firing frequency (share of the text's tokens)"}, "range": [0, 1]},
                      yaxis={"title": {"text": "neurons (all layers)"}},
                      margin={"l": 70, "r": 20, "t": 80, "b": 50})
    return fig


def token_heatmap(tokens: pd.DataFrame) -> go.Figure:
    """Layer × position of the first document: the share of the layer's neurons kept at the
    middle p's thresholds."""
    ps = sorted(tokens.p.unique())
    p = ps[len(ps) // 2]
    rows = tokens[(tokens.p == p) & (tokens.document == tokens.document.min())]
    rows = rows[rows.position < MAX_TOKEN_COLUMNS]
    table = rows.pivot(index="layer", columns="position", values="activation_ratio").sort_index()
    words = rows.drop_duplicates("position").sort_values("position").token.astype(str).tolist()
    z = table.to_numpy(dtype=float)
    labels = position_labels(len(words), words)
    hover = cells(z, lambda i, j, v: f"layer {table.index[i]}, position {table.columns[j]} "
                                     f"({labels[j]})<br>{100 * v:.1f}% of neurons kept")
    fig = go.Figure(heatmap(z, hover, signed=False, colorbar="kept", limit=1.0))
    shown = "" if tokens.position.max() < MAX_TOKEN_COLUMNS else f" (first {MAX_TOKEN_COLUMNS} positions)"
    fig.update_layout(title=title(f"Activation ratio per token at the {p_label(p)} thresholds: which "
                                  "tokens light up more of each MLP", f"first document{shown}"),
                      xaxis=axis("token", labels, tickangle=-60), yaxis=axis("layer", [str(i) for i in table.index]),
                      height=grid_height(len(table.index), extra=220), margin={"l": 70, "r": 20, "t": 80, "b": 120})
    return fig
