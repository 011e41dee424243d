"""Circuit figures: the top-k edges as a graph (layers bottom to top), the faithfulness curve
against random edge sets, and, with exact patching, each edge's score against its exact
effect."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import title
from analyses.figures.text import plot_text

POSITIVE, NEGATIVE = "#2166AC", "#B2182B"  # the diverging scale's ends: blue up, red down
INPUT_OFFSET = {"q": -0.22, "k": 0.0, "v": 0.22, "in": 0.0, "": 0.0}  # where an edge enters its receiver
MAX_DRAWN = 200  # edges drawn at most (the table has them all)
GOOD_ENOUGH = 0.8  # the default k: the fewest edges that keep this share


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


def node_positions(n_layers: int, n_heads: int) -> dict[str, tuple[float, float]]:
    """Heads along each layer's row, its MLP to their right; the embedding below, the logits above."""
    centre = n_heads / 2
    places = {"embed": (centre, -1.0), "logits": (centre, float(n_layers))}
    for layer in range(n_layers):
        places.update({f"L{layer}H{h}": (float(h), float(layer)) for h in range(n_heads)})
        places[f"L{layer}.mlp"] = (float(n_heads) + 0.6, float(layer))
    return places


def circuit_graph(edges: pd.DataFrame, k: int, meta: dict, faith: pd.DataFrame) -> go.Figure:
    n_layers, n_heads = int(meta["n_layers"]), int(meta["n_heads"])
    places = node_positions(n_layers, n_heads)
    kept = edges.sort_values("rank").head(min(k, MAX_DRAWN))
    top = float(kept["score"].abs().max()) if len(kept) else 1.0
    fig = go.Figure()
    for edge in kept.itertuples():
        (x0, y0), (x1, y1) = places[edge.sender], places[edge.receiver]
        x1 += INPUT_OFFSET.get(edge.receiver_input, 0.0)
        into = f" ({edge.receiver_input})" if edge.receiver_input else ""
        label = plot_text(f"{edge.sender} → {edge.receiver}{into}")
        fig.add_trace(go.Scatter(
            x=[x0, x1], y=[y0 + 0.12, y1 - 0.12], mode="lines", showlegend=False,
            line={"width": 0.8 + 7 * abs(edge.score) / top, "color": POSITIVE if edge.score >= 0 else NEGATIVE},
            opacity=0.75, hovertemplate=f"#{edge.rank} {label}<br>score {edge.score:.4g}<extra></extra>"))
    used = set(kept["sender"]) | set(kept["receiver"])
    names = list(places)
    fig.add_trace(go.Scatter(
        x=[places[n][0] for n in names], y=[places[n][1] for n in names], mode="markers+text",
        text=[n if n in used else "" for n in names], textposition="middle right", showlegend=False,
        marker={"size": [14 if n in used else 7 for n in names],
                "color": ["#444" if n in used else "#CCC" for n in names]},
        hovertemplate="%{customdata}<extra></extra>", customdata=names))
    for colour, name in ((POSITIVE, "raises the logit difference"), (NEGATIVE, "lowers it")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line={"color": colour, "width": 4}, name=name))
    share = faith.loc[faith["k"] == k, "metric"]
    note = (f"the top {k} of {meta['n_edges']} edges by |score| ({meta['method']}); width ∝ |score|"
            + (f"; run alone they keep {float(share.iloc[0]):.0%} of the logit difference" if len(share) else ""))
    fig.update_layout(
        title=title("The circuit: its edges between components", note),
        xaxis={"title": {"text": "head (MLP at the right)"}, "tickmode": "array",
               "tickvals": list(range(n_heads)) + [n_heads + 0.6],
               "ticktext": [str(h) for h in range(n_heads)] + ["MLP"], "showgrid": False, "zeroline": False},
        yaxis={"title": {"text": "layer"}, "tickmode": "array", "tickvals": list(range(-1, n_layers + 1)),
               "ticktext": ["embed", *[str(layer) for layer in range(n_layers)], "logits"],
               "showgrid": False, "zeroline": False},
        height=max(420, 110 * (n_layers + 2)), legend={"orientation": "h", "y": -0.15},
        margin={"l": 70, "r": 30, "t": 80, "b": 90})
    return fig


def faithfulness_curve(faith: pd.DataFrame, k: int, meta: dict) -> go.Figure:
    points = faith[faith["k"] > 0]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(points["k"]) + list(points["k"])[::-1],
                             y=list(points["random_max"]) + list(points["random_min"])[::-1],
                             fill="toself", fillcolor="rgba(150,150,150,0.25)", line={"width": 0},
                             name="random edge sets: range", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=points["k"], y=points["random_mean"], mode="lines+markers",
                             line={"color": "#888", "dash": "dash"}, name="random edge sets: mean",
                             hovertemplate="%{x} random edges: %{y:.3f}<extra></extra>"))
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
