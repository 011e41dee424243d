"""Attribution patching figures: AtP beside exact patching per node kind (one colour scale),
and the agreement of the two (a scatter and a plain-text verdict)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures import layout
from analyses.figures.agreement_scatter import SCATTER_GL_POINTS, atp_agreement_scatter  # noqa: F401 - re-exported
from analyses.figures.layout import cells, grid, heatmap, title
from analyses.figures.text import plot_text


def figures(result, positions: list[int] | None = None) -> dict[str, go.Figure]:
    """One AtP heatmap per node kind, then the agreement scatter when exact patching ran.
    `positions`: the positions the heatmaps show (default: the last `WINDOW` and every
    position the prompts differ at)."""
    if "latents" in result.tables:  # dictionary=: its latents and error node instead of the basis' nodes
        from analyses.figures import attribution_latents

        return attribution_latents.figures(result, positions)
    meta, nodes = result.meta, result.tables["attributions"]
    magnitude = bool(meta.get("atp_is_magnitude"))
    clean, corrupted = meta.get("clean_tokens"), meta.get("corrupted_tokens")
    if positions is None:
        positions = layout.position_window(int(meta.get("n_tokens") or len(clean or [])),
                                           layout.differing_positions(clean, corrupted))
    shown = {f"atp_{node}": atp_heatmap(nodes, node, clean, corrupted, magnitude, positions)
             for node in dict.fromkeys(nodes["node"])}
    if nodes["exact"].notna().any():
        shown["agreement"] = atp_agreement_scatter(nodes, result.tables.get("agreement"),
                                                   magnitude, clean)
    relp = result.tables.get("relp_agreement")
    if relp is not None and len(relp):
        shown["relp_vs_atp"] = methods_agreement_bars(result.tables["agreement"], relp)
    return shown


def methods_agreement_bars(atp: pd.DataFrame, relp: pd.DataFrame) -> go.Figure:
    """Per node kind, each method's Pearson r with exact patching, side by side (RelP scores
    no q or k node: its attention patterns are held fixed)."""
    kinds = [k for k in atp["node"] if k in set(relp["node"]) and k != "all"] + ["all"]
    fig = go.Figure()
    for name, table, colour in (("AtP (gradient)", atp, "#4C78A8"), ("RelP (relevance)", relp, "#F58518")):
        values = table.set_index("node").reindex(kinds)
        fig.add_trace(go.Bar(x=kinds, y=values["pearson"], name=name, marker={"color": colour},
                             customdata=np.stack([values["spearman"], values["n_signal"]], axis=-1),
                             hovertemplate="%{x}: Pearson %{y:.3f}, Spearman %{customdata[0]:.3f} "
                                           "(%{customdata[1]} nodes with signal)<extra>" + name + "</extra>"))
    fig.update_layout(
        barmode="group", height=400,
        title=layout.title("Agreement with exact patching, by node kind: AtP beside RelP",
                           "Pearson r over the nodes of each kind (RelP gives q and k nodes no relevance); "
                           "hover for Spearman"),
        xaxis={"title": {"text": "node kind"}, "type": "category"},
        yaxis={"title": {"text": "Pearson r with exact patching"}, "range": [min(0.0, float(np.nanmin(
            np.r_[atp["pearson"], relp["pearson"]])) - 0.05), 1.02]},
        legend={"orientation": "h", "y": -0.2})
    return fig


NODE_TITLES = {  # node kind -> what one node of it is
    "resid": "residual stream entering each layer",
    "head": "head outputs",
    "mlp": "MLP outputs",
    "q": "queries",
    "k": "keys",
    "v": "values",
}


def atp_heatmap(attributions: pd.DataFrame, node: str, clean_tokens: list[str] | None = None,
                corrupted_tokens: list[str] | None = None, magnitude: bool = False,
                positions: list[int] | None = None) -> go.Figure:
    """The AtP estimates of one node kind as a (layer[, head]) × position heatmap, with
    RelP's beside them when `relp` is filled (`method=relp`) and the exact patching effects
    when `exact` is, all on one colour scale.

    `attributions`: the attribution patching table. Both panels are changes of the raw
    logit difference from the corrupted run. With `magnitude` (GradDrop: `atp` >= 0) the
    exact panel shows |exact|, which is what AtP* estimates then. A `resid` node past the
    last block's layer is the final residual stream, labelled `final`. `positions`: only
    these positions (a window of a long prompt; default all).
    """
    rows = attributions[attributions["node"] == node]
    n_all = int(rows["position"].max()) + 1 if len(rows) else 0
    rows = layout.in_window(rows, positions)
    per_head = bool((rows["head"] >= 0).any())
    index = ["layer", "head"] if per_head else ["layer"]
    atp = grid(rows, index, "position", "atp")
    exact = grid(rows, index, "position", "exact").reindex(index=atp.index, columns=atp.columns)
    a, e = atp.to_numpy(dtype=float), exact.to_numpy(dtype=float)
    r = (grid(rows, index, "position", "relp").reindex(index=atp.index, columns=atp.columns)
         .to_numpy(dtype=float) if "relp" in rows else np.full_like(a, np.nan))
    has_relp = bool(np.isfinite(r).any())  # q and k nodes get none: their effect runs through
    # the patterns RelP holds fixed
    if magnitude:
        e = np.abs(e)
    has_exact = bool(np.isfinite(e).any())
    y_ticks = layout.row_labels(atp.index)
    if not per_head:
        last_block = attributions.loc[attributions["node"] != "resid", "layer"].max()
        if pd.notna(last_block):
            y_ticks = ["final" if int(layer) > last_block else tick
                       for layer, tick in zip(atp.index, y_ticks)]
    names = layout.position_labels(n_all, clean_tokens, corrupted_tokens)
    x_ticks = [names[int(p)] for p in atp.columns]
    exact_name = "|exact|" if magnitude else "exact"

    def hover(i, j, _):
        values = (f"AtP {a[i, j]:.4g}" + (f"<br>RelP {r[i, j]:.4g}" if has_relp else "")
                  + (f"<br>{exact_name} {e[i, j]:.4g}" if has_exact else ""))
        return f"{y_ticks[i]} · position {int(atp.columns[j])} ({x_ticks[j]})<br>{values}"

    hover_text = cells(a, hover)
    limit = layout.symmetric_limit(a, e if has_exact else [], r if has_relp else [])
    panels = ([("AtP estimate", a)] + ([("RelP estimate", r)] if has_relp else [])
              + ([(f"{exact_name} patching", e)] if has_exact else []))
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[name for name, _ in panels])
    for col, (_, z) in enumerate(panels, start=1):
        fig.add_trace(heatmap(z, hover_text, signed=not magnitude, coloraxis="coloraxis"),
                      row=1, col=col)
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(x_ticks))), ticktext=x_ticks,
                         tickangle=layout.tick_angle(len(x_ticks) * len(panels)),  # panels share the width
                         title={"text": "input token (position)"},
                         row=1, col=col)
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(y_ticks))), ticktext=y_ticks,
                     title={"text": "layer, head" if per_head else "layer"}, row=1, col=1)
    scale = layout.colour_scale(not magnitude, limit, prefix="c")
    note = ("change of the logit difference from the corrupted run when the node is patched to "
            "its clean value")
    shown_note = layout.window_note(atp.columns, n_all)
    fig.update_layout(
        title=title(f"{plot_text(node)}: {NODE_TITLES.get(node, 'nodes')}",
                    note + (f" · {shown_note}" if shown_note else "")),
        coloraxis={**scale, "colorbar": {"title": {"text": "Δ logit diff"}}},
        height=layout.grid_height(len(y_ticks), extra=200), margin={"l": 80, "r": 20, "t": 100, "b": 90},
    )
    return fig


TRUSTED_PEARSON = 0.9  # agreement at or above which a node kind's AtP reads as trustworthy
TRUSTED_OVERLAP = 0.7


def agreement_note(agreement: pd.DataFrame | None) -> str:
    """One plain-text line: for which node kinds AtP matched exact patching on this input."""
    if agreement is None or agreement.empty:
        return ("Exact patching was not run (exact = no, or more nodes than the automatic "
                "limit), so nothing here checks AtP: set exact to yes to compare.")
    kinds = agreement[agreement["node"] != "all"]
    good = kinds[(kinds["pearson"] >= TRUSTED_PEARSON) & (kinds["top10_overlap"] >= TRUSTED_OVERLAP)]
    poor = kinds[~kinds["node"].isin(good["node"])]
    rule = f"Pearson r ≥ {TRUSTED_PEARSON} and top-10 overlap ≥ {TRUSTED_OVERLAP:.0%}"
    if poor.empty:
        verdict = f"On this input AtP matched exact patching for every node kind ({rule})."
    elif good.empty:
        verdict = (f"On this input AtP matched exact patching for no node kind ({rule}): read its "
                   "heatmaps as rough candidates only.")
    else:
        verdict = (f"On this input AtP matched exact patching ({rule}) for {', '.join(good['node'])}; "
                   f"not for {', '.join(poor['node'])}: trust the exact panels there.")
    return verdict + signal_note(agreement)


def signal_note(agreement: pd.DataFrame) -> str:
    """How many nodes the correlations rest on: those whose |exact| is above float noise."""
    if "n_signal" not in agreement:
        return ""
    every = agreement.set_index("node")
    thin = [f"{node} ({int(r.n_signal)} of {int(r.n_nodes)})" for node, r in every.iterrows()
            if node != "all" and r.n_signal < 10]
    text = (f" Effects under 1e-4 are float noise and tie at zero; {int(every.loc['all', 'n_signal'])} of "
            f"{int(every.loc['all', 'n_nodes'])} nodes carry signal, and the correlations are shown to two "
            "decimals, which is what they can support")
    return text + (f"; few nodes carry signal for {', '.join(thin)}, so read those correlations loosely."
                   if thin else ".")


# --------------------------------------------------------------------------- heads
