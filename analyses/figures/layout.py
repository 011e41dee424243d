"""Pieces every figure shares: the one heatmap builder, labels, sizes and grids.

`heatmap(...)` is the only place a `go.Heatmap` is configured: a signed quantity gets a
diverging scale centred on 0 with symmetric limits, an unsigned one a sequential scale
from 0; cells carry hover text; small grids may write their values in the cells.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.text import plot_text

CELL_PX = 34  # height of one heatmap row
DIVERGING = "RdBu"  # red below 0, white at 0, blue above: "toward the clean run" is blue
SEQUENTIAL = "Blues"
MAX_VALUE_TEXT = 16  # columns up to which a small grid writes its values in the cells
MAX_FIGURE_PX = 1400  # tall grids shrink their rows (down to MIN_ROW_PX) to stay near this
MIN_ROW_PX = 8
MIN_PLOT_PX = 160  # a grid of a few rows still gets room for its colour bar


def colour_scale(signed: bool, limit: float, prefix: str = "z") -> dict:
    """Plotly colour-scale settings: centred diverging for signed values, else 0..limit.
    `prefix` is "z" for a trace's own scale, "c" for a shared `coloraxis`."""
    if signed:
        return {"colorscale": DIVERGING, f"{prefix}mid": 0.0, f"{prefix}min": -limit,
                f"{prefix}max": limit}
    return {"colorscale": SEQUENTIAL, f"{prefix}min": 0.0, f"{prefix}max": limit}


def heatmap(z: np.ndarray, hover, *, signed: bool, colorbar: str | None = None,
            limit: float | None = None, values_in_cells: bool = False, text=None,
            coloraxis: str | None = None) -> go.Heatmap:
    """A heatmap trace over cells (row i, column j) at integer coordinates (ticks are the
    layout's job). `hover`: [row][column] strings. `limit`: the scale's end (default: the
    largest |value| when signed, 1 when not). `text`: strings drawn in the cells;
    `values_in_cells`: write each value instead. `coloraxis`: share a scale across panels."""
    z = np.asarray(z, dtype=float)
    trace = dict(z=z, x=list(range(z.shape[1] if z.ndim == 2 else 0)),
                 y=list(range(z.shape[0])), customdata=hover,
                 hovertemplate="%{customdata}<extra></extra>", xgap=1, ygap=1,
                 textfont={"size": 10})
    if coloraxis is not None:
        trace["coloraxis"] = coloraxis
    else:
        end = limit if limit is not None else (symmetric_limit(z) if signed else 1.0)
        trace.update(colour_scale(signed, end), colorbar={"title": {"text": colorbar or ""}})
    trace["texttemplate"] = "%{z:.2f}" if values_in_cells else ""
    if text is not None:
        trace.update(text=text, texttemplate="%{text}")
    return go.Heatmap(**trace)


WINDOW = 40  # positions a layer × position figure shows by default: the last ones
HORIZONTAL_TICKS = 16  # up to this many position labels are written level, more at an angle


def position_window(n_tokens: int, differing=(), last: int = WINDOW) -> list[int] | None:
    """The positions a layer × position figure shows by default: the last `last` and every
    position the prompts differ at (where patching effects start); None (all) when the
    prompt is no longer than that. A view, never part of a link."""
    if n_tokens <= last:
        return None
    return sorted(set(range(n_tokens - last, n_tokens)) | {int(p) for p in differing if 0 <= p < n_tokens})


def differing_positions(clean: list[str] | None, corrupted: list[str] | None) -> list[int]:
    """Where a patching pair's tokens differ (none without both)."""
    if not clean or not corrupted:
        return []
    return [p for p, (a, b) in enumerate(zip(clean, corrupted)) if a != b]


def in_window(frame: pd.DataFrame, positions: list[int] | None, column: str = "position") -> pd.DataFrame:
    """The rows at `positions` (all when None); rows not indexed by position (-1) stay."""
    if positions is None:
        return frame
    return frame[frame[column].isin(positions) | (frame[column] < 0)]


def span_text(positions) -> str:
    """'3, 200–239' for the shown positions: runs written as ranges."""
    values, runs = sorted(int(p) for p in positions), []
    for p in values:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in runs)


def window_note(shown, n_all: int) -> str | None:
    """'positions 3, 200–239 of 240 shown' when a window hides some, else None."""
    shown = sorted({int(p) for p in shown if p >= 0})
    return f"positions {span_text(shown)} of {n_all} shown" if len(shown) < n_all else None


def tick_angle(n_ticks: int) -> int:
    """Level labels when they fit, slanted when many."""
    return 0 if n_ticks <= HORIZONTAL_TICKS else -45


def axis(title: str, ticks: list[str], **extra) -> dict:
    """An axis of labelled integer ticks (a heatmap's): no grid or zero line, which would
    show through the gaps between cells."""
    return {"title": {"text": title}, "tickmode": "array", "tickvals": list(range(len(ticks))),
            "ticktext": ticks, "showgrid": False, "zeroline": False, **extra}


# Every figure's look, whatever plotly's default template is in the process (importing
# Streamlit makes it Streamlit's, whose placeholder colours only its own chart element
# replaces): the page, the downloads and a notebook show the same figure.
TEMPLATE = "plotly_white"


def house_style(figures: dict) -> dict:
    """`figures` (name -> plotly Figure) with the workbench's template; returns them."""
    for fig in figures.values():
        fig.update_layout(template=TEMPLATE)
    return figures


def position_labels(n: int, clean: list[str] | None = None,
                    corrupted: list[str] | None = None) -> list[str]:
    """Tick text for positions 0..n-1: the clean token (␣ for its spaces), `clean→corrupted`
    where a patching pair differs, or the bare position where no tokens are known."""
    labels = []
    for p in range(n):
        a = clean[p] if clean is not None and p < len(clean) else None
        b = corrupted[p] if corrupted is not None and p < len(corrupted) else None
        if a is None:
            labels.append(str(p))
        elif b is None or a == b:
            labels.append(plot_text(a, visible_spaces=True))
        else:
            labels.append(f"{plot_text(a, visible_spaces=True)}→{plot_text(b, visible_spaces=True)}")
    return labels


# One label format for heads everywhere (figures, hover text, the pages' links): "L0H0"
# names a head; "H0" is a tick on an axis of heads (the layer is the other axis).
def head_label(layer: int, head: int) -> str:
    return f"L{int(layer)}H{int(head)}"


def head_tick(head: int) -> str:
    return f"H{int(head)}"


def neuron_label(layer: int, neuron: int) -> str:
    return f"L{int(layer)} N{int(neuron)}"


def symmetric_limit(*arrays) -> float:
    """The largest |value| over `arrays` (NaN ignored), for a colour scale centred on 0;
    1.0 when there is none."""
    finite = [np.abs(a[np.isfinite(a)]) for a in (np.asarray(x, dtype=float) for x in arrays)]
    top = max((float(a.max()) for a in finite if a.size), default=0.0)
    return top if top > 0 else 1.0


def layer_head_axes(x_ticks: list[str], y_ticks: list[str]) -> dict:
    """Layout of a layer (rows) × head (columns) grid: labelled ticks, height to fit."""
    return dict(xaxis=axis("head", x_ticks), yaxis=axis("layer", y_ticks),
                height=grid_height(len(y_ticks)), margin={"l": 70, "r": 20, "t": 50, "b": 50})


def grid_height(n_rows: int, extra: int = 140) -> int:
    """Figure height for a grid of `n_rows` plus `extra` pixels of title and axes:
    `CELL_PX` rows, thinner when there are many, at least `MIN_PLOT_PX` in all."""
    row = max(MIN_ROW_PX, min(CELL_PX, (MAX_FIGURE_PX - extra) // max(n_rows, 1)))
    return extra + max(MIN_PLOT_PX, row * n_rows)


def title(text: str, note: str | None = None) -> dict:
    """A title with an optional smaller second line (both already escaped)."""
    return {"text": text + (f"<br><sup>{note}</sup>" if note else "")}


def grid(frame: pd.DataFrame, index: list[str], columns: str, values: str) -> pd.DataFrame:
    """A tidy table as a [row, column] grid: rows `index` sorted, columns sorted."""
    return frame.pivot(index=index, columns=columns, values=values).sort_index().sort_index(axis=1)


def row_labels(index: pd.Index) -> list[str]:
    if isinstance(index, pd.MultiIndex):  # (layer, head)
        return [head_label(layer, head) for layer, head in index]
    return [str(int(layer)) for layer in index]


def cells(z: np.ndarray, hover) -> list[list[str]]:
    """[row][column] hover strings from hover(i, j, value)."""
    return [[hover(i, j, z[i, j]) for j in range(z.shape[1])] for i in range(z.shape[0])]
