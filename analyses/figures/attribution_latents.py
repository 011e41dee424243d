"""Attribution patching over a dictionary's latents (`dictionary=`): which latents at which
positions carry the logit difference — a latent × position heatmap of AtP beside exact
patching (one colour scale, the error node as its own row), the largest nodes as bars, and
AtP against exact patching as a scatter."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures import layout
from analyses.figures.agreement_scatter import atp_agreement_scatter
from analyses.figures.layout import cells, heatmap, title
from analyses.figures.text import plot_text

TOP_LATENTS = 20  # rows of the heatmap: the latents with the largest |atp| anywhere, then the error
TOP_NODES = 15  # bars: the nodes with the largest |atp|


def figures(result, positions: list[int] | None = None) -> dict[str, go.Figure]:
    meta, nodes = result.meta, result.tables["latents"]
    clean, corrupted = meta.get("clean_tokens"), meta.get("corrupted_tokens")
    n_tokens = int(meta.get("n_tokens") or len(clean or []))
    if positions is None:
        positions = layout.position_window(n_tokens, layout.differing_positions(clean, corrupted))
    site = meta.get("dictionary_site", "the dictionary's site")
    shown = {"latent_map": latent_heatmap(nodes, site, n_tokens, clean, corrupted, positions),
             "latent_top": top_nodes_bars(nodes, site, clean)}
    if nodes["exact"].notna().any():
        shown["agreement"] = atp_agreement_scatter(nodes.assign(head=-1), result.tables.get("agreement"),
                                                   False, clean)
    return shown


def node_label(node: str, latent: int) -> str:
    return "error" if node == "error" else f"latent {int(latent)}"


def latent_heatmap(nodes: pd.DataFrame, site: str, n_tokens: int, clean_tokens=None, corrupted_tokens=None,
                   positions: list[int] | None = None) -> go.Figure:
    """Rows: the `TOP_LATENTS` latents with the largest |atp| at any shown position, then the
    error node; columns: positions. AtP beside exact patching where it ran; empty cells: the
    latent is active in neither run there (its effect is 0)."""
    rows = layout.in_window(nodes, positions)
    strength = rows[rows["node"] == "latent"].groupby("latent")["atp"].apply(lambda s: s.abs().max())
    chosen = list(strength.nlargest(TOP_LATENTS).index)
    shown = rows[(rows["node"] == "error") | rows["latent"].isin(chosen)]
    labels = [node_label("latent", j) for j in chosen] + ["error"]
    columns = sorted(set(int(p) for p in positions)) if positions else list(range(n_tokens))
    frame = shown.assign(row=[node_label(n, j) for n, j in zip(shown["node"], shown["latent"])])

    def grid_of(value: str) -> np.ndarray:
        table = frame.pivot_table(index="row", columns="position", values=value, aggfunc="first")
        return table.reindex(index=labels, columns=columns).to_numpy(dtype=float)

    a, e = grid_of("atp"), grid_of("exact")
    has_exact = bool(np.isfinite(e).any())
    names = layout.position_labels(n_tokens, clean_tokens, corrupted_tokens)
    x_ticks = [names[p] for p in columns]

    def hover(i, j, _):
        text = f"{labels[i]} · position {columns[j]} ({x_ticks[j]})<br>AtP {a[i, j]:.4g}"
        return text + (f"<br>exact {e[i, j]:.4g}" if has_exact else "")

    hover_text = cells(a, hover)
    panels = [("AtP estimate", a)] + ([("exact patching", e)] if has_exact else [])
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[name for name, _ in panels])
    for col, (_, z) in enumerate(panels, start=1):
        fig.add_trace(heatmap(z, hover_text, signed=True, coloraxis="coloraxis"), row=1, col=col)
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(x_ticks))), ticktext=x_ticks,
                         tickangle=layout.tick_angle(len(x_ticks) * len(panels)),
                         title={"text": "input token (position)"}, row=1, col=col)
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed",
                     title={"text": "latent (largest |AtP| first)"}, row=1, col=1)
    limit = layout.symmetric_limit(a, e if has_exact else [])
    shown_note = layout.window_note(columns, n_tokens)
    fig.update_layout(
        title=title(f"Latents of {plot_text(site)}: AtP per position",
                    f"the {len(chosen)} latents with the largest |AtP|, and the error node (what the dictionary "
                    "does not reconstruct)<br>Δ logit difference when the node is patched to its clean value"
                    + (f" · {shown_note}" if shown_note else "")),
        coloraxis={**layout.colour_scale(True, limit, prefix="c"), "colorbar": {"title": {"text": "Δ logit diff"}}},
        height=layout.grid_height(len(labels), extra=220), margin={"l": 90, "r": 20, "t": 110, "b": 90},
    )
    return fig


def top_nodes_bars(nodes: pd.DataFrame, site: str, clean_tokens=None) -> go.Figure:
    """The `TOP_NODES` nodes with the largest |atp|: AtP beside exact patching, one bar each."""
    top = nodes.reindex(nodes["atp"].abs().sort_values(ascending=False).index).head(TOP_NODES)

    def where(row) -> str:
        token = clean_tokens[int(row.position)] if clean_tokens and row.position < len(clean_tokens) else ""
        return f"{node_label(row.node, row.latent)} @ {plot_text(token, visible_spaces=True)} ({int(row.position)})"

    labels = [where(r) for r in top.itertuples()]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=labels, x=top["atp"], orientation="h", name="AtP estimate",
                         marker={"color": "#4C78A8"}, hovertemplate="%{y}<br>AtP %{x:.4g}<extra></extra>"))
    if top["exact"].notna().any():
        fig.add_trace(go.Bar(y=labels, x=top["exact"], orientation="h", name="exact patching",
                             marker={"color": "#F58518"}, hovertemplate="%{y}<br>exact %{x:.4g}<extra></extra>"))
    fig.update_layout(
        barmode="group", height=max(320, 40 * len(top) + 160),
        title=title(f"The {len(top)} nodes of {plot_text(site)} with the largest |AtP|",
                    "latent (or error) @ clean token (position); Δ logit difference when patched to its clean value"),
        xaxis={"title": {"text": "Δ logit difference (answer − wrong)"}, "zeroline": True},
        yaxis={"title": {"text": "node"}, "autorange": "reversed", "type": "category"},
        legend={"orientation": "h", "y": -0.15}, margin={"l": 180, "r": 20, "t": 90, "b": 80},
    )
    return fig
