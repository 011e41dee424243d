"""Figures of a dictionary set's metrics (no Streamlit): the density histogram of one
dictionary, and the lexicon probe's latent-vs-neuron F1 grid."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import heatmap
from analyses.figures.text import plot_text

DENSE_ABOVE_LOG10 = -1.0  # metrics.DENSE_ABOVE = 0.1: a latent firing more often is "dense"


def density_histogram_chart(histogram: dict, site: str) -> go.Figure:
    """Latents per log10(firing rate) bin, the never-firing ones as a bar of their own."""
    edges = np.asarray(histogram["log10_edges"], dtype=float)
    labels = [f"{lo:g} to {hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    counts = list(histogram["counts"])
    if histogram.get("below_first_edge"):
        labels, counts = [f"< {edges[0]:g}"] + labels, [histogram["below_first_edge"]] + counts
    labels, counts = ["dead (never fires)"] + labels, [histogram["dead"]] + counts
    colours = ["#d62728"] + ["#1f77b4"] * (len(counts) - 1)
    fig = go.Figure(go.Bar(x=labels, y=counts, marker_color=colours,
                           hovertemplate="log10 firing rate %{x}: %{y} latents<extra></extra>"))
    total = sum(counts)
    fig.update_layout(title=plot_text(f"{site}: how often each latent fires ({total:,} latents; "
                                      f"dense above log10 rate {DENSE_ABOVE_LOG10:g})"),
                      xaxis_title="log10 firing rate (share of held-out tokens a latent fires on)",
                      yaxis_title="latents", height=360, margin={"t": 60, "b": 80}, bargap=0.1)
    return fig


def lexicon_chart(latent: pd.DataFrame, neuron: pd.DataFrame) -> go.Figure:
    """Per dictionary and lexicon category: best latent F1 minus best neuron F1 (blue: the
    latent beats every neuron), each cell labelled 'latent / neuron'."""
    diff = (latent - neuron).to_numpy(dtype=float)  # [dictionary, category]
    text = [[("–" if np.isnan(a) else f"{a:.2f} / {b:.2f}") for a, b in zip(ra, rb)]
            for ra, rb in zip(latent.to_numpy(dtype=float), neuron.to_numpy(dtype=float))]
    hover = [[f"{site} · {cat}<br>latent F1 {t}" for cat, t in zip(latent.columns, row)]
             for site, row in zip(latent.index, text)]
    hover = [[h.replace(" / ", " vs best neuron F1 ") for h in row] for row in hover]
    trace = heatmap(np.nan_to_num(diff), hover, signed=True, limit=1.0, text=text,
                    colorbar="latent F1 −<br>neuron F1")
    fig = go.Figure(trace)
    fig.update_layout(title=plot_text("Lexicon categories: best single latent's F1 / best MLP neuron's F1 "
                                      "(blue: the latent wins)"),
                      xaxis={"tickvals": list(range(len(latent.columns))), "ticktext": list(latent.columns),
                             "title": "lexicon category", "side": "bottom"},
                      yaxis={"tickvals": list(range(len(latent.index))), "ticktext": list(latent.index),
                             "title": "dictionary (site)", "autorange": "reversed"},
                      height=max(240, 60 + 34 * len(latent.index)), margin={"t": 60, "l": 200})
    return fig
