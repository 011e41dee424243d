"""Plotly figure builders: pure functions from a result's tables to a `go.Figure`.

No Streamlit here, so each is tested on a hand-made DataFrame. Every string that came
from a user or a tokenizer goes through `plot_text` (invisible characters escaped,
HTML escaped) before it reaches a label, a cell, a hover box or a legend.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.components.display import plot_text

CELL_PX = 34  # height of one heatmap row
MAX_CELL_TEXT = 10  # characters of a token drawn inside a cell (the hover has all of it)
MAX_TEXT_COLUMNS = 48  # wider heatmaps leave cells blank: the text would not fit
MAX_HOVER_K = 10  # tokens listed per cell on hover (a top-100 table would make it megabytes)


def logit_lens_heatmap(top: pd.DataFrame) -> go.Figure:
    """Layer × position heatmap of the top-1 token's probability, the token in each cell.

    `top`: the logit lens `top` table (layer, layer_index, position, token, rank,
    token_str, prob, …). x: input positions labelled by their tokens; y: layers, first at
    the bottom; hover: the cell's top-k list (at most `MAX_HOVER_K`).
    """
    first = top[top["rank"] == 1]
    layers = first.drop_duplicates("layer_index").sort_values("layer_index")
    inputs = first.drop_duplicates("position").sort_values("position")
    n_layer, n_pos = len(layers), len(inputs)
    layer_row = {li: i for i, li in enumerate(layers["layer_index"])}
    pos_col = {p: j for j, p in enumerate(inputs["position"])}

    z = np.full((n_layer, n_pos), np.nan)
    cell = np.full((n_layer, n_pos), "", dtype=object)
    for li, p, prob, tok in first[["layer_index", "position", "prob", "token_str"]].itertuples(index=False):
        z[layer_row[li], pos_col[p]] = prob
        cell[layer_row[li], pos_col[p]] = plot_text(_clip(tok), visible_spaces=True)

    hover = np.full((n_layer, n_pos), "", dtype=object)
    input_of = dict(zip(inputs["position"], inputs["token"]))
    layer_of = dict(zip(layers["layer_index"], layers["layer"]))
    listed = top[top["rank"] <= MAX_HOVER_K].sort_values("rank")
    for (li, p), group in listed.groupby(["layer_index", "position"], sort=False):
        lines = [f"{r}. {plot_text(t, visible_spaces=True)} &nbsp; {pr:.3f}"
                 for r, t, pr in group[["rank", "token_str", "prob"]].itertuples(index=False)]
        head = (f"layer {plot_text(str(layer_of[li]))} · position {p} "
                f"({plot_text(input_of[p], visible_spaces=True)})")
        hover[layer_row[li], pos_col[p]] = "<br>".join([head, *lines])

    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(n_pos)), y=list(range(n_layer)), text=cell,
        texttemplate="%{text}" if n_pos <= MAX_TEXT_COLUMNS else "",
        textfont={"size": 10}, customdata=hover, hovertemplate="%{customdata}<extra></extra>",
        colorscale="Blues", zmin=0.0, zmax=1.0, colorbar={"title": {"text": "top-1 prob"}},
        xgap=1, ygap=1,
    ))
    fig.update_layout(
        title={"text": "Top-1 prediction at each layer and position"},
        xaxis={"title": {"text": "input token (position)"}, "tickmode": "array",
               "tickvals": list(range(n_pos)), "tickangle": -45,
               "ticktext": [plot_text(t, visible_spaces=True) for t in inputs["token"]]},
        yaxis={"title": {"text": "layer"}, "tickmode": "array", "tickvals": list(range(n_layer)),
               "ticktext": [plot_text(str(name)) for name in layers["layer"]]},
        height=max(260, 140 + CELL_PX * n_layer), margin={"l": 90, "r": 20, "t": 50, "b": 90},
    )
    return fig


def target_rank_chart(targets: pd.DataFrame, position: int | None = None) -> go.Figure:
    """Each target token's rank across layers at one position (default: the last), on a
    log scale with rank 1 at the top. `targets`: the logit lens `targets` table."""
    position = int(targets["position"].max()) if position is None else position
    at = targets[targets["position"] == position].sort_values("layer_index")
    layers = at.drop_duplicates("layer_index")
    ticks = rank_ticks(int(at["rank"].max()) if len(at) else 1)
    fig = go.Figure()
    for token_id, line in at.groupby("token_id", sort=False):
        name = plot_text(str(line["token_str"].iloc[0]), visible_spaces=True)
        fig.add_trace(go.Scatter(
            x=line["layer_index"], y=line["rank"], mode="lines+markers", name=name,
            customdata=list(zip(line["layer"].astype(str).map(plot_text), line["prob"],
                                [name] * len(line))),
            hovertemplate="%{customdata[2]}<br>layer %{customdata[0]}<br>rank %{y}"
                          "<br>prob %{customdata[1]:.4f}<extra></extra>",
        ))
    fig.update_layout(
        title={"text": f"Rank of each target token at the last position ({position})"},
        xaxis={"title": {"text": "layer"}, "tickmode": "array",
               "tickvals": list(layers["layer_index"]),
               "ticktext": [plot_text(str(n)) for n in layers["layer"]]},
        yaxis={"title": {"text": "rank (1 = top prediction)"}, "type": "log",
               "autorange": "reversed", "tickmode": "array", "tickvals": ticks,
               "ticktext": [f"{t:,}" for t in ticks]},
        height=360, legend={"title": {"text": "target"}},
        margin={"l": 70, "r": 20, "t": 50, "b": 50},
    )
    return fig


def rank_ticks(highest: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, … up to the first tick at or above `highest`."""
    ticks, decade = [], 1
    while not ticks or ticks[-1] < highest:
        ticks.extend(m * decade for m in (1, 2, 5))
        decade *= 10
    return [t for i, t in enumerate(ticks) if i == 0 or ticks[i - 1] < highest]


def _clip(token: str) -> str:
    return token if len(token) <= MAX_CELL_TEXT else token[: MAX_CELL_TEXT - 1] + "…"


# --------------------------------------------------------------------------- shared pieces

DIVERGING = "RdBu"  # red below 0, white at 0, blue above: "toward the clean run" is blue
MAX_VALUE_TEXT = 16  # columns up to which a small grid writes its values in the cells
MAX_FIGURE_PX = 1400  # tall grids shrink their rows (down to MIN_ROW_PX) to stay near this


def position_labels(n: int, clean: list[str] | None = None,
                    corrupted: list[str] | None = None) -> list[str]:
    """Tick text for positions 0..n-1: the clean token (␣ for its spaces), `clean→corrupted`
    where a patching pair differs, or the bare position where no tokens are known."""
    labels = []
    for p in range(n):
        a = clean[p] if clean is not None and p < len(clean) else None
        b = corrupted[p] if corrupted is not None and p < len(corrupted) else None
        if a is None:
            labels.append(str(p))
        elif b is None or a == b:
            labels.append(plot_text(a, visible_spaces=True))
        else:
            labels.append(f"{plot_text(a, visible_spaces=True)}→{plot_text(b, visible_spaces=True)}")
    return labels


def head_label(layer: int, head: int) -> str:
    return f"L{int(layer)} H{int(head)}"


def neuron_label(layer: int, neuron: int) -> str:
    return f"L{int(layer)} N{int(neuron)}"


def symmetric_limit(*arrays) -> float:
    """The largest |value| over `arrays` (NaN ignored), for a colour scale centred on 0;
    1.0 when there is none."""
    finite = [np.abs(a[np.isfinite(a)]) for a in (np.asarray(x, dtype=float) for x in arrays)]
    top = max((float(a.max()) for a in finite if a.size), default=0.0)
    return top if top > 0 else 1.0


MIN_ROW_PX = 8
MIN_PLOT_PX = 160  # a grid of a few rows still gets room for its colour bar


def layer_head_axes(x_ticks: list[str], y_ticks: list[str]) -> dict:
    """Layout of a layer (rows) × head (columns) grid: labelled ticks, height to fit."""
    def axis(title: str, ticks: list[str]) -> dict:
        return {"title": {"text": title}, "tickmode": "array", "tickvals": list(range(len(ticks))),
                "ticktext": ticks}
    return dict(xaxis=axis("head", x_ticks), yaxis=axis("layer", y_ticks),
                height=grid_height(len(y_ticks)), margin={"l": 70, "r": 20, "t": 50, "b": 50})


def grid_height(n_rows: int, extra: int = 140) -> int:
    """Figure height for a grid of `n_rows` plus `extra` pixels of title and axes:
    `CELL_PX` rows, thinner when there are many, at least `MIN_PLOT_PX` in all."""
    row = max(MIN_ROW_PX, min(CELL_PX, (MAX_FIGURE_PX - extra) // max(n_rows, 1)))
    return extra + max(MIN_PLOT_PX, row * n_rows)


def _title(text: str, note: str | None = None) -> dict:
    """A title with an optional smaller second line (both already escaped)."""
    return {"text": text + (f"<br><sup>{note}</sup>" if note else "")}


def _grid(frame: pd.DataFrame, index: list[str], columns: str, values: str) -> pd.DataFrame:
    """A tidy table as a [row, column] grid: rows `index` sorted, columns sorted."""
    return frame.pivot(index=index, columns=columns, values=values).sort_index().sort_index(axis=1)


def _row_labels(index: pd.Index) -> list[str]:
    if isinstance(index, pd.MultiIndex):  # (layer, head)
        return [head_label(layer, head) for layer, head in index]
    return [str(int(layer)) for layer in index]


def _cells(z: np.ndarray, hover) -> list[list[str]]:
    """[row][column] hover strings from hover(i, j, value)."""
    return [[hover(i, j, z[i, j]) for j in range(z.shape[1])] for i in range(z.shape[0])]


# --------------------------------------------------------------------------- activation patching

def patching_heatmap(effects: pd.DataFrame, granularity: str, clean_tokens: list[str] | None = None,
                     corrupted_tokens: list[str] | None = None,
                     baselines: tuple[float, float] | None = None) -> go.Figure:
    """One granularity of the activation patching `effects` table as a heatmap of `value`
    (1 = the clean run's logit difference restored, 0 = the corrupted run's).

    Layout by what a cell indexes: layer × position (residual, attn_out, mlp_out), layer ×
    head (head_* over all positions), or (layer, head) × position (head_*_by_pos). Positions
    are labelled by the input tokens (`clean→corrupted` where they differ) when given.
    `baselines`: (clean, corrupted) logit differences, shown under the title.
    """
    rows = effects[effects["granularity"] == granularity]
    by_position = bool((rows["position"] >= 0).any())
    per_head = bool((rows["head"] >= 0).any())
    index = ["layer", "head"] if by_position and per_head else ["layer"]
    columns = "position" if by_position else "head"
    value = _grid(rows, index, columns, "value")
    raw = _grid(rows, index, columns, "raw").reindex(index=value.index, columns=value.columns)
    z, r = value.to_numpy(dtype=float), raw.to_numpy(dtype=float)
    y_ticks = _row_labels(value.index)
    if by_position:
        n_tokens = int(value.columns.max()) + 1 if len(value.columns) else 0
        names = position_labels(n_tokens, clean_tokens, corrupted_tokens)
        x_ticks = [names[int(p)] for p in value.columns]
        x_desc = [f"position {int(p)} ({names[int(p)]})" for p in value.columns]
    else:
        x_ticks = [f"H{int(h)}" for h in value.columns]
        x_desc = [f"head {int(h)}" for h in value.columns]
    row_desc = [head_label(*key) if per_head and by_position else f"layer {int(key)}"
                for key in value.index]
    hover = _cells(z, lambda i, j, v: f"{row_desc[i]} · {x_desc[j]}<br>restored {v:.3f} of the gap"
                                      f"<br>logit difference {r[i, j]:.3f}")
    limit = symmetric_limit(z)
    small = not by_position and len(x_ticks) <= MAX_VALUE_TEXT
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(x_ticks))), y=list(range(len(y_ticks))), customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale=DIVERGING, zmid=0.0,
        zmin=-limit, zmax=limit, colorbar={"title": {"text": "restored"}}, xgap=1, ygap=1,
        texttemplate="%{z:.2f}" if small else "", textfont={"size": 10},
    ))
    note = None
    if baselines is not None:
        clean, corrupted = baselines
        note = (f"logit difference: clean {clean:.3f}, corrupted {corrupted:.3f} "
                "· 1 = clean run, 0 = corrupted run")
    fig.update_layout(
        title=_title(f"Activation patching, {plot_text(granularity)}: share of the logit "
                     "difference restored by each patch", note),
        xaxis={"title": {"text": "input token (position)" if by_position else "head"},
               "tickmode": "array", "tickvals": list(range(len(x_ticks))), "ticktext": x_ticks,
               "tickangle": -45 if by_position else 0},
        yaxis={"title": {"text": "layer, head" if len(index) == 2 else "layer"},
               "tickmode": "array", "tickvals": list(range(len(y_ticks))), "ticktext": y_ticks},
        height=grid_height(len(y_ticks), extra=170), margin={"l": 80, "r": 20, "t": 80, "b": 90},
    )
    return fig


def path_heatmap(effects: pd.DataFrame, receiver_input: str,
                 baselines: tuple[float, float] | None = None) -> go.Figure:
    """The `direct_path` rows of `effects` for one receiver input (q, k or v) as a sender head
    × receiver head heatmap of `value` (share of the logit difference restored by that path)."""
    rows = effects[(effects["granularity"] == "direct_path")
                   & (effects["receiver_input"] == receiver_input)]
    frame = rows
    value = frame.pivot_table(index=["sender_layer", "sender_head"], columns=["layer", "head"],
                              values="value", aggfunc="first")
    raw = frame.pivot_table(index=["sender_layer", "sender_head"], columns=["layer", "head"],
                            values="raw", aggfunc="first").reindex_like(value)
    z, r = value.to_numpy(dtype=float), raw.to_numpy(dtype=float)
    y_ticks = [head_label(l, h) for l, h in value.index]
    x_ticks = [head_label(l, h) for l, h in value.columns]
    hover = _cells(z, lambda i, j, v: f"{y_ticks[i]} → {x_ticks[j]} {receiver_input}<br>"
                                      f"restored {v:.3f} of the gap<br>logit difference {r[i, j]:.3f}")
    limit = symmetric_limit(z)
    note = None
    if baselines is not None:
        note = (f"logit difference: clean {baselines[0]:.3f}, corrupted {baselines[1]:.3f} "
                "· blank: no such path (the receiver must lie in a later layer)")
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(x_ticks))), y=list(range(len(y_ticks))), customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale=DIVERGING, zmid=0.0,
        zmin=-limit, zmax=limit, colorbar={"title": {"text": "restored"}}, xgap=1, ygap=1,
    ))
    fig.update_layout(
        title=_title(f"Direct paths into the receivers' {receiver_input} input: share of the "
                     "logit difference restored by each sender → receiver path", note),
        xaxis={"title": {"text": f"receiver head ({receiver_input} input)"}, "tickmode": "array",
               "tickvals": list(range(len(x_ticks))), "ticktext": x_ticks, "tickangle": -45},
        yaxis={"title": {"text": "sender head"}, "tickmode": "array",
               "tickvals": list(range(len(y_ticks))), "ticktext": y_ticks},
        height=grid_height(len(y_ticks), extra=190), margin={"l": 80, "r": 20, "t": 80, "b": 100},
    )
    return fig


# --------------------------------------------------------------------------- attribution patching

NODE_TITLES = {  # node kind -> what one node of it is
    "resid": "residual stream entering each layer",
    "head": "head outputs",
    "mlp": "MLP outputs",
    "q": "queries",
    "k": "keys",
    "v": "values",
}


def atp_heatmap(attributions: pd.DataFrame, node: str, clean_tokens: list[str] | None = None,
                corrupted_tokens: list[str] | None = None, magnitude: bool = False) -> go.Figure:
    """The AtP estimates of one node kind as a (layer[, head]) × position heatmap, with the
    exact patching effects beside it on the same colour scale when `exact` is filled.

    `attributions`: the attribution patching table. Both panels are changes of the raw
    logit difference from the corrupted run. With `magnitude` (GradDrop: `atp` >= 0) the
    exact panel shows |exact|, which is what AtP* estimates then. A `resid` node past the
    last block's layer is the final residual stream, labelled `final`.
    """
    rows = attributions[attributions["node"] == node]
    per_head = bool((rows["head"] >= 0).any())
    index = ["layer", "head"] if per_head else ["layer"]
    atp = _grid(rows, index, "position", "atp")
    exact = _grid(rows, index, "position", "exact").reindex(index=atp.index, columns=atp.columns)
    a, e = atp.to_numpy(dtype=float), exact.to_numpy(dtype=float)
    if magnitude:
        e = np.abs(e)
    has_exact = bool(np.isfinite(e).any())
    y_ticks = _row_labels(atp.index)
    if not per_head:
        last_block = attributions.loc[attributions["node"] != "resid", "layer"].max()
        if pd.notna(last_block):
            y_ticks = ["final" if int(layer) > last_block else tick
                       for layer, tick in zip(atp.index, y_ticks)]
    n_tokens = int(atp.columns.max()) + 1 if len(atp.columns) else 0
    names = position_labels(n_tokens, clean_tokens, corrupted_tokens)
    x_ticks = [names[int(p)] for p in atp.columns]
    exact_name = "|exact|" if magnitude else "exact"

    def hover(i, j, _):
        values = f"AtP {a[i, j]:.4g}" + (f"<br>{exact_name} {e[i, j]:.4g}" if has_exact else "")
        return f"{y_ticks[i]} · position {int(atp.columns[j])} ({x_ticks[j]})<br>{values}"

    cells = _cells(a, hover)
    limit = symmetric_limit(a, e if has_exact else [])
    panels = [("AtP estimate", a)] + ([(f"{exact_name} patching", e)] if has_exact else [])
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[name for name, _ in panels])
    for col, (_, z) in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(
            z=z, x=list(range(len(x_ticks))), y=list(range(len(y_ticks))), customdata=cells,
            hovertemplate="%{customdata}<extra></extra>", coloraxis="coloraxis", xgap=1, ygap=1,
        ), row=1, col=col)
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(x_ticks))), ticktext=x_ticks,
                         tickangle=-45, title={"text": "input token (position)"}, row=1, col=col)
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(y_ticks))), ticktext=y_ticks,
                     title={"text": "layer, head" if per_head else "layer"}, row=1, col=1)
    scale = ({"colorscale": "Blues", "cmin": 0.0, "cmax": limit} if magnitude else
             {"colorscale": DIVERGING, "cmid": 0.0, "cmin": -limit, "cmax": limit})
    fig.update_layout(
        title=_title(f"{plot_text(node)}: {NODE_TITLES.get(node, 'nodes')}",
                     "change of the logit difference from the corrupted run when the node is "
                     "patched to its clean value"),
        coloraxis={**scale, "colorbar": {"title": {"text": "Δ logit diff"}}},
        height=grid_height(len(y_ticks), extra=200), margin={"l": 80, "r": 20, "t": 100, "b": 90},
    )
    return fig


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
        title=_title("AtP estimate against exact patching, one point per node",
                     f"all nodes: {_stats_text(stats['all'])}" if "all" in stats else None),
        xaxis={"title": {"text": f"{x_name} patching effect (Δ logit diff)"}},
        yaxis={"title": {"text": "AtP estimate (Δ logit diff)"}},
        height=520, legend={"title": {"text": "node kind"}},
        margin={"l": 70, "r": 20, "t": 80, "b": 60},
    )
    return fig


def _node_where(layer, head, position, tokens: list[str] | None) -> str:
    parts = [f"L{int(layer)}"] + ([f"H{int(head)}"] if head >= 0 else [])
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
        return f"On this input AtP matched exact patching for every node kind ({rule})."
    if good.empty:
        return (f"On this input AtP matched exact patching for no node kind ({rule}): read its "
                "heatmaps as rough candidates only.")
    return (f"On this input AtP matched exact patching ({rule}) for {', '.join(good['node'])}; "
            f"not for {', '.join(poor['node'])}: trust the exact panels there.")


# --------------------------------------------------------------------------- heads

def head_score_heatmap(scores: pd.DataFrame, detector: str) -> go.Figure:
    """Layer × head heatmap of one detector's scores (the heads `scores` table), 0 to 1."""
    rows = scores[scores["detector"] == detector]
    grid = _grid(rows, ["layer"], "head", "score")
    z = grid.to_numpy(dtype=float)
    y_ticks = [str(int(layer)) for layer in grid.index]
    x_ticks = [str(int(h)) for h in grid.columns]
    hover = _cells(z, lambda i, j, v: f"layer {y_ticks[i]}, head {x_ticks[j]}<br>score {v:.3f}")
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(x_ticks))), y=list(range(len(y_ticks))), customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale="Blues", zmin=0.0, zmax=1.0,
        colorbar={"title": {"text": "score"}}, xgap=1, ygap=1, textfont={"size": 10},
        texttemplate="%{z:.2f}" if len(x_ticks) <= MAX_VALUE_TEXT else "",
    ))
    fig.update_layout(
        title={"text": f"{plot_text(detector)} score of every head"},
        **layer_head_axes(x_ticks, y_ticks),
    )
    return fig


def head_profile_chart(scores: pd.DataFrame, layer: int, head: int) -> go.Figure:
    """One head's score under every detector in the `scores` table, as bars."""
    rows = scores[(scores["layer"] == layer) & (scores["head"] == head)]
    names = [plot_text(str(d)) for d in rows["detector"]]
    fig = go.Figure(go.Bar(
        x=names, y=rows["score"], marker={"color": "#4C78A8"}, text=[f"{v:.3f}" for v in rows["score"]],
        textposition="outside", hovertemplate="%{x}: %{y:.3f}<extra></extra>",
    ))
    fig.update_layout(
        title={"text": f"Head {head_label(layer, head)} under each detector"},
        xaxis={"title": {"text": "detector"}}, yaxis={"title": {"text": "score"}, "range": [0, 1.08]},
        height=320, margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig


def head_ablation_chart(ablation: pd.DataFrame) -> go.Figure:
    """The heads `ablation` table: per detector, how much mean-ablating its top heads hurts
    its behaviour, beside as many random heads (drop > 0: the behaviour got worse)."""
    fig = go.Figure()
    detectors = list(dict.fromkeys(ablation["detector"]))
    metric = dict(zip(ablation["detector"], ablation["metric"]))
    x_ticks = [f"{plot_text(str(d))}<br>({plot_text(str(metric[d]))})" for d in detectors]
    for label, color in (("top", "#4C78A8"), ("random", "#BAB0AC")):
        rows = ablation[ablation["ablated"] == label].set_index("detector").reindex(detectors)
        fig.add_trace(go.Bar(
            x=x_ticks, y=rows["drop"], name=f"{label} heads", marker={"color": color},
            customdata=list(zip(rows["heads"].fillna("").astype(str).map(plot_text),
                                rows["baseline"], rows["after"])),
            hovertemplate="heads %{customdata[0]}<br>baseline %{customdata[1]:.4g}"
                          "<br>ablated %{customdata[2]:.4g}<br>drop %{y:.4g}<extra></extra>",
        ))
    fig.update_layout(
        title=_title("Mean-ablating each detector's top heads, against as many random heads",
                     "drop > 0: the detector's behaviour got worse"),
        barmode="group", yaxis={"title": {"text": "drop of the behaviour's metric"}},
        height=380, margin={"l": 70, "r": 20, "t": 80, "b": 70},
    )
    return fig


# --------------------------------------------------------------------------- neurons

def neuron_promoters_chart(promoters: pd.DataFrame, token_id: int) -> go.Figure:
    """The neurons whose output most promotes one target token (the neurons `promoters`
    table), strongest at the top."""
    rows = promoters[promoters["token_id"] == token_id].sort_values("rank")
    token = plot_text(str(rows["token_str"].iloc[0]), visible_spaces=True) if len(rows) else "?"
    labels = [neuron_label(layer, n) for layer, n in rows[["layer", "neuron"]].itertuples(index=False)]
    fig = go.Figure(go.Bar(
        x=rows["score"], y=labels, orientation="h", marker={"color": "#4C78A8"},
        customdata=rows["rank"], hovertemplate="%{y} (rank %{customdata})<br>score %{x:.4g}"
                                               "<extra></extra>",
    ))
    fig.update_layout(
        title=_title(f"Neurons that most promote {token}",
                     "direct effect of the neuron's output row on the token's logit, per unit "
                     "of activation"),
        xaxis={"title": {"text": "score"}}, yaxis={"autorange": "reversed", "type": "category"},
        height=max(260, 130 + 24 * len(labels)), margin={"l": 90, "r": 20, "t": 80, "b": 50},
    )
    return fig


def neuron_tokens_chart(atlas: pd.DataFrame, layer: int, neuron: int) -> go.Figure:
    """One neuron's top promoted and top suppressed tokens (its rows of the `atlas`)."""
    rows = atlas[(atlas["layer"] == layer) & (atlas["neuron"] == neuron)]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=["promotes", "suppresses"])
    for col, (direction, color) in enumerate((("promote", "#4C78A8"), ("suppress", "#E45756")), 1):
        part = rows[rows["direction"] == direction].sort_values("rank")
        labels = [f"{r}. {plot_text(str(t), visible_spaces=True)}"
                  for r, t in part[["rank", "token_str"]].itertuples(index=False)]
        fig.add_trace(go.Bar(x=part["score"], y=labels, orientation="h", marker={"color": color},
                             name=direction, showlegend=False,
                             hovertemplate="%{y}<br>score %{x:.4g}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", type="category", row=1, col=col)
    k = int(rows["rank"].max()) if len(rows) else 0
    fig.update_layout(
        title=_title(f"Neuron {neuron_label(layer, neuron)}: the tokens it writes toward",
                     "its output row read through the unembedding (the direct path only)"),
        height=max(260, 130 + 24 * k), margin={"l": 110, "r": 20, "t": 90, "b": 40},
    )
    return fig


def neuron_activations_chart(activations: pd.DataFrame) -> go.Figure:
    """The neurons `activations` table on its prompt: one neuron as bars over the input
    tokens, several as a (layer, neuron) × position heatmap in the table's order
    (strongest first within each layer)."""
    inputs = activations.drop_duplicates("position").sort_values("position")
    x_ticks = [plot_text(str(t), visible_spaces=True) for t in inputs["token"]]
    keys = list(dict.fromkeys(zip(activations["layer"], activations["neuron"])))
    if len(keys) == 1:
        rows = activations.sort_values("position")
        fig = go.Figure(go.Bar(
            x=list(range(len(rows))), y=rows["activation"], marker={"color": "#4C78A8"},
            customdata=x_ticks, hovertemplate="position %{x} (%{customdata})<br>activation "
                                              "%{y:.4g}<extra></extra>"))
        fig.update_layout(title={"text": f"Neuron {neuron_label(*keys[0])} on the prompt"},
                          yaxis={"title": {"text": "activation"}}, height=340)
    else:
        grid = activations.pivot(index=["layer", "neuron"], columns="position", values="activation")
        grid = grid.reindex(index=pd.MultiIndex.from_tuples(keys, names=["layer", "neuron"]))
        z = grid.to_numpy(dtype=float)
        y_ticks = [neuron_label(layer, n) for layer, n in keys]
        hover = _cells(z, lambda i, j, v: f"{y_ticks[i]} · position {j} ({x_ticks[j]})"
                                          f"<br>activation {v:.4g}")
        limit = symmetric_limit(z)
        fig = go.Figure(go.Heatmap(
            z=z, x=list(range(len(x_ticks))), y=list(range(len(y_ticks))), customdata=hover,
            hovertemplate="%{customdata}<extra></extra>", colorscale=DIVERGING, zmid=0.0,
            zmin=-limit, zmax=limit, colorbar={"title": {"text": "activation"}}, xgap=1, ygap=1))
        fig.update_layout(
            title={"text": "The most active neurons of each layer on the prompt"},
            yaxis={"title": {"text": "layer, neuron"}, "tickmode": "array",
                   "tickvals": list(range(len(y_ticks))), "ticktext": y_ticks, "autorange": "reversed"},
            height=grid_height(len(y_ticks)))
    fig.update_layout(
        xaxis={"title": {"text": "input token (position)"}, "tickmode": "array",
               "tickvals": list(range(len(x_ticks))), "ticktext": x_ticks, "tickangle": -45},
        margin={"l": 90, "r": 20, "t": 50, "b": 90},
    )
    return fig


# --------------------------------------------------------------------------- direct logit attribution

DLA_TOTAL = ("embed", "pos_embed", "attn", "mlp", "bias")  # the rows that sum to the logit difference
DLA_COLORS = {"attn": "#4C78A8", "mlp": "#F58518"}  # others grey


def dla_components_chart(contributions: pd.DataFrame, metric: str = "the logit difference",
                         logit_diff: float | None = None,
                         components: tuple[str, ...] = DLA_TOTAL) -> go.Figure:
    """Bars of the components that sum to the logit difference, in the order the residual
    stream adds them: embeddings, then each layer's attention and MLP, then the biases.

    `contributions`: the dla table; `metric`: what the values split (plain text, escaped
    here: "logit(' Mary') − logit(' John')"); `logit_diff`: the model's own value, shown
    beside the bars' sum."""
    rows = contributions[contributions["component"].isin(components)].copy()
    order = {"embed": -2, "pos_embed": -1}
    rows["_order"] = [order.get(c, 10**9 if c == "bias" else 2 * int(layer) + (c == "mlp"))
                      for c, layer in rows[["component", "layer"]].itertuples(index=False)]
    rows = rows.sort_values("_order", kind="stable")
    labels = [plot_text(str(c)) if layer < 0 else f"L{int(layer)} {plot_text(str(c))}"
              for c, layer in rows[["component", "layer"]].itertuples(index=False)]
    colors = [DLA_COLORS.get(c, "#9D9D9D") for c in rows["component"]]
    fig = go.Figure(go.Bar(x=labels, y=rows["value"], marker={"color": colors},
                           hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    note = f"the bars sum to {rows['value'].sum():.4g}"
    if logit_diff is not None:
        note += f"; the model's own value is {logit_diff:.4g}"
    fig.update_layout(
        title=_title(f"Direct contribution of each component to {plot_text(metric)}", note),
        xaxis={"title": {"text": "component"}, "type": "category", "tickangle": -45},
        yaxis={"title": {"text": "contribution"}}, height=420,
        margin={"l": 70, "r": 20, "t": 80, "b": 90},
    )
    return fig


def dla_head_heatmap(contributions: pd.DataFrame, metric: str = "the logit difference") -> go.Figure:
    """Layer × head heatmap of each head's direct contribution (the dla `head` rows)."""
    rows = contributions[contributions["component"] == "head"]
    grid = _grid(rows, ["layer"], "head", "value")
    z = grid.to_numpy(dtype=float)
    y_ticks = [str(int(layer)) for layer in grid.index]
    x_ticks = [str(int(h)) for h in grid.columns]
    hover = _cells(z, lambda i, j, v: f"layer {y_ticks[i]}, head {x_ticks[j]}<br>{v:.4g}")
    limit = symmetric_limit(z)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(x_ticks))), y=list(range(len(y_ticks))), customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale=DIVERGING, zmid=0.0,
        zmin=-limit, zmax=limit, colorbar={"title": {"text": "contribution"}}, xgap=1, ygap=1,
        texttemplate="%{z:.2f}" if len(x_ticks) <= MAX_VALUE_TEXT else "", textfont={"size": 10},
    ))
    fig.update_layout(
        title={"text": f"Each head's direct contribution to {plot_text(metric)}"},
        **layer_head_axes(x_ticks, y_ticks),
    )
    return fig
