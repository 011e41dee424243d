"""Figures of a dictionary set's metrics (no Streamlit): the density histogram of one
dictionary, the lexicon probe's latent-vs-neuron F1 grid, and what each dictionary loses per
document type of the held-out text."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures.layout import colour_scale, heatmap
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


KIND_LABELS = {"mixed": "stories, IOI,<br>facts", "needle": "needle in<br>stories",
               "repeat": "repeated<br>random tokens"}  # two short lines: level labels under narrow columns


def by_kind_chart(explained: pd.DataFrame, share: pd.DataFrame, ce: pd.DataFrame) -> go.Figure:
    """Per dictionary (rows) and document type (columns), two panels on one colour scale: the
    share of the variance left unexplained (1 - explained variance) and of the CE left
    unrecovered (1 - CE recovered). Darker is worse; each cell names the measured value."""
    kinds = list(explained.columns)
    sites = list(explained.index)
    labels = [KIND_LABELS.get(k, k) for k in kinds]
    ev, sh, cr = (f.reindex(index=sites, columns=kinds).to_numpy(dtype=float) for f in (explained, share, ce))
    panels = [("variance unexplained<br>(1 − explained variance)", ev, "explained variance"),
              ("cross-entropy not recovered<br>(1 − CE recovered)", cr, "CE recovered")]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=[name for name, _, _ in panels])
    for col, (_, values, name) in enumerate(panels, start=1):
        text = [["–" if np.isnan(v) else f"{v:.3f}" for v in row] for row in values]
        hover = [[f"{site} · {label}<br>{name} {t}" + ("" if col == 2 or np.isnan(s) else f"<br>{s:.0%} of the "
                                                       "site's variance")
                  for label, t, s in zip(labels, row_text, row_share)]
                 for site, row_text, row_share in zip(sites, text, sh)]
        fig.add_trace(heatmap(np.nan_to_num(1 - values), hover, signed=False, text=text, coloraxis="coloraxis"),
                      row=1, col=col)
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(kinds))), ticktext=labels, tickangle=0,
                         title={"text": "held-out document type"}, row=1, col=col)
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(sites))), ticktext=sites, autorange="reversed",
                     title={"text": "dictionary (site)"}, row=1, col=1)
    fig.update_yaxes(ticks="", row=1, col=2)  # the rows are named once, on the left
    worst = float(np.nanmax(np.concatenate([1 - ev.ravel(), 1 - cr.ravel(), [0.0]])))
    fig.update_layout(
        title=plot_text("Where each dictionary falls short, by held-out document type (cells: the measured value)"),
        coloraxis={**colour_scale(False, max(worst, 0.01), prefix="c"),
                   "colorbar": {"title": {"text": "share lost"}}},
        height=max(300, 170 + 34 * len(sites)), margin={"t": 110, "l": 200, "b": 100})
    return fig
