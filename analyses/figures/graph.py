"""Attribution graph figures: the pruned graph laid out by layer and position, the scores,
and the interventions' predicted beside actual logit changes.

Layout: input tokens at the bottom, then one row per layer (its latents and error node at
each position), the logits on top; positions left to right under their tokens; nodes at
one (layer, position) side by side. Node area grows with influence on the logits; an
edge's width with |weight| and its colour with its sign (blue excites, red inhibits,
the diverging scale of every signed figure here).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import house_style, position_labels, tick_angle, title
from analyses.figures.text import plot_text

TYPE_COLOURS = {"latent": "#4C78A8", "error": "#9D9D9D", "token": "#54A24B", "logit": "#F58518"}
POSITIVE, NEGATIVE = "#2166AC", "#B2182B"  # the ends of RdBu: blue above 0, red below
WIDTH_BINS = 4  # edges are drawn in this many widths per sign (one trace each)
MAX_EDGES_DRAWN = 600


def figures(result, **view) -> dict[str, go.Figure]:
    tables = result.tables
    if "example" in tables["nodes"].columns:  # a prompt set: the first example's graph
        example = int(view.get("example", tables["nodes"]["example"].min()))
        tables = {name: frame[frame["example"] == example] if "example" in frame.columns else frame
                  for name, frame in tables.items()}
        tokens = None
    else:
        tokens = result.meta.get("tokens")
    out = {"graph": graph_figure(tables["nodes"], tables["edges"], tokens,
                                 selected=view.get("selected"), pinned=view.get("pinned") or (),
                                 groups=view.get("groups") or {})}
    if "scores" in tables:
        out["scores"] = scores_figure(tables["scores"])
    if len(tables.get("interventions", ())):
        out["interventions"] = interventions_figure(tables["interventions"])
    return house_style(out)


NODE_SPACING = 0.3  # x units per node: a crowded position's column widens to hold its nodes


def column_centres(nodes: pd.DataFrame, n_pos: int) -> np.ndarray:
    """x of each position's column centre: a column is as wide as its busiest row needs (at
    least 1), so the last position of a long prompt, where most latents sit, gets room."""
    busiest = nodes.groupby(["position", "layer"]).size().groupby(level=0).max()
    widths = np.maximum(1.0, busiest.reindex(range(n_pos), fill_value=1).to_numpy() * NODE_SPACING)
    return np.cumsum(widths) - widths / 2


def node_positions(nodes: pd.DataFrame, n_pos: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """x, y of each node and each position's column centre: y = layer (tokens -1, logits
    n_layers), x = within its position's column, side by side."""
    n_pos = int(nodes["position"].max()) + 1 if n_pos is None else n_pos
    centres = column_centres(nodes, n_pos)
    frame = nodes.copy()
    frame["y"] = frame["layer"].astype(float)
    # within a (row, position) cell: latents by influence, the error last
    frame["_rank"] = frame["type"].eq("error").astype(int)
    frame = frame.sort_values(["y", "position", "_rank", "influence"], ascending=[True, True, True, False])
    cell = frame.groupby(["y", "position"], sort=False)
    index, count = cell.cumcount(), cell["node"].transform("size")
    spacing = np.where(count * NODE_SPACING > 0.9, NODE_SPACING, 0.9 / np.maximum(count, 1))
    frame["x"] = centres[frame["position"].to_numpy()] + (index - (count - 1) / 2) * spacing
    return frame.drop(columns="_rank"), centres


def graph_figure(nodes: pd.DataFrame, edges: pd.DataFrame, tokens: list[str] | None = None,
                 selected: str | None = None, pinned=(), groups: dict | None = None,
                 labels: dict | None = None) -> go.Figure:
    """The pruned graph; `labels`: a note per node id (shown in its hover text)."""
    shown = nodes[nodes["kept"].astype(bool)]
    n_pos = int(nodes["position"].max()) + 1
    placed, centres = node_positions(shown, n_pos)
    placed = placed.set_index("node")
    n_layers = int(nodes["layer"].max())  # the logits' row
    fig = go.Figure()
    drawn = edges[edges["source"].isin(placed.index) & edges["target"].isin(placed.index)]
    drawn = drawn.reindex(drawn["weight"].abs().sort_values(ascending=False).index)[:MAX_EDGES_DRAWN]
    if selected in placed.index:  # the selected node's edges on top, the rest faint
        mine = drawn[(drawn["source"] == selected) | (drawn["target"] == selected)]
    else:
        mine = drawn.iloc[:0]
    _add_edges(fig, drawn, placed, opacity=0.25 if len(mine) else 0.55)
    if len(mine):
        _add_edges(fig, mine, placed, opacity=0.95, legend=False)
    groups = groups or {}
    member_of = {node: name for name, members in groups.items() for node in members}
    for kind, colour in TYPE_COLOURS.items():
        part = placed[placed["type"] == kind]
        if not len(part):
            continue
        size = 7 + 25 * np.sqrt(part["influence"].clip(lower=0) / max(placed["influence"].max(), 1e-12))
        if kind in ("token", "logit"):
            size = np.full(len(part), 14.0)
        outline = ["#000000" if n in pinned or n == selected else "#FFFFFF" for n in part.index]
        widths = [3 if n == selected else 2 if n in pinned else 1 for n in part.index]
        hover = [_hover(n, row, member_of.get(n), (labels or {}).get(n)) for n, row in part.iterrows()]
        fig.add_trace(go.Scatter(
            x=part["x"], y=part["y"], mode="markers", name=kind, customdata=list(part.index),
            marker={"size": size, "color": colour, "line": {"color": outline, "width": widths},
                    "symbol": "square" if kind == "error" else "circle"},
            hovertext=hover, hovertemplate="%{hovertext}<extra></extra>"))
    for name, members in groups.items():  # a supernode: a labelled box around its members
        inside = placed.loc[[m for m in members if m in placed.index]]
        if len(inside):
            fig.add_shape(type="rect", x0=inside["x"].min() - 0.15, x1=inside["x"].max() + 0.15,
                          y0=inside["y"].min() - 0.3, y1=inside["y"].max() + 0.3,
                          line={"color": "#7F3C8D", "dash": "dot"})
            fig.add_annotation(x=inside["x"].mean(), y=inside["y"].max() + 0.3, text=plot_text(name),
                               showarrow=False, yshift=8, font={"color": "#7F3C8D"})
    ticks = position_labels(n_pos, tokens) if tokens else [str(p) for p in range(n_pos)]
    rows = ["input tokens", *[f"layer {layer}" for layer in range(n_layers)], "logits"]
    n_kept = int((shown["type"] == "latent").sum())
    fig.update_layout(
        title=title("Attribution graph: latents that carry the answer (pruned)",
                    f"{n_kept} latents kept of {int((nodes['type'] == 'latent').sum())}; node area: "
                    "influence on the logits; edges: blue excites, red inhibits, width |weight|"),
        xaxis={"title": {"text": "position (token)"}, "tickmode": "array", "tickvals": list(centres),
               "ticktext": ticks, "tickangle": -45 if n_pos > 10 else tick_angle(n_pos),
               "range": [float(centres[0]) - 0.6, float(centres[-1]) + max(0.6, float(centres[-1] - centres[-2]) / 2
                                                                         if n_pos > 1 else 0.6)],
               "showgrid": False, "zeroline": False},
        yaxis={"title": {"text": "layer"}, "tickmode": "array", "tickvals": list(range(-1, n_layers + 1)),
               "ticktext": rows, "range": [-1.6, n_layers + 0.6], "zeroline": False},
        height=max(420, 120 * (n_layers + 2)), legend={"title": {"text": "node"}},
        margin={"l": 90, "r": 20, "t": 80, "b": 80}, clickmode="event+select")
    return fig


def _hover(node: str, row: pd.Series, group: str | None, label: str | None = None) -> str:
    what = {"latent": f"latent {int(row['latent'])} of layer {int(row['layer'])}",
            "error": f"transcoder error, layer {int(row['layer'])}",
            "token": "input token", "logit": "logit (minus the mean logit)"}[row["type"]]
    lines = [f"<b>{plot_text(node)}</b>: {what}", f"token: {plot_text(str(row['token']), visible_spaces=True)}",
             f"value {row['value']:.4g}, influence {row['influence']:.3g}"]
    if group:
        lines.append(f"group: {plot_text(group)}")
    if label:
        lines.append(f"note: {plot_text(label)}")
    return "<br>".join(lines)


def _add_edges(fig: go.Figure, edges: pd.DataFrame, placed: pd.DataFrame, opacity: float,
               legend: bool = True) -> None:
    """Edges as line segments, one trace per (sign, width bin): plotly draws one style a trace."""
    if not len(edges):
        return
    shown_in_legend = set()
    top = float(edges["weight"].abs().max()) or 1.0
    bins = np.minimum((edges["weight"].abs() / top * WIDTH_BINS).astype(int), WIDTH_BINS - 1)
    for sign, colour, label in ((1, POSITIVE, "edge > 0"), (-1, NEGATIVE, "edge < 0")):
        for b in range(WIDTH_BINS):
            part = edges[(np.sign(edges["weight"]) == sign) & (bins == b)]
            if not len(part):
                continue
            xs, ys = [], []
            for source, target in zip(part["source"], part["target"]):
                xs += [placed.at[source, "x"], placed.at[target, "x"], None]
                ys += [placed.at[source, "y"], placed.at[target, "y"], None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", opacity=opacity,
                                     line={"color": colour, "width": 0.6 + 2.4 * b},
                                     name=label, legendgroup=label,
                                     showlegend=legend and label not in shown_in_legend))
            shown_in_legend.add(label)


def scores_figure(scores: pd.DataFrame) -> go.Figure:
    frame = scores[["graph", "replacement", "completeness"]].groupby("graph", sort=False).mean()
    fig = go.Figure()
    for column, colour in (("replacement", "#4C78A8"), ("completeness", "#F58518")):
        fig.add_trace(go.Bar(x=list(frame.index), y=frame[column], name=f"{column} score",
                             marker={"color": colour}, text=[f"{v:.3f}" for v in frame[column]],
                             hovertemplate="%{x} graph: %{y:.3f}<extra>" + column + "</extra>"))
    fig.update_layout(title=title("How much the graph explains",
                                  "replacement: share of token-to-logit influence through latents, "
                                  "not errors; completeness: influence-weighted share of non-error inputs"),
                      barmode="group", xaxis={"title": {"text": "graph"}},
                      yaxis={"title": {"text": "score (0-1)"}, "range": [0, 1.05]}, height=360)
    return fig


def interventions_figure(table: pd.DataFrame) -> go.Figure:
    """Predicted (graph, frozen attention) beside actual (model) change of each logit."""
    labels = [f"{plot_text(n)} {op} → {plot_text(str(t), visible_spaces=True)}"
              for n, op, t in table[["node", "op", "token"]].itertuples(index=False)]
    fig = go.Figure()
    for column, colour, name in (("predicted", "#4C78A8", "predicted by the graph"),
                                 ("actual", "#F58518", "actual (model, attention free)")):
        fig.add_trace(go.Bar(x=labels, y=table[column], name=name, marker={"color": colour},
                             hovertemplate="%{x}: %{y:.4g}<extra>" + name + "</extra>"))
    fig.update_layout(title=title("Node interventions: the graph's prediction beside the model",
                                  "change of each logit minus the mean logit; the gap is what frozen "
                                  "attention and norms hide"),
                      barmode="group", xaxis={"title": {"text": "latent, operation → logit token"},
                                              "type": "category"},
                      yaxis={"title": {"text": "logit change"}}, height=400)
    return fig
