"""Latent dashboard figures: one latent's activation histogram, logit effects and (for an
attention-output dictionary) decoder norm by head, and the densities of every latent."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures.layout import head_tick, title
from analyses.figures.text import plot_text

PROMOTE, SUPPRESS = "#4C78A8", "#E45756"


def figures(result, latent: int | None = None) -> dict[str, go.Figure]:
    """The dashboard of `latent` (default: the densest) and the density overview."""
    tables = result.tables
    if latent is None:
        latent = default_latent(tables["latents"])
    shown = {"histogram": histogram_chart(tables["histogram"], latent, tables["latents"]),
             "logit_effects": logit_effects_chart(tables["logit_effects"], latent)}
    heads = tables.get("heads")
    if heads is not None and len(heads):
        shown["heads"] = head_share_chart(heads, latent, str(result.meta.get("site", "")))
    shown["densities"] = density_chart(tables["latents"], int(result.meta.get("tokens", 0)))
    return shown


def default_latent(latents: pd.DataFrame) -> int:
    """The latent a dashboard opens on without a choice: the one firing most often."""
    if not len(latents):
        return 0
    return int(latents.sort_values(["fires", "latent"], ascending=[False, True])["latent"].iloc[0])


def histogram_chart(histogram: pd.DataFrame, latent: int, latents: pd.DataFrame | None = None) -> go.Figure:
    rows = histogram[histogram["latent"] == latent].sort_values("bin")
    fig = go.Figure(go.Bar(x=(rows["low"] + rows["high"]) / 2, y=rows["count"], width=rows["high"] - rows["low"],
                           marker={"color": PROMOTE}, customdata=np.stack([rows["low"], rows["high"]], axis=1)
                           if len(rows) else None,
                           hovertemplate="activation %{customdata[0]:.3g}–%{customdata[1]:.3g}<br>"
                                         "%{y} tokens<extra></extra>"))
    note = None
    if latents is not None and latent in set(latents["latent"]):
        row = latents[latents["latent"] == latent].iloc[0]
        note = (f"fires on {row['density']:.3%} of tokens ({int(row['fires']):,}); "
                f"mean when firing {row['mean_value']:.3g}")
    fig.update_layout(title=title(f"Latent {latent}: its activations when it fires", note or "it never fired"),
                      xaxis={"title": {"text": "activation"}}, yaxis={"title": {"text": "tokens"}},
                      height=320, bargap=0.05, margin={"l": 70, "r": 20, "t": 80, "b": 50})
    return fig


def logit_effects_chart(effects: pd.DataFrame, latent: int) -> go.Figure:
    """Its most promoted and most suppressed tokens (the direct path through the unembedding),
    one panel above the other: the latent page shows it in a half-width column, where two panels
    side by side put the right one's token labels over the left one's bars."""
    rows = effects[effects["latent"] == latent]
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.16, subplot_titles=["promotes", "suppresses"])
    for row, (direction, colour) in enumerate((("promote", PROMOTE), ("suppress", SUPPRESS)), 1):
        part = rows[rows["direction"] == direction].sort_values("rank")
        labels = [f"{r}. {plot_text(str(t), visible_spaces=True)}"
                  for r, t in part[["rank", "token_str"]].itertuples(index=False)]
        fig.add_trace(go.Bar(x=part["score"], y=labels, orientation="h", marker={"color": colour},
                             showlegend=False, hovertemplate="%{y}<br>%{x:.4g} logits per unit<extra></extra>"),
                      row=row, col=1)
        fig.update_yaxes(autorange="reversed", type="category", row=row, col=1, title={"text": "token (rank)"})
        fig.update_xaxes(title={"text": "logits per unit of activation"}, row=row, col=1)
    k = int(rows["rank"].max()) if len(rows) else 0
    fig.update_layout(title=title(f"Latent {latent}: the tokens it writes toward",
                                  "decoder direction through the final norm and W_U (direct path)"),
                      height=max(420, 220 + 2 * 24 * k), margin={"l": 110, "r": 20, "t": 90, "b": 40})
    return fig


def head_share_chart(heads: pd.DataFrame, latent: int, site: str = "") -> go.Figure:
    rows = heads[heads["latent"] == latent].sort_values("head")
    fig = go.Figure(go.Bar(x=[head_tick(h) for h in rows["head"]], y=rows["share"], marker={"color": PROMOTE},
                           hovertemplate="%{x}: %{y:.1%} of the decoder norm<extra></extra>"))
    fig.update_layout(title=title(f"Latent {latent}: which heads it reads from",
                                  "squared decoder norm per head" + (f" ({site})" if site else "")),
                      xaxis={"title": {"text": "head"}, "type": "category"},
                      yaxis={"title": {"text": "share of squared decoder norm"}, "tickformat": ".0%",
                             "range": [0, 1]},
                      height=300, margin={"l": 70, "r": 20, "t": 80, "b": 50})
    return fig


def density_chart(latents: pd.DataFrame, tokens: int) -> go.Figure:
    alive = latents[latents["density"] > 0]
    dead = len(latents) - len(alive)
    fig = go.Figure(go.Histogram(x=np.log10(alive["density"]), nbinsx=40, marker={"color": "#9D9D9D"},
                                 hovertemplate="log10 density %{x}<br>%{y} latents<extra></extra>"))
    fig.update_layout(title=title("Every latent's density",
                                  f"{len(latents):,} latents on {tokens:,} held-out tokens; {dead:,} never fired"),
                      xaxis={"title": {"text": "log10(share of tokens the latent fires on)"}},
                      yaxis={"title": {"text": "latents"}}, height=300, margin={"l": 70, "r": 20, "t": 80, "b": 50})
    return fig
