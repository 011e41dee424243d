"""Attention figures: a layer × head grid of every pattern in small, and one head's pattern
large with the prompt's tokens on both axes. Weights are probabilities: a 0–1 scale."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures.layout import axis, head_label, head_tick, heatmap, title
from analyses.figures.text import plot_text

THUMBNAIL_CELLS = 48  # a small pattern shows at most this many query and key bins
MAX_TICK_LABELS = 60  # a large pattern labels every token up to this many, else every n-th
PANEL_PX = 300  # the tallest a grid row gets (one head alone)


def figures(result) -> dict[str, go.Figure]:
    """The grid of every pattern read, then the first head's pattern large."""
    patterns, tokens = result.tables["patterns"], result.meta.get("tokens")
    first = patterns.iloc[0]
    return {"grid": pattern_grid(patterns),
            "pattern": head_pattern(patterns, int(first["layer"]), int(first["head"]), tokens)}


def pattern_matrix(patterns: pd.DataFrame, layer: int, head: int) -> np.ndarray:
    """[query, key] weights of one head (NaN above the diagonal: masked keys)."""
    rows = patterns[(patterns["layer"] == layer) & (patterns["head"] == head)]
    n = int(rows["query_pos"].max()) + 1 if len(rows) else 0
    matrix = np.full((n, n), np.nan)
    matrix[rows["query_pos"].to_numpy(), rows["key_pos"].to_numpy()] = rows["weight"].to_numpy()
    return matrix


def thumbnail(matrix: np.ndarray, cells: int = THUMBNAIL_CELLS) -> np.ndarray:
    """The matrix in at most `cells` × `cells` bins, each the largest weight inside it, so a
    sharp stripe (previous-token, induction) stays visible in a long prompt."""
    n = len(matrix)
    if n <= cells:
        return matrix
    edges = np.linspace(0, n, cells + 1).astype(int)
    out = np.full((cells, cells), np.nan)
    for i in range(cells):
        for j in range(i + 1):
            block = matrix[edges[i]:edges[i + 1], edges[j]:edges[j + 1]]
            if np.isfinite(block).any():
                out[i, j] = np.nanmax(block)
    return out


def pattern_grid(patterns: pd.DataFrame) -> go.Figure:
    """Every (layer, head) read as a small pattern: rows are layers (last at the top), columns
    heads; one shared 0–1 scale. Long prompts are binned (the largest weight per bin)."""
    layers = sorted(int(v) for v in patterns["layer"].unique())[::-1]
    heads = sorted(int(v) for v in patterns["head"].unique())
    fig = make_subplots(rows=len(layers), cols=len(heads), horizontal_spacing=0.01,
                        vertical_spacing=0.02 if len(layers) > 1 else 0.0,
                        row_titles=[f"L{layer}" for layer in layers],
                        column_titles=[head_tick(head) for head in heads])
    binned = False
    for r, layer in enumerate(layers, start=1):
        for c, head in enumerate(heads, start=1):
            matrix = pattern_matrix(patterns, layer, head)
            small = thumbnail(matrix)
            binned |= small.shape != matrix.shape
            hover = [[f"{head_label(layer, head)}: query bin {i}, key bin {j}, weight {v:.3f}"
                      for j, v in enumerate(row)] for i, row in enumerate(small)]
            fig.add_trace(heatmap(small, hover, signed=False, coloraxis="coloraxis"), row=r, col=c)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")  # query 0 at the top
    note = "each panel: query position down, key position across" + (
        f"; long prompt shown in {THUMBNAIL_CELLS} bins, the largest weight in each" if binned else "")
    fig.update_layout(
        title=title(grid_title(layers, heads), note),
        coloraxis={"colorscale": "Blues", "cmin": 0.0, "cmax": 1.0,
                   "colorbar": {"title": {"text": "attention weight"}}},
        height=110 + len(layers) * min(PANEL_PX, max(70, 1100 // len(heads))),  # panels near square
        margin={"l": 40, "r": 20, "t": 90, "b": 20},
    )
    return fig


def grid_title(layers: list[int], heads: list[int]) -> str:
    """What the grid shows: one head by its name, several as every head read."""
    if len(layers) == 1 and len(heads) == 1:
        return f"Attention pattern of {head_label(layers[0], heads[0])} (below, large, with its tokens)"
    return "Attention pattern of every head read (pick one below to see it with its tokens)"


def tick_labels(tokens: list[str] | None, n: int) -> tuple[list[int], list[str]]:
    """Tick positions and texts for n positions: every token, or every k-th on long prompts
    and then the last position too."""
    step = max(1, int(np.ceil(n / MAX_TICK_LABELS)))
    where = list(range(0, n, step))
    if where and where[-1] != n - 1:  # the last position (the query that predicts) always labelled:
        if n - 1 - where[-1] < step / 2:  # near the last label, it takes that label's place
            where[-1] = n - 1
        else:
            where.append(n - 1)
    names = [plot_text(tokens[p], visible_spaces=True) if tokens and p < len(tokens) else str(p)
             for p in where]
    return where, [f"{name} ({p})" if step > 1 else name for p, name in zip(where, names)]


def head_pattern(patterns: pd.DataFrame, layer: int, head: int,
                 tokens: list[str] | None = None) -> go.Figure:
    """One head's pattern: query tokens down, key tokens across, the weight on hover as
    query token → key token."""
    matrix = pattern_matrix(patterns, layer, head)
    n = len(matrix)
    shown = [plot_text(tokens[p], visible_spaces=True) if tokens and p < len(tokens) else str(p)
             for p in range(n)]
    hover = [[f"query {q} {shown[q]} → key {k} {shown[k]}<br>weight {matrix[q, k]:.4f}" if k <= q else ""
              for k in range(n)] for q in range(n)]
    where, labels = tick_labels(tokens, n)
    fig = go.Figure(heatmap(matrix, hover, signed=False, colorbar="attention weight"))
    angle = 0 if n <= 12 else -60
    fig.update_layout(
        title=title(f"Head {head_label(layer, head)}: where each query position attends",
                    "rows: query (the position reading); columns: key (the position read); "
                    "each row sums to 1"),
        xaxis={**axis("key token (position)", labels), "tickvals": where, "tickangle": angle},
        yaxis={**axis("query token (position)", labels), "tickvals": where, "autorange": "reversed"},
        height=min(1000, max(420, 220 + 14 * min(n, MAX_TICK_LABELS))),
        margin={"l": 120, "r": 20, "t": 90, "b": 120},
    )
    return fig
