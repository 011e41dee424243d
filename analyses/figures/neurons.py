"""Neuron atlas figures: the neurons that promote a token, one neuron's promoted and
suppressed tokens, and neurons' activations on a prompt."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures.layout import (
    cells,
    grid_height,
    heatmap,
    in_window,
    neuron_label,
    position_window,
    tick_angle,
    title,
    window_note,
)
from analyses.figures.text import plot_text


def figures(result, positions: list[int] | None = None) -> dict[str, go.Figure]:
    """The promoters of each target token and, with a prompt, the most active neurons (on
    `positions`; default: the last `WINDOW`). (One neuron's own charts depend on which
    neuron a viewer picks: `neuron_tokens_chart`.)"""
    tables, shown = result.tables, {}
    if "promoters" in tables:
        promoters = tables["promoters"]
        for i, token_id in enumerate(dict.fromkeys(promoters["token_id"])):
            shown[f"promoters_{i}"] = neuron_promoters_chart(promoters, token_id)
    activations = tables.get("activations")
    if activations is not None and len(activations.drop_duplicates(["layer", "neuron"])) > 1:
        if positions is None:
            positions = position_window(int(activations["position"].max()) + 1)
        shown["activations"] = neuron_activations_chart(activations, positions)
    return shown


def neuron_promoters_chart(promoters: pd.DataFrame, token_id: int) -> go.Figure:
    """The neurons whose output most promotes one target token (the neurons `promoters`
    table), strongest at the top."""
    rows = promoters[promoters["token_id"] == token_id].sort_values("rank")
    token = plot_text(str(rows["token_str"].iloc[0]), visible_spaces=True) if len(rows) else "?"
    labels = [neuron_label(layer, n) for layer, n in rows[["layer", "neuron"]].itertuples(index=False)]
    fig = go.Figure(go.Bar(
        x=rows["score"], y=labels, orientation="h", marker={"color": "#4C78A8"},
        customdata=rows["rank"], hovertemplate="%{y} (rank %{customdata})<br>score %{x:.4g}"
                                               "<extra></extra>",
    ))
    fig.update_layout(
        title=title(f"Neurons that most promote {token}",
                     "direct effect of the neuron's output row on the token's logit, per unit "
                     "of activation"),
        xaxis={"title": {"text": "direct effect on the token's logit (logits per unit of activation)"}},
        yaxis={"title": {"text": "neuron (layer, index)"}, "autorange": "reversed", "type": "category"},
        height=max(260, 130 + 24 * len(labels)), margin={"l": 90, "r": 20, "t": 80, "b": 50},
    )
    return fig


def neuron_tokens_chart(atlas: pd.DataFrame, layer: int, neuron: int) -> go.Figure:
    """One neuron's top promoted and top suppressed tokens (its rows of the `atlas`)."""
    rows = atlas[(atlas["layer"] == layer) & (atlas["neuron"] == neuron)]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=["promotes", "suppresses"])
    for col, (direction, color) in enumerate((("promote", "#4C78A8"), ("suppress", "#E45756")), 1):
        part = rows[rows["direction"] == direction].sort_values("rank")
        labels = [f"{r}. {plot_text(str(t), visible_spaces=True)}"
                  for r, t in part[["rank", "token_str"]].itertuples(index=False)]
        fig.add_trace(go.Bar(x=part["score"], y=labels, orientation="h", marker={"color": color},
                             name=direction, showlegend=False,
                             hovertemplate="%{y}<br>score %{x:.4g}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", type="category", row=1, col=col,
                         title={"text": "token (rank)"} if col == 1 else None)
        fig.update_xaxes(title={"text": "logits per unit of activation"}, row=1, col=col)
    k = int(rows["rank"].max()) if len(rows) else 0
    fig.update_layout(
        title=title(f"Neuron {neuron_label(layer, neuron)}: the tokens it writes toward",
                     "its output row read through the unembedding (the direct path only)"),
        height=max(260, 130 + 24 * k), margin={"l": 110, "r": 20, "t": 90, "b": 40},
    )
    return fig


def neuron_activations_chart(activations: pd.DataFrame, positions: list[int] | None = None) -> go.Figure:
    """The neurons `activations` table on its prompt: one neuron as bars over the input
    tokens, several as a (layer, neuron) × position heatmap in the table's order
    (strongest first within each layer). `positions`: only these (default all)."""
    n_all = int(activations["position"].max()) + 1 if len(activations) else 0
    activations = in_window(activations, positions)
    inputs = activations.drop_duplicates("position").sort_values("position")
    x_ticks = [plot_text(str(t), visible_spaces=True) for t in inputs["token"]]
    where = [int(p) for p in inputs["position"]]
    keys = list(dict.fromkeys(zip(activations["layer"], activations["neuron"])))
    if len(keys) == 1:
        rows = activations.sort_values("position")
        fig = go.Figure(go.Bar(
            x=list(range(len(rows))), y=rows["activation"], marker={"color": "#4C78A8"},
            customdata=x_ticks, hovertemplate="position %{x} (%{customdata})<br>activation "
                                              "%{y:.4g}<extra></extra>"))
        fig.update_layout(title={"text": f"Neuron {neuron_label(*keys[0])} on the prompt"},
                          yaxis={"title": {"text": "activation"}}, height=340)
    else:
        grid = activations.pivot(index=["layer", "neuron"], columns="position", values="activation")
        grid = grid.reindex(index=pd.MultiIndex.from_tuples(keys, names=["layer", "neuron"]))
        z = grid.to_numpy(dtype=float)
        y_ticks = [neuron_label(layer, n) for layer, n in keys]
        hover = cells(z, lambda i, j, v: f"{y_ticks[i]} · position {where[j]} ({x_ticks[j]})"
                                          f"<br>activation {v:.4g}")
        fig = go.Figure(heatmap(z, hover, signed=True, colorbar="activation"))
        fig.update_layout(
            title=title("The most active neurons of each layer on the prompt", window_note(where, n_all)),
            yaxis={"title": {"text": "layer, neuron"}, "tickmode": "array",
                   "tickvals": list(range(len(y_ticks))), "ticktext": y_ticks, "autorange": "reversed"},
            height=grid_height(len(y_ticks)))
    fig.update_layout(
        xaxis={"title": {"text": "input token (position)"}, "tickmode": "array",
               "tickvals": list(range(len(x_ticks))), "ticktext": x_ticks, "tickangle": tick_angle(len(x_ticks))},
        margin={"l": 90, "r": 20, "t": 50, "b": 90},
    )
    return fig
