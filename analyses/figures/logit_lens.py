"""Logit lens figures: the layer × position top-1 heatmap and the target tokens' ranks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import (
    CELL_PX,
    axis,
    heatmap,
    in_window,
    position_window,
    span_text,
    tick_angle,
    title,
)
from analyses.figures.text import plot_text

MAX_CELL_TEXT = 10  # characters of a token drawn inside a cell (the hover has all of it)
MAX_TEXT_COLUMNS = 48  # wider heatmaps leave cells blank: the text would not fit
MAX_HOVER_K = 10  # tokens listed per cell on hover (a top-100 table would make it megabytes)


def figures(result, positions: list[int] | None = None) -> dict[str, go.Figure]:
    """`positions`: the input positions the heatmap shows (default: the last `WINDOW`, or
    every position read when the spec read out a window of its own)."""
    top = result.tables["top"]
    n_tokens = int(result.meta.get("n_tokens") or int(top["position"].max()) + 1)
    if positions is None and not getattr(result.spec, "positions", None):
        positions = position_window(n_tokens)
    shown = {"heatmap": logit_lens_heatmap(top, positions, n_tokens)}
    if "targets" in result.tables:
        last = n_tokens - 1
        shown["target_ranks"] = target_rank_chart(
            result.tables["targets"], last if (result.tables["targets"]["position"] == last).any() else None,
            n_tokens)
    return shown


def logit_lens_heatmap(top: pd.DataFrame, positions: list[int] | None = None,
                      n_tokens: int | None = None) -> go.Figure:
    """Layer × position heatmap of the top-1 token's probability, the token in each cell.

    `top`: the logit lens `top` table (layer, layer_index, position, token, rank,
    token_str, prob, …). x: input positions labelled by their tokens; y: layers, first at
    the bottom; hover: the cell's top-k list (at most `MAX_HOVER_K`). `positions`: only
    these input positions (a window of a long prompt; default all). `n_tokens`: the prompt's
    length (default: one past the last position in `top`).
    """
    n_all = n_tokens or (int(top["position"].max()) + 1 if len(top) else 0)
    top = in_window(top, positions)
    first = top[top["rank"] == 1]
    layers = first.drop_duplicates("layer_index").sort_values("layer_index")
    inputs = first.drop_duplicates("position").sort_values("position")
    n_layer, n_pos = len(layers), len(inputs)
    layer_row = {li: i for i, li in enumerate(layers["layer_index"])}
    pos_col = {p: j for j, p in enumerate(inputs["position"])}

    z = np.full((n_layer, n_pos), np.nan)
    cell = np.full((n_layer, n_pos), "", dtype=object)
    for li, p, prob, tok in first[["layer_index", "position", "prob", "token_str"]].itertuples(index=False):
        z[layer_row[li], pos_col[p]] = prob
        cell[layer_row[li], pos_col[p]] = plot_text(_clip(tok, cell_chars(n_pos)), visible_spaces=True)

    hover = np.full((n_layer, n_pos), "", dtype=object)
    input_of = dict(zip(inputs["position"], inputs["token"]))
    layer_of = dict(zip(layers["layer_index"], layers["layer"]))
    listed = top[top["rank"] <= MAX_HOVER_K].sort_values("rank")
    for (li, p), group in listed.groupby(["layer_index", "position"], sort=False):
        lines = [f"{r}. {plot_text(t, visible_spaces=True)} &nbsp; {pr:.3f}"
                 for r, t, pr in group[["rank", "token_str", "prob"]].itertuples(index=False)]
        head = (f"layer {plot_text(str(layer_of[li]))} · position {p} "
                f"({plot_text(input_of[p], visible_spaces=True)})")
        hover[layer_row[li], pos_col[p]] = "<br>".join([head, *lines])

    fig = go.Figure(heatmap(z, hover, signed=False, colorbar="top-1 prob",
                            text=cell if n_pos <= MAX_TEXT_COLUMNS else None))
    windowed = n_pos < n_all
    ticks = [plot_text(t, visible_spaces=True) + (f" {p}" if windowed else "")
             for t, p in zip(inputs["token"], inputs["position"])]
    fig.update_layout(
        title=title("Top-1 prediction at each layer and position",
                    f"positions {span_text(inputs['position'])} of {n_all} shown" if windowed else None),
        xaxis=axis("input token (position)", ticks, tickangle=tick_angle(n_pos)),
        yaxis=axis("layer", [plot_text(str(name)) for name in layers["layer"]]),
        height=max(260, 140 + CELL_PX * n_layer), margin={"l": 90, "r": 20, "t": 50, "b": 90},
    )
    return fig


def target_rank_chart(targets: pd.DataFrame, position: int | None = None,
                      n_tokens: int | None = None) -> go.Figure:
    """Each target token's rank across layers at one position (default: the last read), on a
    log scale with rank 1 at the top. `targets`: the logit lens `targets` table."""
    position = int(targets["position"].max()) if position is None else position
    at = targets[targets["position"] == position].sort_values("layer_index")
    layers = at.drop_duplicates("layer_index")
    ticks = rank_ticks(int(at["rank"].max()) if len(at) else 1)
    fig = go.Figure()
    for _, line in at.groupby("token_id", sort=False):
        name = plot_text(str(line["token_str"].iloc[0]), visible_spaces=True)
        fig.add_trace(go.Scatter(
            x=line["layer_index"], y=line["rank"], mode="lines+markers", name=name,
            customdata=list(zip(line["layer"].astype(str).map(plot_text), line["prob"],
                                [name] * len(line))),
            hovertemplate="%{customdata[2]}<br>layer %{customdata[0]}<br>rank %{y}"
                          "<br>prob %{customdata[1]:.4f}<extra></extra>",
        ))
    fig.update_layout(
        title={"text": f"Rank of each target token at the last position ({position})"
                       if position == (n_tokens - 1 if n_tokens else targets["position"].max())
                       else f"Rank of each target token at position {position} (the last one read)"},
        xaxis={"title": {"text": "layer"}, "tickmode": "array",
               "tickvals": list(layers["layer_index"]),
               "ticktext": [plot_text(str(n)) for n in layers["layer"]]},
        yaxis={"title": {"text": "rank (1 = top prediction)"}, "type": "log",
               "autorange": "reversed", "tickmode": "array", "tickvals": ticks,
               "ticktext": [f"{t:,}" for t in ticks]},
        height=360, legend={"title": {"text": "target"}},
        margin={"l": 70, "r": 20, "t": 50, "b": 50},
    )
    return fig


def rank_ticks(highest: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, … up to the first tick at or above `highest`."""
    ticks, decade = [], 1
    while not ticks or ticks[-1] < highest:
        ticks.extend(m * decade for m in (1, 2, 5))
        decade *= 10
    return [t for i, t in enumerate(ticks) if i == 0 or ticks[i - 1] < highest]


def cell_chars(n_pos: int) -> int:
    """Characters a cell's token gets: `MAX_CELL_TEXT`, fewer as columns narrow (40 columns: 6)."""
    return min(MAX_CELL_TEXT, max(3, 240 // max(n_pos, 1)))


def _clip(token: str, chars: int = MAX_CELL_TEXT) -> str:
    return token if len(token) <= chars else token[: chars - 1] + "…"
