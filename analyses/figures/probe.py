"""Probe figures: held-out accuracy by layer with Wilson intervals (the mean difference's
beside it), and the cosine between each layer's probe direction and its mean difference."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import title
from analyses.figures.text import plot_text

PROBE, MEAN_DIFF = "#4C78A8", "#F58518"


def figures(result) -> dict[str, go.Figure]:
    layers = result.tables["layers"]
    site = str(layers["site"].iloc[0]) if len(layers) else "resid_post"
    return {"accuracy": accuracy_chart(layers, site, result.meta.get("dataset")),
            "cosine": cosine_chart(layers, result.meta.get("agreement", 0.5))}


def accuracy_chart(layers: pd.DataFrame, site: str, dataset: str | None = None) -> go.Figure:
    """Held-out accuracy per layer: the probe's with its Wilson 95% interval, the mean
    difference's as a classifier beside it, and chance."""
    ticks = [f"L{int(v)}" for v in layers["layer"]]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=ticks, y=layers["accuracy"], mode="lines+markers", name="logistic probe", marker={"color": PROBE},
        error_y={"type": "data", "symmetric": False, "array": layers["ci_high"] - layers["accuracy"],
                 "arrayminus": layers["accuracy"] - layers["ci_low"]},
        customdata=layers[["ci_low", "ci_high", "n_test"]].to_numpy(),
        hovertemplate="%{x}: %{y:.3f} (Wilson 95% CI %{customdata[0]:.3f} to %{customdata[1]:.3f}, "
                      "n = %{customdata[2]})<extra>probe</extra>"))
    fig.add_trace(go.Scatter(
        x=ticks, y=layers["mean_diff_accuracy"], mode="lines+markers", name="mean difference",
        marker={"color": MEAN_DIFF, "symbol": "diamond"}, line={"dash": "dot"},
        hovertemplate="%{x}: %{y:.3f}<extra>mean difference</extra>"))
    fig.add_hline(y=0.5, line={"dash": "dash", "color": "#9D9D9D"})  # chance, named in the note
    n_test = int(layers["n_test"].iloc[0]) if len(layers) else 0
    note = (f"{plot_text(site)} at each text's last token; {n_test} held-out texts"
            + (f" of {plot_text(dataset)}" if dataset else "") + "; bars: Wilson 95% intervals; dashed: chance")
    fig.update_layout(title=title("Held-out accuracy of a linear probe, by layer", note),
                      xaxis={"title": {"text": "layer"}, "type": "category"},
                      yaxis={"title": {"text": "held-out accuracy (share of texts)"}, "range": [0, 1.05]},
                      legend={"title": {"text": "direction"}}, height=420,
                      margin={"l": 70, "r": 20, "t": 90, "b": 60})
    return fig


def cosine_chart(layers: pd.DataFrame, agreement: float = 0.5) -> go.Figure:
    """cos(probe weight, mean difference) per layer; below `agreement` the bars are grey and
    labelled: the two directions disagree there."""
    ticks = [f"L{int(v)}" for v in layers["layer"]]
    agrees = layers["cosine_mean_diff"] >= agreement
    fig = go.Figure(go.Bar(
        x=ticks, y=layers["cosine_mean_diff"], marker={"color": [PROBE if a else "#9D9D9D" for a in agrees]},
        text=["" if a else "disagree" for a in agrees], textposition="outside",
        hovertemplate="%{x}: cos %{y:.3f}<extra></extra>"))
    fig.add_hline(y=agreement, line={"dash": "dash", "color": "#9D9D9D"})
    n_disagree = int((~agrees).sum())
    note = (f"grey: cos < {agreement:g} (dashed), the probe and the mean difference point different "
            f"ways ({n_disagree} of {len(layers)} layers)" if n_disagree else
            f"every layer's probe agrees with its mean difference (cos ≥ {agreement:g}, dashed)")
    fig.update_layout(title=title("Cosine between the probe's direction and the mean difference", note),
                      xaxis={"title": {"text": "layer"}, "type": "category"},
                      yaxis={"title": {"text": "cosine similarity"}, "range": [-1.05, 1.15], "zeroline": True},
                      showlegend=False, height=380, margin={"l": 70, "r": 20, "t": 90, "b": 60})
    return fig
