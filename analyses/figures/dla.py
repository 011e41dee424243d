"""Direct logit attribution figures: the components that sum to the logit difference, in
residual-stream order, each head's direct contribution, and the final MLP split by neuron
(where Geva et al. 2023's late suppression of the answer would show as negative bars)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import (
    MAX_VALUE_TEXT,
    cells,
    grid,
    head_label,
    head_tick,
    heatmap,
    layer_head_axes,
    neuron_label,
    title,
)
from analyses.figures.text import plot_text


def figures(result) -> dict[str, go.Figure]:
    spec, table = result.spec, result.tables["contributions"]
    metric = f"logit({spec.answer!r})" + (f" − logit({spec.wrong!r})" if spec.wrong else "")
    components = tuple(result.meta.get("total_components") or DLA_TOTAL)
    shown = {
        "components": dla_components_chart(table, metric, result.meta.get("logit_diff"), components),
        "heads": dla_head_heatmap(table, metric),
    }
    neurons = result.tables.get("neurons")
    if neurons is not None and len(neurons):  # results cached before version 4 have none
        shown["neurons"] = dla_neuron_chart(neurons, table, int(neurons["layer"].max()), metric)
    return shown


DLA_TOTAL = ("embed", "pos_embed", "attn", "mlp", "bias")  # the rows that sum to the logit difference
DLA_COLORS = {"attn": "#4C78A8", "mlp": "#F58518"}  # others grey


def dla_components_chart(contributions: pd.DataFrame, metric: str = "the logit difference",
                         logit_diff: float | None = None,
                         components: tuple[str, ...] = DLA_TOTAL) -> go.Figure:
    """Bars of the components that sum to the logit difference, in the order the residual
    stream adds them: embeddings, then each layer's attention and MLP, then the biases.

    `contributions`: the dla table; `metric`: what the values split (plain text, escaped
    here: "logit(' Mary') − logit(' John')"); `logit_diff`: the model's own value, shown
    beside the bars' sum."""
    rows = contributions[contributions["component"].isin(components)].copy()
    order = {"embed": -2, "pos_embed": -1}
    rows["_order"] = [order.get(c, 10**9 if c == "bias" else 2 * int(layer) + (c == "mlp"))
                      for c, layer in rows[["component", "layer"]].itertuples(index=False)]
    rows = rows.sort_values("_order", kind="stable")
    labels = [plot_text(str(c)) if layer < 0 else f"L{int(layer)} {plot_text(str(c))}"
              for c, layer in rows[["component", "layer"]].itertuples(index=False)]
    rows["_label"] = labels
    fig = go.Figure()
    for group, name in (("attn", "attention (a layer's heads and bias)"), ("mlp", "MLP"),
                        ("other", "embeddings and biases")):
        part = rows[rows["component"].map(lambda c: c if c in DLA_COLORS else "other") == group]
        if len(part):  # one trace per colour: the legend says what each colour is
            fig.add_trace(go.Bar(x=part["_label"], y=part["value"], name=name,
                                 marker={"color": DLA_COLORS.get(group, "#9D9D9D")},
                                 hovertemplate="%{x}: %{y:.4g} logits<extra></extra>"))
    note = f"the bars sum to {rows['value'].sum():.4g}"
    if logit_diff is not None:
        note += f"; the model's own value is {logit_diff:.4g}"
    fig.update_layout(
        title=title(f"Direct contribution of each component to {plot_text(metric)}", note),
        xaxis={"title": {"text": "component (residual-stream order)"}, "type": "category", "tickangle": -45,
               "categoryorder": "array", "categoryarray": labels},
        yaxis={"title": {"text": "direct contribution (logits)"}}, height=420,
        legend={"title": {"text": "component"}},
        margin={"l": 70, "r": 20, "t": 80, "b": 90},
    )
    return fig


def dla_head_heatmap(contributions: pd.DataFrame, metric: str = "the logit difference") -> go.Figure:
    """Layer × head heatmap of each head's direct contribution (the dla `head` rows)."""
    rows = contributions[contributions["component"] == "head"]
    table = grid(rows, ["layer"], "head", "value")
    z = table.to_numpy(dtype=float)
    y_ticks = [str(int(layer)) for layer in table.index]
    x_ticks = [head_tick(h) for h in table.columns]
    hover = cells(z, lambda i, j, v: f"{head_label(table.index[i], table.columns[j])}<br>{v:.4g}")
    fig = go.Figure(heatmap(z, hover, signed=True, colorbar="contribution",
                            values_in_cells=len(x_ticks) <= MAX_VALUE_TEXT))
    fig.update_layout(
        title={"text": f"Each head's direct contribution to {plot_text(metric)}"},
        **layer_head_axes(x_ticks, y_ticks),
    )
    return fig


SIGN_COLOURS = {True: "#4C78A8", False: "#E45756"}  # raises, lowers the difference
PART_NAMES = {"rest": "every other neuron", "bias": "the MLP's output bias b_out"}


def dla_neuron_chart(neurons: pd.DataFrame, contributions: pd.DataFrame, layer: int,
                     metric: str = "the logit difference") -> go.Figure:
    """One MLP's direct contribution split into its listed neurons (largest |value| first),
    the rest summed and its output bias: the bars add up to the layer's `mlp` row."""
    rows = neurons[neurons["layer"] == layer]
    listed = rows[rows["part"] == "neuron"].sort_values("rank")
    others = rows[rows["part"] != "neuron"]
    labels = [neuron_label(layer, n) for n in listed["neuron"]] + [PART_NAMES.get(p, p) for p in others["part"]]
    values = [*listed["value"], *others["value"]]
    colours = [SIGN_COLOURS[v >= 0] for v in listed["value"]] + ["#9D9D9D"] * len(others)
    hover = [f"{neuron_label(layer, n)}: activation {a:.3g} × its output direction → {v:+.4g} logits"
             for n, a, v in zip(listed["neuron"], listed["activation"], listed["value"])]
    hover += [f"{PART_NAMES.get(p, p)}: {v:+.4g} logits" for p, v in zip(others["part"], others["value"])]
    mlp = contributions[(contributions["component"] == "mlp") & (contributions["layer"] == layer)]["value"]
    total = float(mlp.iloc[0]) if len(mlp) else float(sum(values))
    lowered = listed[listed["value"] < 0]["value"].sum()
    fig = go.Figure(go.Bar(x=labels, y=values, marker={"color": colours}, customdata=hover,
                           hovertemplate="%{customdata}<extra></extra>", showlegend=False))
    for raises, name in ((True, "raises it"), (False, "lowers it")):  # legend entries for the colours
        fig.add_trace(go.Bar(x=[None], y=[None], name=f"neuron {name}", marker={"color": SIGN_COLOURS[raises]}))
    fig.add_hline(y=0, line={"color": "#54585A", "width": 1})
    fig.update_layout(
        title=title(f"Layer {layer}'s MLP split by neuron: direct contribution to {plot_text(metric)}",
                    f"the bars add up to the MLP's {total:.4g}; its listed neurons that lower it sum to "
                    f"{lowered:.4g}"),
        xaxis={"title": {"text": "neuron (largest |contribution| first), then the rest"}, "type": "category",
               "tickangle": -45, "categoryorder": "array", "categoryarray": labels},
        yaxis={"title": {"text": "direct contribution (logits)"}}, height=420, barmode="overlay",
        legend={"title": {"text": "sign"}}, margin={"l": 70, "r": 20, "t": 80, "b": 110},
    )
    return fig
