"""AtP against exact patching, one point per node: the scatter both attribution pages draw
(the model's own nodes, `attribution_patching`, and a dictionary's latents, `attribution_latents`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import head_label, title
from analyses.figures.text import plot_text

SCATTER_GL_POINTS = 5_000  # above this many points the scatter draws with WebGL


def atp_agreement_scatter(attributions: pd.DataFrame, agreement: pd.DataFrame | None = None,
                          magnitude: bool = False, clean_tokens: list[str] | None = None) -> go.Figure:
    """AtP (y) against exact patching (x), one colour per node kind, with the line y = x;
    each legend entry carries that kind's row of the `agreement` table (Pearson r,
    Spearman ρ, top-10 overlap), the title the `all` row. With `magnitude`, x is |exact|."""
    done = attributions[attributions["exact"].notna()]
    stats = {} if agreement is None else agreement.set_index("node").to_dict("index")
    x_name = "|exact|" if magnitude else "exact"
    trace = go.Scattergl if len(done) > SCATTER_GL_POINTS else go.Scatter
    fig = go.Figure()
    for node, group in done.groupby("node", sort=False):
        x = group["exact"].abs() if magnitude else group["exact"]
        where = [_node_where(layer, head, pos, clean_tokens)
                 for layer, head, pos in group[["layer", "head", "position"]].itertuples(index=False)]
        if "latent" in group:  # a dictionary's nodes: which latent
            where = [w if j < 0 else f"latent {int(j)} · {w}" for w, j in zip(where, group["latent"])]
        name = plot_text(str(node)) + (f" · {_stats_text(stats[node])}" if node in stats else "")
        fig.add_trace(trace(
            x=x, y=group["atp"], mode="markers", name=name, marker={"size": 6, "opacity": 0.7},
            customdata=[f"{plot_text(str(node))} {w}" for w in where],
            hovertemplate=f"%{{customdata}}<br>{x_name} %{{x:.4g}}<br>AtP %{{y:.4g}}<extra></extra>",
        ))
    values = np.concatenate([(done["exact"].abs() if magnitude else done["exact"]).to_numpy(float),
                             done["atp"].to_numpy(float)]) if len(done) else np.zeros(1)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="AtP = exact",
                             line={"dash": "dash", "color": "grey", "width": 1}, hoverinfo="skip"))
    fig.update_layout(
        title=title("AtP estimate against exact patching, one point per node",
                     f"all nodes: {_stats_text(stats['all'])}" if "all" in stats else None),
        xaxis={"title": {"text": f"{x_name} patching effect (Δ logit diff)"}},
        yaxis={"title": {"text": "AtP estimate (Δ logit diff)"}},
        height=520, legend={"title": {"text": "node kind"}},
        margin={"l": 70, "r": 20, "t": 80, "b": 60},
    )
    return fig


def _node_where(layer, head, position, tokens: list[str] | None) -> str:
    parts = [head_label(layer, head) if head >= 0 else f"L{int(layer)}"]
    if position >= 0:
        token = tokens[int(position)] if tokens is not None and position < len(tokens) else None
        parts.append(f"pos {int(position)}" + (f" ({plot_text(token, visible_spaces=True)})"
                                               if token is not None else ""))
    return " ".join(parts)


def _stats_text(row: dict) -> str:
    def num(v, fmt):
        return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)
    return (f"r {num(row.get('pearson'), '.2f')}, ρ {num(row.get('spearman'), '.2f')}, "
            f"top-10 {num(row.get('top10_overlap'), '.0%')}")
