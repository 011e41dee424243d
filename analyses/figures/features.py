"""`features` figures: the latents × positions grid of a prompt read through a dictionary,
and the reconstruction error's norm at each position."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.layout import (
    axis,
    cells,
    grid_height,
    heatmap,
    in_window,
    position_labels,
    position_window,
    tick_angle,
    title,
    window_note,
)

MAX_LATENT_ROWS = 40  # the grid's rows: the latents with the largest activation after BOS
BOS_COLOUR, BAR_COLOUR, NORM_COLOUR = "#BDBDBD", "#E45756", "#4C78A8"


def figures(result, positions: list[int] | None = None) -> dict[str, go.Figure]:
    """The grid and the error chart on `positions` (default: the last `WINDOW`); over a
    prompt set, each latent's frequency and strength (`figures.features_set`)."""
    if "set_latents" in result.tables:
        from analyses.figures.features_set import set_figures

        return set_figures(result)
    errors = result.tables["errors"]
    if positions is None:
        positions = position_window(len(errors))
    first = int(result.meta.get("first_after_bos", 1))
    site = str(result.meta.get("site", ""))
    return {"latents": latent_heatmap(result.tables["activations"], result.tables["latents"], errors,
                                      positions, site, int(result.spec.with_defaults().top_k)),
            "errors": error_chart(errors, positions, first, site)}


def shown_latents(activations: pd.DataFrame, latents: pd.DataFrame, where: list[int],
                  limit: int = MAX_LATENT_ROWS) -> list[int]:
    """The grid's rows: the latents ranked after BOS (the latents table's) that fire at the
    shown positions, strongest there first (a long prompt's window shows its own latents)."""
    ranked = set(latents["latent"])
    here = activations[activations["position"].isin(where) & activations["latent"].isin(ranked)]
    strongest = here.groupby("latent")["value"].max().sort_values(ascending=False, kind="stable")
    return [int(v) for v in strongest.index[:limit]]


def latent_heatmap(activations: pd.DataFrame, latents: pd.DataFrame, errors: pd.DataFrame,
                   positions: list[int] | None, site: str = "", top_k: int = 10) -> go.Figure:
    """Latent (rows) × input token (columns) activations; blank where a latent is not among
    the position's top_k. Rows: the strongest latents on the shown positions (`shown_latents`).
    The hover names each latent's top promoted tokens."""
    n_all = len(errors)
    shown = in_window(errors, positions)
    where = [int(p) for p in shown["position"]]
    rows = shown_latents(activations, latents, where)
    grid = (activations.pivot_table(index="latent", columns="position", values="value", aggfunc="max")
            .reindex(index=rows, columns=where))
    z = grid.to_numpy(dtype=float)  # [latent, position], NaN: not in the top_k there
    promotes = {int(latent): ", ".join(repr(str(t)) for t in part.sort_values("rank")["token_str"].head(4))
                for latent, part in latents[latents["direction"] == "promote"].groupby("latent")}
    density = latents.drop_duplicates("latent").set_index("latent")["density"]
    labels = position_labels(n_all, list(errors["token"]))
    x_ticks = [labels[p] for p in where]
    y_ticks = [f"#{latent}" for latent in rows]
    hover = cells(z, lambda i, j, v: (
        f"latent {rows[i]} · position {where[j]} ({x_ticks[j]})<br>"
        + (f"activation {v:.4g}" if np.isfinite(v) else f"not among the top {top_k} here")
        + f"<br>density {density.get(rows[i], float('nan')):.3%}<br>promotes {promotes.get(rows[i], '')}"))
    fig = go.Figure(heatmap(z, hover, signed=False, colorbar="activation",
                            limit=float(np.nanmax(z)) if np.isfinite(z).any() else 1.0))
    more = len(dict.fromkeys(latents["latent"])) - len(rows)
    notes = [f"blank: not among the position's top {top_k}", window_note(where, n_all),
             f"{more} other latents not drawn" if more > 0 else None]
    fig.update_layout(
        title=title(f"Latents of {site} on the prompt (strongest first)", "; ".join(n for n in notes if n)),
        xaxis=axis("input token (position)", x_ticks, tickangle=tick_angle(len(x_ticks))),
        yaxis=axis("latent", y_ticks, autorange="reversed"),
        height=grid_height(len(rows)), margin={"l": 70, "r": 20, "t": 80, "b": 90})
    return fig


def error_chart(errors: pd.DataFrame, positions: list[int] | None, first: int = 1, site: str = "") -> go.Figure:
    """|y − ŷ| per position beside the site's own norm |y|. BOS (which no dictionary here
    saw in training) is drawn grey and the axis fits the other positions."""
    n_all = len(errors)
    shown = in_window(errors, positions)
    labels = position_labels(n_all, list(errors["token"]))
    x_ticks = [labels[int(p)] for p in shown["position"]]
    x = list(range(len(shown)))
    custom = np.stack([shown["position"], shown["relative"].fillna(np.nan), shown["norm"]], axis=1)
    hover = ("position %{customdata[0]}<br>|error| %{y:.4g}<br>relative %{customdata[1]:.1%} of |y| "
             "%{customdata[2]:.4g}<extra></extra>")
    bos = (shown["position"] < first).to_numpy()
    # two traces, so the legend's swatch is each one's own colour (one trace shows its first bar's)
    bars = [go.Bar(x=[i for i, b in zip(x, bos) if b == is_bos], y=shown["error_norm"][bos == is_bos],
                   name=name, marker={"color": colour}, customdata=custom[bos == is_bos], hovertemplate=hover)
            for is_bos, name, colour in ((False, "|error| = |y − ŷ|", BAR_COLOUR),
                                         (True, "|error| at BOS (may run past the axis)", BOS_COLOUR))
            if (bos == is_bos).any()]
    fig = go.Figure([
        *bars,
        go.Scatter(x=x, y=shown["norm"], name="|y| (the site's own norm)", mode="markers+lines",
                   line={"color": NORM_COLOUR, "width": 1}, marker={"size": 5},
                   hovertemplate="|y| %{y:.4g}<extra></extra>")])
    after = shown[shown["position"] >= first]
    top = float(max(after["error_norm"].max(), after["norm"].max())) if len(after) else None
    bos_shown = bool(first) and bool((shown["position"] < first).any())
    note = "; ".join(n for n in ("grey: BOS, never in the dictionary's training text; the axis fits the other "
                                 "positions" if bos_shown else None,
                                 window_note(list(shown["position"]), n_all)) if n)
    fig.update_layout(
        title=title(f"What the dictionary leaves unexplained at {site}", note or None),
        xaxis=axis("input token (position)", x_ticks, tickangle=tick_angle(len(x_ticks))),
        yaxis={"title": {"text": "norm (the site's units)"},
               **({"range": [0, 1.1 * top]} if top else {})},
        legend={"orientation": "h", "y": -0.3}, height=400, margin={"l": 70, "r": 20, "t": 80, "b": 110})
    return fig
