"""Activation patching figures: one heatmap per granularity, and sender × receiver grids
for direct paths. Values are the share of the clean − corrupted logit difference restored
(1 = the clean run, 0 = the corrupted run), on a scale centred at 0."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import (
    MAX_VALUE_TEXT,
    axis,
    cells,
    differing_positions,
    grid,
    grid_height,
    head_label,
    head_tick,
    heatmap,
    in_window,
    position_labels,
    position_window,
    row_labels,
    symmetric_limit,
    tick_angle,
    title,
    window_note,
)
from analyses.figures.text import plot_text


def figures(result, positions: list[int] | None = None) -> dict[str, go.Figure]:
    """Every granularity in the result, in table order; direct paths one figure per
    receiver input (q, k, v), each on a scale of its own values (printed in its cells: a
    scale shared with the strongest input left the others blank). `positions`:
    the positions layer × position figures show (default: the last `WINDOW` and every
    position the prompts differ at)."""
    meta, effects = result.meta, result.tables["effects"]
    baselines = (meta["clean_baseline"], meta["corrupted_baseline"])
    clean, corrupted = meta.get("clean_tokens"), meta.get("corrupted_tokens")
    if positions is None:
        positions = position_window(int(meta.get("n_tokens") or len(clean or [])),
                                    differing_positions(clean, corrupted))
    shown = {}
    for granularity in dict.fromkeys(effects["granularity"]):
        if granularity == "direct_path":
            paths = effects[effects["granularity"] == granularity]
            for name in dict.fromkeys(paths["receiver_input"]):
                shown[f"direct_path_{name}"] = path_heatmap(effects, name, baselines)
            continue
        shown[granularity] = patching_heatmap(effects, granularity, clean, corrupted, baselines, positions)
    return shown


def patching_heatmap(effects: pd.DataFrame, granularity: str, clean_tokens: list[str] | None = None,
                     corrupted_tokens: list[str] | None = None,
                     baselines: tuple[float, float] | None = None,
                     positions: list[int] | None = None) -> go.Figure:
    """One granularity of the activation patching `effects` table as a heatmap of `value`
    (1 = the clean run's logit difference restored, 0 = the corrupted run's).

    Layout by what a cell indexes: layer × position (residual, attn_out, mlp_out), layer ×
    head (head_* over all positions), or (layer, head) × position (head_*_by_pos). Positions
    are labelled by the input tokens (`clean→corrupted` where they differ) when given.
    `baselines`: (clean, corrupted) logit differences, shown under the title. `positions`:
    only these positions (a window of a long prompt; default all).
    """
    rows = effects[effects["granularity"] == granularity]
    n_all = int(rows["position"].max()) + 1 if len(rows) else 0
    rows = in_window(rows, positions)
    by_position = bool((rows["position"] >= 0).any())
    per_head = bool((rows["head"] >= 0).any())
    index = ["layer", "head"] if by_position and per_head else ["layer"]
    columns = "position" if by_position else "head"
    value = grid(rows, index, columns, "value")
    raw = grid(rows, index, columns, "raw").reindex(index=value.index, columns=value.columns)
    z, r = value.to_numpy(dtype=float), raw.to_numpy(dtype=float)
    y_ticks = row_labels(value.index)
    if by_position:
        n_tokens = int(value.columns.max()) + 1 if len(value.columns) else 0
        names = position_labels(n_tokens, clean_tokens, corrupted_tokens)
        x_ticks = [names[int(p)] for p in value.columns]
        x_desc = [f"position {int(p)} ({names[int(p)]})" for p in value.columns]
    else:
        x_ticks = [head_tick(h) for h in value.columns]
        x_desc = [f"head {head_tick(h)}" for h in value.columns]
    row_desc = [head_label(*key) if per_head and by_position else f"layer {int(key)}"
                for key in value.index]
    hover = cells(z, lambda i, j, v: f"{row_desc[i]} · {x_desc[j]}<br>restored {v:.3f} of the gap"
                                     f"<br>logit difference {r[i, j]:.3f}")
    small = not by_position and len(x_ticks) <= MAX_VALUE_TEXT
    fig = go.Figure(heatmap(z, hover, signed=True, colorbar="restored", values_in_cells=small))
    notes = []
    if baselines is not None:
        clean, corrupted = baselines
        notes.append(f"logit difference: clean {clean:.3f}, corrupted {corrupted:.3f} "
                     "· 1 = clean run, 0 = corrupted run")
    if by_position and window_note(value.columns, n_all):
        notes.append(window_note(value.columns, n_all))
    fig.update_layout(
        title=title(f"Activation patching, {plot_text(granularity)}: share of the logit "
                    "difference restored by each patch", " · ".join(notes) or None),
        xaxis=axis("input token (position)" if by_position else "head", x_ticks,
                   tickangle=tick_angle(len(x_ticks)) if by_position else 0),
        yaxis=axis("layer, head" if len(index) == 2 else "layer", y_ticks),
        height=grid_height(len(y_ticks), extra=170), margin={"l": 80, "r": 20, "t": 80, "b": 90},
    )
    return fig


def path_heatmap(effects: pd.DataFrame, receiver_input: str,
                 baselines: tuple[float, float] | None = None,
                 limit: float | None = None) -> go.Figure:
    """The `direct_path` rows of `effects` for one receiver input (q, k or v) as a sender head
    × receiver head heatmap of `value` (share of the logit difference restored by that path).
    `limit`: the colour scale's end (default: this input's largest |value|). Values are
    written in the cells while the grid is narrow enough to read them."""
    rows = effects[(effects["granularity"] == "direct_path")
                   & (effects["receiver_input"] == receiver_input)]
    value = rows.pivot_table(index=["sender_layer", "sender_head"], columns=["layer", "head"],
                             values="value", aggfunc="first")
    raw = rows.pivot_table(index=["sender_layer", "sender_head"], columns=["layer", "head"],
                           values="raw", aggfunc="first").reindex_like(value)
    z, r = value.to_numpy(dtype=float), raw.to_numpy(dtype=float)
    y_ticks = [head_label(lay, h) for lay, h in value.index]
    x_ticks = [head_label(lay, h) for lay, h in value.columns]
    hover = cells(z, lambda i, j, v: f"{y_ticks[i]} → {x_ticks[j]} {receiver_input}<br>"
                                     f"restored {v:.4g} of the gap<br>logit difference {r[i, j]:.3f}")
    limit = symmetric_limit(z) if limit is None else limit
    notes = [f"colour scale ±{limit:.3g} (this input's largest |value|), centred at 0"]
    if baselines is not None:
        notes.insert(0, f"logit difference: clean {baselines[0]:.3f}, corrupted {baselines[1]:.3f}")
    notes.append("blank: no such path (the receiver must lie in a later layer)")
    text = value_text(z, limit) if len(x_ticks) <= MAX_VALUE_TEXT else None
    fig = go.Figure(heatmap(z, hover, signed=True, colorbar="restored", limit=limit, text=text))
    fig.update_layout(
        title=title(f"Direct paths into the receivers' {receiver_input} input: share of the "
                    "logit difference restored by each sender → receiver path", " · ".join(notes)),
        xaxis=axis(f"receiver head ({receiver_input} input)", x_ticks, tickangle=-45),
        yaxis=axis("sender head", y_ticks),
        height=grid_height(len(y_ticks), extra=190), margin={"l": 80, "r": 20, "t": 80, "b": 100},
    )
    return fig


def value_text(z: np.ndarray, limit: float) -> list[list[str]]:
    """Each cell's value to the digits the scale needs (two significant at `limit`); blank
    where it rounds to 0 or there is no value, so the cells that matter stand out."""
    decimals = max(2, 1 - int(np.floor(np.log10(limit)))) if limit > 0 else 2
    def one(v: float) -> str:
        if not np.isfinite(v) or round(v, decimals) == 0:
            return ""
        return f"{v:.{decimals}f}"
    return [[one(float(v)) for v in row] for row in np.asarray(z, dtype=float)]
