"""Circuit figures: the top-k edges as a graph (layers bottom to top), the faithfulness curve
against random edge sets, and, with exact patching, each edge's score against its exact
effect."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures import circuit_layout as layout
from analyses.figures.layout import title
from analyses.figures.text import plot_text

POSITIVE, NEGATIVE = "#2166AC", "#B2182B"  # the diverging scale's ends: blue up, red down
MAX_DRAWN = 200  # edges drawn at most (the table has them all)
GOOD_ENOUGH = 0.8  # the default k: the fewest edges that keep this share
# An edge's exact effect disagrees with its score when the two have opposite signs or the
# exact effect is under this share of the score (both over the same examples, in logits) …
AGREEING_SHARE = 0.25
# … unless both are under this share of the clean − corrupted logit difference (noise).
NOISE_SHARE = 0.01
WARNING = "\u26a0"  # ⚠


def figures(result, k: int | None = None) -> dict[str, go.Figure]:
    faith = result.tables["faithfulness"]
    k = default_k(faith) if k is None else k
    shown = {"graph": circuit_graph(result.tables["edges"], k, result.meta, faith),
             "faithfulness": faithfulness_curve(faith, k, result.meta)}
    edges = result.tables["edges"]
    if edges["exact"].notna().any():
        shown["agreement"] = agreement_scatter(edges, result.meta)
    return shown


def default_k(faith: pd.DataFrame) -> int:
    """The fewest edges whose circuit keeps `GOOD_ENOUGH` of the behaviour (else all)."""
    enough = faith[faith["metric"] >= GOOD_ENOUGH]
    return int(enough["k"].min()) if len(enough) else int(faith["k"].max())


def compared_score(edges: pd.DataFrame) -> pd.Series:
    """The score exact patching is compared with: over exact's own examples where recorded."""
    if "sample_score" in edges and edges["sample_score"].notna().any():
        return edges["sample_score"].where(edges["sample_score"].notna(), edges["score"])
    return edges["score"]


def disagreeing(edges: pd.DataFrame, total_effect: float) -> pd.Series:
    """Per edge: its exact effect disagrees with its score — opposite signs, or |exact| under
    `AGREEING_SHARE` of |score| — and one of them reaches `NOISE_SHARE` of |total_effect|.
    False where exact patching did not run."""
    score, exact = compared_score(edges).astype(float), edges["exact"].astype(float)
    big = np.maximum(score.abs(), exact.abs()) >= NOISE_SHARE * abs(total_effect)
    opposite = np.sign(score) * np.sign(exact) < 0
    small = exact.abs() < AGREEING_SHARE * score.abs()
    return (exact.notna() & big & (opposite | small)).rename("disagrees")


def flag_rule() -> str:
    """The rule `disagreeing` applies, in words (the page caption and the README say it too)."""
    return (f"{WARNING} dashed: exact patching disagrees with the score (opposite sign, or |exact| < "
            f"{AGREEING_SHARE:g} × |score|, over the same examples; edges where both are under "
            f"{NOISE_SHARE:.0%} of the clean − corrupted logit difference are not flagged)")


def edge_label(sender: str, receiver: str, receiver_input: str) -> str:
    into = f" ({receiver_input})" if receiver_input and receiver_input != "in" else ""
    return plot_text(f"{sender} → {receiver}{into}")


def edge_hover(edge, flagged: bool, compared: float) -> str:
    text = f"#{edge.rank} {edge_label(edge.sender, edge.receiver, edge.receiver_input)}<br>score {edge.score:.4g}"
    if pd.notna(edge.exact):
        text += f"<br>exact effect {edge.exact:.4g} (score over the same examples {compared:.4g})"
    if flagged:
        text += f"<br>{WARNING} the exact effect disagrees with the score"
    return text + "<extra></extra>"


def circuit_graph(edges: pd.DataFrame, k: int, meta: dict, faith: pd.DataFrame) -> go.Figure:
    n_layers, n_heads = int(meta["n_layers"]), int(meta["n_heads"])
    boxes = layout.node_boxes(n_layers, n_heads)
    kept = edges.sort_values("rank").head(min(k, MAX_DRAWN))
    flags = disagreeing(kept, float(meta.get("total_effect", 0.0)))
    compared = compared_score(kept)
    top = float(kept["score"].abs().max()) if len(kept) else 1.0
    used = set(kept["sender"]) | set(kept["receiver"])
    ends = [(e.sender, e.receiver, layout.outlet(boxes[e.sender]), layout.port(boxes[e.receiver], e.receiver_input))
            for e in kept.itertuples()]
    routes = layout.route_edges(ends, boxes, used)
    lines, arrows = [], []
    for edge, route, flagged, score in zip(kept.itertuples(), routes, flags, compared):
        colour = POSITIVE if edge.score >= 0 else NEGATIVE
        width = 0.8 + 6 * abs(edge.score) / top
        lines.append(go.Scatter(
            x=route.xs.round(4).tolist(), y=route.ys.round(4).tolist(), mode="lines", showlegend=False, opacity=0.8,
            line={"width": width, "color": colour, "dash": "dash" if flagged else "solid"},
            hovertemplate=edge_hover(edge, bool(flagged), float(score)), name=f"#{edge.rank}"))
        arrows.append(arrow(route, colour, width))
    fig = go.Figure(lines)  # one call: adding 200 traces one by one takes seconds
    draw_nodes(fig, boxes, used, kept)
    for colour, name in ((POSITIVE, "raises the logit difference"), (NEGATIVE, "lowers it")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line={"color": colour, "width": 4}, name=name))
    if flags.any():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line={"color": "#555", "width": 2, "dash": "dash"},
                                 name=f"{WARNING} exact effect disagrees ({int(flags.sum())})"))
    share = faith.loc[faith["k"] == k, "metric"]
    note = (f"the top {k} of {meta['n_edges']} edges by |score| ({meta['method']}); width ∝ |score|; "
            "each edge ends at its receiver's input (q, k, v under a head)"
            + (f";<br>run alone they keep {float(share.iloc[0]):.0%} of the logit difference" if len(share) else ""))
    x_mlp = layout.mlp_column(n_heads)
    top_y = boxes["logits"].y + 0.4
    lowest = min([-1.0, *(float(r.ys.min()) for r in routes)])  # no curve leaves the plot
    highest = max([top_y, *(float(r.ys.max()) for r in routes)])
    fig.update_layout(
        title=title("The circuit: its edges between components", note), annotations=arrows,
        shapes=node_shapes(boxes, used),
        xaxis={"title": {"text": "head (MLP at the right)"}, "tickmode": "array",
               "tickvals": list(range(n_heads)) + [x_mlp], "ticktext": [str(h) for h in range(n_heads)] + ["MLP"],
               "showgrid": False, "zeroline": False,
               "range": [min([-0.8, *(float(r.xs.min()) - 0.1 for r in routes)]),
                         max([x_mlp + 0.8, *(float(r.xs.max()) + 0.1 for r in routes)])]},
        yaxis={"title": {"text": "layer"}, "tickmode": "array",
               "tickvals": [-1.0, *[layout.layer_y(layer) for layer in range(n_layers)], boxes["logits"].y],
               "ticktext": ["embed", *[str(layer) for layer in range(n_layers)], "logits"],
               "showgrid": False, "zeroline": False, "range": [min(-1.45, lowest - 0.1), max(top_y, highest) + 0.1]},
        height=max(560, int(120 * (top_y + 1.6))), legend={"orientation": "h", "y": -0.1},
        hovermode="closest", margin={"l": 70, "r": 30, "t": 80, "b": 90})
    return fig


def arrow(route: layout.Route, colour: str, width: float) -> dict:
    """An arrowhead at the curve's end, along its last stretch (an annotation: shapes have none)."""
    back = max(2, layout.SAMPLES // 8)
    end = [round(float(v), 4) for v in (route.xs[-1], route.ys[-1], route.xs[-back], route.ys[-back])]
    return dict(x=end[0], y=end[1], ax=end[2], ay=end[3],
                xref="x", yref="y", axref="x", ayref="y", text="", showarrow=True, arrowhead=2,
                arrowsize=1.0, arrowwidth=min(2.5, max(1.2, width / 2)), arrowcolor=colour, standoff=0)


def node_shapes(boxes: dict[str, layout.Box], used: set[str]) -> list[dict]:
    """A box for each node of the circuit (the others are faint dots)."""
    return [dict(type="rect", xref="x", yref="y", x0=b.x - b.half_w, x1=b.x + b.half_w, y0=b.y - b.half_h,
                 y1=b.y + b.half_h, line={"color": "#444", "width": 1}, fillcolor="#F4F4F4", layer="below")
            for name, b in boxes.items() if name in used]


def draw_nodes(fig: go.Figure, boxes: dict[str, layout.Box], used: set[str], kept: pd.DataFrame) -> None:
    """Node labels (circuit nodes), faint dots (the rest), and the circuit nodes' input ports."""
    names = list(boxes)
    fig.add_trace(go.Scatter(
        x=[boxes[n].x for n in names], y=[boxes[n].y for n in names], mode="markers+text", showlegend=False,
        text=[n if n in used else "" for n in names], textfont={"size": 11}, textposition="top center",
        marker={"size": [1 if n in used else 6 for n in names], "color": ["rgba(0,0,0,0)" if n in used else "#D5D5D5"
                                                                            for n in names]},
        customdata=names, hovertemplate="%{customdata}<extra></extra>"))
    entered = set(zip(kept["receiver"], kept["receiver_input"]))
    xs, ys, labels, colours = [], [], [], []
    for name in names:
        if name not in used or name == "embed":
            continue
        inputs = ("q", "k", "v") if "H" in name else ("in",)
        for which in inputs:
            x, y = layout.port(boxes[name], which)
            xs.append(round(x, 4))  # as the curves' ends are rounded
            ys.append(round(y, 4))
            labels.append(which if which != "in" else "")
            colours.append("#222" if (name, which) in entered or (name == "logits" and (name, "") in entered)
                           else "#BBB")
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers+text", text=labels, textposition="top center",
                             textfont={"size": 9, "color": "#555"}, showlegend=False, hoverinfo="skip",
                             marker={"symbol": "square", "size": 6, "color": colours}, name="ports"))


def faithfulness_curve(faith: pd.DataFrame, k: int, meta: dict) -> go.Figure:
    points = faith[faith["k"] > 0]
    draws = meta.get("random_sets")  # older results did not record it
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(points["k"]) + list(points["k"])[::-1],
                             y=list(points["random_max"]) + list(points["random_min"])[::-1],
                             fill="toself", fillcolor="rgba(150,150,150,0.25)", line={"width": 0},
                             name="random edge sets: min–max" + (f" of {draws} draws" if draws else ""),
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=points["k"], y=points["random_mean"], mode="lines+markers",
                             line={"color": "#888", "dash": "dash"}, name="random edge sets: mean",
                             customdata=points[["random_min", "random_max"]].to_numpy(),
                             hovertemplate="%{x} random edges: mean %{y:.3f} (min %{customdata[0]:.3f}, "
                                           "max %{customdata[1]:.3f})<extra></extra>"))
    fig.add_trace(go.Scatter(x=points["k"], y=points["metric"], mode="lines+markers",
                             line={"color": POSITIVE, "width": 3}, name="top-k edges by |score|",
                             hovertemplate="top %{x} edges: %{y:.3f}<extra></extra>"))
    chosen = faith[faith["k"] == k]
    if len(chosen) and k > 0:
        fig.add_trace(go.Scatter(x=[k], y=chosen["metric"], mode="markers", name=f"shown: k = {k}",
                                 marker={"size": 14, "color": "#F58518", "symbol": "diamond"}))
    fig.add_hline(y=1, line={"color": "#999", "width": 1})
    fig.add_hline(y=0, line={"color": "#999", "width": 1})
    examples = meta.get("n_examples", 1)
    fig.update_layout(
        title=title("Faithfulness: how much of the behaviour the top-k edges keep, run alone",
                    f"(mean circuit − mean corrupted) / (mean clean − mean corrupted) logit difference over "
                    f"{examples} example{'s' if examples != 1 else ''}; every other edge carries its "
                    "corrupted-run value"),
        xaxis={"title": {"text": f"edges kept, k (of {meta['n_edges']}; log scale)"}, "type": "log"},
        yaxis={"title": {"text": "share of the logit difference kept"}},
        height=440, legend={"orientation": "h", "y": -0.25}, margin={"l": 70, "r": 30, "t": 90, "b": 110})
    return fig


def agreement_scatter(edges: pd.DataFrame, meta: dict) -> go.Figure:
    rows = edges[edges["exact"].notna()]
    score = rows["sample_score"] if "sample_score" in rows else rows["score"]  # over exact's examples
    labels = [plot_text(f"{s} → {r}" + (f" ({i})" if i else "")) for s, r, i in
              rows[["sender", "receiver", "receiver_input"]].itertuples(index=False)]
    limit = float(np.nanmax(np.abs(np.r_[score, rows["exact"]]))) or 1.0
    fig = go.Figure([
        go.Scatter(x=[-limit, limit], y=[-limit, limit], mode="lines", line={"color": "#BBB", "dash": "dot"},
                   name="score = exact"),
        go.Scatter(x=rows["exact"], y=score, mode="markers", marker={"size": 6, "color": POSITIVE},
                   customdata=labels, name="an edge",
                   hovertemplate="%{customdata}<br>exact %{x:.4g}, score %{y:.4g}<extra></extra>")])
    sample = meta.get("exact_examples", [0])
    n = len(sample) if isinstance(sample, list) else int(sample)
    of_set = f" (rows drawn at random from {meta['n_examples']})" if n < meta.get("n_examples", 1) else ""
    note = (f"Spearman {meta.get('exact_spearman', float('nan')):.3f}, Pearson "
            f"{meta.get('exact_pearson', float('nan')):.3f}; both sides over the same {n} "
            f"example{'s' if n != 1 else ''}{of_set}")
    fig.update_layout(
        title=title(f"Each edge's {meta['method']} score against exact single-edge patching", note),
        xaxis={"title": {"text": "exact effect: " + meta.get(
            "exact_direction", "the corrupted prompt with that edge alone clean − corrupted metric") + " (logits)"}},
        yaxis={"title": {"text": f"{meta['method']} score (logits)"}}, height=460,
        legend={"orientation": "h", "y": -0.2})
    return fig
