"""`features` over a prompt set: each latent's frequency against its strength.

One point per latent that fires after BOS anywhere in the set (`set_latents`): across, the
share of examples it fires in; up, its mean activation where it fires. Latents up and to the
right fire in most prompts *and* strongly; the ones with the largest share × mean are drawn
red and named in the bar chart beside it, with their top promoted tokens.
"""
from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import grid_height, title
from analyses.figures.text import plot_text

LABELLED = 12  # latents drawn red on the scatter: the largest share × mean
TOP_BARS = 20  # latents in the bar chart
POINT_COLOUR, TOP_COLOUR = "#9DB6D3", "#E45756"


def set_figures(result) -> dict[str, go.Figure]:
    table = result.tables["set_latents"]
    site = str(result.meta.get("site", ""))
    n_examples = int(result.meta.get("n_examples", 0))
    return {"set_latents": frequency_strength_scatter(table, site, n_examples),
            "set_top": top_latents_bars(table, site, n_examples)}


def promoted(cell: str, n: int = 3) -> str:
    """The first `n` promoted tokens of a `promotes` JSON list, quoted, for labels and hovers."""
    return ", ".join(repr(str(t)) for t in json.loads(cell)[:n]) if cell else ""


def hover_lines(table: pd.DataFrame, n_examples: int) -> list[str]:
    """Each latent's hover: where and how strongly it fires, and what it promotes."""
    return ["<br>".join(plot_text(line) for line in (
        f"latent #{r.latent}",
        f"fires in {r.n_examples} of {n_examples} examples ({r.share_of_examples:.0%}), "
        f"at {r.n_positions} positions ({r.share_of_positions:.1%} of them)",
        f"mean where it fires {r.mean_value:.3g}, max {r.max_value:.3g} "
        f"(example {r.max_example}, position {r.max_position}, {str(r.max_token)!r})",
        f"density on held-out text {r.density:.2%}",
        f"promotes {promoted(r.promotes, 5)}")) for r in table.itertuples(index=False)]


def frequency_strength_scatter(table: pd.DataFrame, site: str, n_examples: int) -> go.Figure:
    """Share of examples (x, %) against mean activation where active (y); the top share × mean named."""
    ranked = table.sort_values("share_x_mean", ascending=False, kind="stable")
    top, rest = ranked.head(LABELLED), ranked.iloc[LABELLED:]
    # no text on the points: a templated set puts its strongest latents in one column at 100%,
    # where labels overlap; the bar chart names them, the hover says everything
    traces = [go.Scatter(x=100 * part["share_of_examples"], y=part["mean_value"], mode="markers", name=name,
                         marker={"color": colour, "size": size, "line": {"width": 0.5, "color": "white"}},
                         hovertext=hover_lines(part, n_examples), hoverinfo="text")
              for part, name, colour, size in (
                  (rest, "other latents", POINT_COLOUR, 6),
                  (top, f"the {len(top)} largest share × mean (named in the bar chart)", TOP_COLOUR, 9))]
    fig = go.Figure(traces)
    fig.update_layout(
        title=title(plot_text(f"Latents of {site} over {n_examples} prompts: how often against how strongly"),
                    plot_text(f"{len(table):,} latents fire after BOS somewhere in the set; "
                              "hover a point for its tokens and where it peaks")),
        xaxis={"title": {"text": "examples it fires in (% of the set, at one position at least)"},
               "range": [-3, 103], "ticksuffix": "%"},
        yaxis={"title": {"text": "mean activation where it fires (the dictionary's units)"}, "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.2}, height=520, margin={"l": 80, "r": 20, "t": 80, "b": 100})
    return fig


def top_latents_bars(table: pd.DataFrame, site: str, n_examples: int) -> go.Figure:
    """The `TOP_BARS` latents by share of examples × mean activation, each named by its top tokens."""
    top = table.sort_values("share_x_mean", ascending=False, kind="stable").head(TOP_BARS)
    labels = [plot_text(f"#{r.latent} · {promoted(r.promotes)}") for r in top.itertuples(index=False)]
    fig = go.Figure(go.Bar(x=top["share_x_mean"], y=labels, orientation="h", marker={"color": TOP_COLOUR},
                           hovertext=hover_lines(top, n_examples), hoverinfo="text"))
    fig.update_layout(
        title=title(plot_text(f"The {len(top)} latents of {site} with the largest share of examples × mean "
                              "activation"), "each named by its latent id and its 3 most promoted tokens"),
        xaxis={"title": {"text": "share of examples × mean activation where it fires (the dictionary's units)"},
               "rangemode": "tozero"},
        yaxis={"title": {"text": "latent · tokens it promotes"}, "autorange": "reversed", "automargin": True},
        height=grid_height(len(top), extra=160), margin={"l": 20, "r": 20, "t": 80, "b": 70})
    return fig


