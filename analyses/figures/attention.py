"""Attention figures: a layer × head grid of every pattern in small, and one head's pattern
large with the prompt's tokens on both axes. Weights are probabilities: a 0–1 scale."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures.layout import (
    MAX_VALUE_TEXT,
    axis,
    grid_height,
    head_label,
    head_tick,
    heatmap,
    tick_angle,
    title,
)
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


# --------------------------------------------------------------------------- prompt sets

def set_figures(result) -> dict[str, go.Figure]:
    """Over a prompt set: where each head's last query looks, on average over the prompts of
    the commonest length, and how much it attends to the answer's and the wrong answer's
    tokens; each mean with Student's t 95% interval on hover."""
    shown = {}
    last = result.tables.get("last_summary")
    if last is not None and len(last):
        shown["last_by_head"] = last_position_means(last, result.tables.get("examples"))
    answers = result.tables.get("answers_summary")
    if answers is not None and len(answers):
        shown["to_answers"] = answer_means(answers)
    return shown


def _head_rows(frame: pd.DataFrame) -> list[tuple[int, int]]:
    return sorted({(int(layer), int(head)) for layer, head in zip(frame["layer"], frame["head"])})


def last_position_means(summary: pd.DataFrame, examples: pd.DataFrame | None) -> go.Figure:
    """Heads (rows, L0H0 at the top) × key positions of the commonest prompt length: the mean
    weight the last query gives each position, positions named by that length's first
    example's tokens (a position holds the same role only within one length)."""
    sizes = summary.groupby("n_tokens")["n"].max()
    length = int(sizes.idxmax())
    rows = summary[summary["n_tokens"] == length]
    heads = _head_rows(rows)
    index = {h: i for i, h in enumerate(heads)}
    z, low, high = (np.full((len(heads), length), np.nan) for _ in range(3))
    for r in rows.itertuples():
        i, p = index[(int(r.layer), int(r.head))], int(r.position)
        z[i, p], low[i, p], high[i, p] = r.mean, r.ci_low, r.ci_high
    tokens, first = None, None
    if examples is not None and "tokens" in examples.columns:
        same = examples[examples["n_tokens"] == length]
        if len(same):
            first = same.iloc[0]
            tokens = json.loads(first["tokens"])
    names = [plot_text(tokens[p], visible_spaces=True) if tokens and p < len(tokens) else str(p)
             for p in range(length)]
    labels = [f"L{layer}H{head}" for layer, head in heads]
    n = int(rows["n"].max())

    def hover(i: int, j: int) -> str:
        return (f"{labels[i]}: last position → position {j} ({names[j]})<br>mean weight {z[i, j]:.3f}"
                f"<br>95% interval (t) {low[i, j]:.3f} to {high[i, j]:.3f}<br>n = {n}")

    hovers = [[hover(i, j) for j in range(length)] for i in range(len(heads))]
    fig = go.Figure(heatmap(z, hovers, signed=False, colorbar="mean attention weight",
                            values_in_cells=length <= MAX_VALUE_TEXT))
    others = [f"{int(k)} tokens (n = {int(v)})" for k, v in sizes.items() if int(k) != length]
    note = (f"prompts of {length} tokens, n = {n}" + (f"; tokens of example {int(first['example'])}"
                                                       if first is not None else "")
            + (f"; other lengths in the tables: {', '.join(others)}" if others else ""))
    fig.update_layout(
        title=title("Where each head's last position looks, averaged over the set", note),
        xaxis=axis("key token (position)", names, tickangle=-45 if long_labels(names) else tick_angle(length)),
        yaxis=axis("head", labels, autorange="reversed"),
        height=grid_height(len(heads), extra=200), margin={"l": 110, "r": 20, "t": 90, "b": 110})
    return fig


def long_labels(names: list[str], width_px: int = 1000) -> bool:
    """Whether level tick labels would run together (~7 px a character across ~1000 px)."""
    return max(map(len, names), default=0) * 7 > width_px / max(1, len(names))


def answer_means(summary: pd.DataFrame) -> go.Figure:
    """Layer × head grids, side by side, of the mean weight the last query gives the prompt's
    positions holding the answer's token and the wrong answer's (0–1, values printed)."""
    targets = [t for t in ("answer", "wrong") if t in set(summary["target"])]
    layers = sorted(int(v) for v in summary["layer"].unique())
    heads = sorted(int(v) for v in summary["head"].unique())
    fig = make_subplots(rows=1, cols=len(targets), horizontal_spacing=0.08,
                        subplot_titles=[f"to the {'answer' if t == 'answer' else 'wrong answer'}'s tokens"
                                        for t in targets])
    for c, target in enumerate(targets, start=1):
        rows = summary[summary["target"] == target]
        z, low, high, count = (np.full((len(layers), len(heads)), np.nan) for _ in range(4))
        for r in rows.itertuples():
            i, j = layers.index(int(r.layer)), heads.index(int(r.head))
            z[i, j], low[i, j], high[i, j], count[i, j] = r.mean, r.ci_low, r.ci_high, r.n
        hovers = [[f"{head_label(layers[i], heads[j])} → the {target} token<br>mean weight {z[i, j]:.3f}"
                   f"<br>95% interval (t) {low[i, j]:.3f} to {high[i, j]:.3f}<br>n = {int(count[i, j])}"
                   for j in range(len(heads))] for i in range(len(layers))]
        fig.add_trace(heatmap(z, hovers, signed=False, coloraxis="coloraxis", values_in_cells=True), row=1, col=c)
        fig.update_xaxes(axis("head", [f"H{h}" for h in heads]), row=1, col=c)
        fig.update_yaxes(axis("layer", [f"L{layer}" for layer in layers]), row=1, col=c)
    fig.update_layout(
        title=title("How much each head's last position attends to the answer and to the wrong answer",
                    "mean over the set of the summed weight on the prompt positions holding each token "
                    "(after BOS); hover for the 95% interval"),
        coloraxis={"colorscale": "Blues", "cmin": 0.0, "cmax": 1.0,
                   "colorbar": {"title": {"text": "mean attention weight"}}},
        height=grid_height(len(layers), extra=190), margin={"l": 70, "r": 20, "t": 110, "b": 60})
    return fig
