"""Ablation sweep figures: a layer × (heads + MLP) grid of what knocking out each component
does, one for the metric's change from the intact model (a diverging scale centred on 0)
and one for top-1 (the answer still the top token: 0–1).

On a prompt set each cell is a mean over the examples with its 95% interval on hover: for
the change, Student's t on each example's paired difference from its own intact run; for
top-1, Wilson's interval of the accuracy (`analyses/core/summary.py`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import axis, grid_height, heatmap, title
from analyses.figures.text import plot_text

MLP = "MLP"  # the grid's last column: each layer's MLP


def figures(result) -> dict[str, go.Figure]:
    cells = sweep_cells(result)
    intact = cells[cells["component"] == "intact"].iloc[0]
    swept = cells[cells["component"] != "intact"]
    n = int(intact["n"]) if result.spec.dataset else None
    over = f"mean over {n} examples" if n else "one prompt"
    note = f"{over}; {ablation(result)} ablation after BOS"
    return {"delta": component_grid(swept, "delta", f"Change in {metric_text(result)} when each component "
                                    "is knocked out", signed=True, n=n,
                                    note=f"{note}; intact model: {intact['metric']:.3f}"),
            "top1": component_grid(swept, "top1", "Top-1 (the answer still the top next token) with each "
                                   "component knocked out", signed=False, n=n,
                                   note=f"{note}; intact model: {intact['top1']:.2f}")}


def ablation(result) -> str:
    return str(result.spec.with_defaults().ablation)


def metric_text(result) -> str:
    """What the metric is, as the title says it."""
    spec = result.spec
    if spec.dataset:
        examples = result.tables.get("examples")
        with_wrong = examples is not None and "wrong" in examples.columns and examples["wrong"].notna().all()
        return "logit(answer) − logit(wrong)" if with_wrong else "log p(answer)"
    return plot_text(result.meta.get("metric") or "the metric")


def sweep_cells(result) -> pd.DataFrame:
    """One row per component (and `intact`): its keys and, per quantity (`metric`, `delta`,
    `top1`), the value and its interval (`<quantity>_low`, `<quantity>_high`; NaN on one
    prompt) and `n`."""
    keys = ["component", "site", "layer", "head"]
    summary = result.tables.get("effects_summary")
    if summary is None:  # one prompt: the values themselves
        return result.tables["effects"].assign(n=1)
    wide = summary.pivot_table(index=keys, columns="quantity", values=["mean", "ci_low", "ci_high", "n"],
                               aggfunc="first", sort=False)
    out = pd.DataFrame(index=wide.index)
    for quantity in ("metric", "delta", "top1"):
        out[quantity] = wide[("mean", quantity)]
        out[f"{quantity}_low"], out[f"{quantity}_high"] = wide[("ci_low", quantity)], wide[("ci_high", quantity)]
    out["n"] = wide[("n", "delta")].astype(int)
    return out.reset_index()


def grid_of(cells: pd.DataFrame, column: str) -> tuple[np.ndarray, list[int], int]:
    """[layer, head + MLP] values of `column` (NaN where a cell is absent), the layers and the
    head count."""
    layers = sorted(int(v) for v in cells["layer"].unique())
    heads = sorted(int(v) for v in cells.loc[cells["site"] == "head", "head"].unique())
    z = np.full((len(layers), len(heads) + 1), np.nan)
    for row in cells.itertuples():
        col = len(heads) if row.site == "mlp" else heads.index(int(row.head))
        z[layers.index(int(row.layer)), col] = getattr(row, column)
    return z, layers, len(heads)


def component_grid(cells: pd.DataFrame, column: str, heading: str, *, signed: bool, n: int | None,
                   note: str) -> go.Figure:
    """Layers (rows, layer 0 at the bottom) × heads and the layer's MLP (columns), each cell
    its component's `column` printed in it; hover: the component, the value and its interval."""
    z, layers, n_heads = grid_of(cells, column)
    low = grid_of(cells, f"{column}_low")[0] if f"{column}_low" in cells else np.full_like(z, np.nan)
    high = grid_of(cells, f"{column}_high")[0] if f"{column}_high" in cells else np.full_like(z, np.nan)
    columns = [f"H{h}" for h in range(n_heads)] + [MLP]
    labels = [[f"L{layer}H{h}" if h < n_heads else f"L{layer} MLP" for h in range(n_heads + 1)] for layer in layers]
    interval = "Student's t of the paired differences" if signed else "Wilson"

    def hover(i: int, j: int) -> str:
        text = f"{labels[i][j]} knocked out<br>{column} {z[i, j]:.3f}"
        if n and np.isfinite(low[i, j]):
            text += f"<br>95% interval ({interval}) {low[i, j]:.3f} to {high[i, j]:.3f}<br>n = {n}"
        return text + "<br>its knock-out: one link away in the table below"

    hovers = [[hover(i, j) for j in range(z.shape[1])] for i in range(z.shape[0])]
    text = [[f"{labels[i][j]}<br>{z[i, j]:.2f}" if np.isfinite(z[i, j]) else "" for j in range(z.shape[1])]
            for i in range(z.shape[0])]
    fig = go.Figure(heatmap(z, hovers, signed=signed, text=text,
                            colorbar="change (logits)" if signed else "top-1 share"))
    fig.update_layout(
        title=title(plot_text(heading), note + ("; hover a cell for its 95% interval" if n else "")),
        xaxis=axis("head (and the layer's MLP)", columns),
        yaxis=axis("layer", [f"L{layer}" for layer in layers]),
        height=grid_height(len(layers), extra=170) + 20 * len(layers),
        margin={"l": 70, "r": 20, "t": 90, "b": 60})
    return fig
