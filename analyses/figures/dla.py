"""Direct logit attribution figures: the components that sum to the logit difference, in
residual-stream order, and each head's direct contribution."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import MAX_VALUE_TEXT, cells, grid, head_label, head_tick, heatmap, layer_head_axes, title
from analyses.figures.text import plot_text


def figures(result) -> dict[str, go.Figure]:
    spec, table = result.spec, result.tables["contributions"]
    metric = f"logit({spec.answer!r})" + (f" − logit({spec.wrong!r})" if spec.wrong else "")
    components = tuple(result.meta.get("total_components") or DLA_TOTAL)
    return {
        "components": dla_components_chart(table, metric, result.meta.get("logit_diff"), components),
        "heads": dla_head_heatmap(table, metric),
    }


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
