"""Steering and ablation figures: each cell's continuation beside the intact model's, the
layer × coefficient grids of the effect and of the KL, the vector's top tokens, and over a
prompt set the means with their 95% intervals.

`highlighted_html` is the page's side-by-side text (headless too: tests read it).
"""
from __future__ import annotations

import html
import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures.layout import MAX_VALUE_TEXT, axis, cells, grid_height, heatmap, title
from analyses.figures.text import VISIBLE_SPACE, display_token, plot_text

DIFFERS, SAME = "#F58518", "#E8EDF3"  # a token the intact model did not write / one it did
MAX_STRIP_TOKENS = 64  # generated tokens the strip shows (the table has them all)
MAX_WRITTEN_TOKENS = 20  # up to this many columns each token is written in its cell (more: hover)
# The strip's plot area in the app's wide layout at a 1400 px window with the sidebar open
# (the figure ~950 px, less the row labels); a word is shortened to fit its cell there.
STRIP_PLOT_PX = 760
STRIP_FONT = 10  # px
CHAR_EM = 0.58  # a character's width in font sizes (measured: "␣Germany" at 11 px draws ~52 px)
CELL_PAD_PX = 3  # room left between a word and its cell's edges


def figures(result, layer: int | None = None) -> dict[str, go.Figure]:
    effects, generations = result.tables["effects"], result.tables["generations"]
    shown = {"generations": generation_strip(generations, result.meta.get("samples", 1))}
    steered = effects[effects["coeff"] != 0]
    feature = result.meta.get("feature")  # method=feature: the vector is a latent's decoder row at its site
    where = f"the vector: {feature}" if feature else RESID_NOTE
    ablated = bool(effects["ablated"].any())
    if len(steered) or ablated and effects["layer"].notna().any():
        if effects["metric"].notna().any():
            shown["metric"] = cell_grid(effects, "metric", result.meta.get("metric") or "metric",
                                        signed=True, unit="logits" if result.spec.wrong else "nats", where=where)
        shown["kl"] = cell_grid(effects, "kl", "KL(intact ‖ intervened) on a neutral text",
                                signed=False, unit="nats", where=where)
    elif ablated and effects["metric"].notna().any():
        shown["knockout"] = knockout_bars(effects, result.meta.get("metric") or "metric")
    vector = result.tables.get("vector")
    if vector is not None and len(vector):
        layers = sorted(int(v) for v in vector["layer"].unique())
        shown["vector"] = vector_tokens_chart(vector, layer if layer in layers else layers[0],
                                              result.meta.get("resid_norms", {}), feature)
    return shown


def cell_label(layer, coeff: float, ablated: bool, p_target: float | None = None) -> str:
    """`intact`, `L2 × 1`, `L2 × 0.5, ablated`, `ablated`, `L2 GCAV p→0.9`: what a cell changes."""
    if p_target is not None and not pd.isna(p_target):
        parts = [f"L{int(layer)} GCAV p→{p_target:g}"]
    else:
        parts = [] if not coeff else [f"L{int(layer)} × {coeff:g}"]
    if ablated:
        parts.append("ablated")
    return ", ".join(parts) or "intact"


def distinct_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per intervention: the coefficient-0 rows of every layer change the same
    thing (nothing, or the ablation alone), so they are one cell, the first kept."""
    key = frame["layer"].astype("Float64").where(frame["coeff"] != 0)
    same = ["_key", "coeff", "ablated", *(["p_target"] if "p_target" in frame.columns else [])]
    return frame.assign(_key=key.fillna(-1)).drop_duplicates(same).drop(columns="_key")


def _tokens(row) -> list[str]:
    return json.loads(row["tokens"])


def generation_strip(generations: pd.DataFrame, samples: int = 1) -> go.Figure:
    """One row per cell (sample 0), one column per generated token, each token written in
    its cell: orange where it differs from the intact model's token at that place."""
    rows = generations[generations["sample"] == 0]
    if "example" in rows.columns:  # a prompt set: its first example
        rows = rows[rows["example"] == rows["example"].min()]
    rows = distinct_cells(rows)
    intact = rows[(rows["coeff"] == 0) & ~rows["ablated"]]
    reference = _tokens(intact.iloc[0]) if len(intact) else []
    labels, texts, differs, hover = [], [], [], []
    width = min(MAX_STRIP_TOKENS, max((len(_tokens(r)) for _, r in rows.iterrows()), default=0))
    cell_px = STRIP_PLOT_PX / max(width, 1) - CELL_PAD_PX
    for _, row in rows.iterrows():
        tokens, logprobs = _tokens(row)[:width], json.loads(row["logprobs"])[:width]
        label = cell_label(row["layer"], row["coeff"], row["ablated"], row.get("p_target"))
        labels.append(label)
        pad = width - len(tokens)
        texts.append([fit_to_cell(t, cell_px) for t in tokens] + [""] * pad)
        differs.append([float(i >= len(reference) or t != reference[i]) for i, t in enumerate(tokens)]
                       + [np.nan] * pad)
        hover.append([f"{plot_text(label)}, token {i + 1}: {plot_text(t, visible_spaces=True)}"
                      f"<br>log p = {lp:.3f}" for i, (t, lp) in enumerate(zip(tokens, logprobs))]
                     + [""] * pad)
    z = np.array(differs, dtype=float).reshape(len(labels), width)
    written = width <= MAX_WRITTEN_TOKENS
    # no colour bar: two colours, named in the note, and the cells get its width
    trace = go.Heatmap(z=z, x=list(range(width)), y=list(range(len(labels))), text=texts,
                       texttemplate="%{text}" if written else "", textfont={"size": STRIP_FONT},
                       customdata=hover, hovertemplate="%{customdata}<extra></extra>", xgap=1, ygap=1,
                       zmin=0, zmax=1, colorscale=[[0, SAME], [0.5, SAME], [0.5, DIFFERS], [1, DIFFERS]],
                       showscale=False)
    note = "orange: a token the intact model did not write at that place; grey: the same token"
    if not written:
        note += "; hover a cell for its token"
    elif any(cell.endswith("…") for row in texts for cell in row):
        note += "; long words shortened to fit (…): hover a cell for the whole"
    if samples > 1:
        note += f"; sample 1 of {samples} per cell (all in the generations table)"
    fig = go.Figure(trace)
    fig.update_layout(
        title=title("Each cell's continuation, token by token", note),
        xaxis=axis("generated token", [str(i + 1) for i in range(width)]),
        yaxis=axis("intervention", [plot_text(label) for label in labels], autorange="reversed"),
        height=grid_height(len(labels), extra=170), margin={"l": 150, "r": 20, "t": 80, "b": 50})
    return fig


def text_px(text: str, size: float = STRIP_FONT) -> float:
    """About how wide `text` (as plotly gets it, HTML-escaped) draws at `size` px."""
    return len(html.unescape(text)) * CHAR_EM * size


def fit_to_cell(token: str, cell_px: float, size: float = STRIP_FONT) -> str:
    """`token` as the strip writes it (escaped, spaces as ␣), cut with … to fit `cell_px`.
    Cut before escaping, so an entity like `&lt;` is never split."""
    shown = display_token(token).replace(" ", VISIBLE_SPACE)
    fits = max(1, int(cell_px // (CHAR_EM * size)))
    if len(shown) > fits:
        shown = shown[:max(1, fits - 1)] + "…"
    return html.escape(shown, quote=False)


RESID_NOTE = "layer L: the residual stream entering block L"


def cell_grid(effects: pd.DataFrame, value: str, name: str, signed: bool, unit: str,
              where: str = RESID_NOTE) -> go.Figure:
    """Layer (rows) × coefficient (columns) of `value`; with an ablation, the ablated cells
    (coefficient 0 there: the ablation alone)."""
    ablated = bool(effects["ablated"].any())
    part = effects[effects["ablated"] == ablated]
    table = part.pivot_table(index="layer", columns="coeff", values=value, aggfunc="first").sort_index()
    z = table.to_numpy(dtype=float)
    rows = [f"L{int(layer)}" for layer in table.index]
    columns = [f"{c:g}" for c in table.columns]
    hover = cells(z, lambda i, j, v: f"layer {rows[i]}, coefficient {columns[j]}<br>{plot_text(name)}: "
                                     f"{v:.4g} {unit}")
    fig = go.Figure(heatmap(z, hover, signed=signed, colorbar=unit,
                            limit=None if signed else float(np.nanmax(z)) or 1.0,
                            values_in_cells=len(columns) <= MAX_VALUE_TEXT))
    note = ("every cell ablated as well; coefficient 0: the ablation alone" if ablated else
            "coefficient 0: the model itself") + f"; {where}"
    if "p_target" in effects.columns and effects["p_target"].notna().any():  # no fixed coefficient
        note += "; GCAV cells (a strength per position) are in the table below"
    fig.update_layout(title=title(f"{plot_text(name)}, by layer and coefficient", note),
                      xaxis=axis("coefficient (× the steering vector)", columns),
                      yaxis=axis("layer", rows),
                      height=grid_height(len(rows), extra=170), margin={"l": 90, "r": 20, "t": 80, "b": 60})
    return fig


def knockout_bars(effects: pd.DataFrame, name: str) -> go.Figure:
    effects = distinct_cells(effects)
    labels = [cell_label(r.layer, r.coeff, r.ablated, getattr(r, "p_target", None)) for r in effects.itertuples()]
    fig = go.Figure(go.Bar(x=labels, y=effects["metric"], marker={"color": ["#9D9D9D", DIFFERS][:len(labels)]},
                           hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    fig.update_layout(title=title(f"{plot_text(name)} at the prompt's last position, intact and ablated"),
                      xaxis={"title": {"text": "model"}, "type": "category"},
                      yaxis={"title": {"text": plot_text(name)}, "zeroline": True}, height=380)
    return fig


def vector_tokens_chart(vector: pd.DataFrame, layer: int, resid_norms: dict, feature: str | None = None) -> go.Figure:
    """The tokens the layer's vector most promotes and suppresses, read through the unembedding
    (`feature`: the vector is that latent's decoder row, read as what it writes to the residual)."""
    part = vector[vector["layer"] == layer]
    promotes = part[part["direction"] == "promotes"].sort_values("score")
    suppresses = part[part["direction"] == "suppresses"].sort_values("score", ascending=False)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=("promotes", "suppresses"))
    for col, rows, colour in ((1, promotes, "#4C78A8"), (2, suppresses, "#E45756")):
        labels = [plot_text(t, visible_spaces=True) for t in rows["token_str"]]
        fig.add_trace(go.Bar(x=rows["score"], y=list(range(len(rows))), orientation="h",
                             marker={"color": colour}, showlegend=False, customdata=labels,
                             hovertemplate="%{customdata}: %{x:.4g}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(tickmode="array", tickvals=list(range(len(rows))), ticktext=labels,
                         title={"text": "token"}, row=1, col=col)
        fig.update_xaxes(title={"text": "vector · W_U (logits per unit coefficient)"}, row=1, col=col)
    norm = float(part["norm"].iloc[0]) if len(part) else float("nan")
    typical = resid_norms.get(str(layer))
    there = "the site's typical output (in the residual's space)" if feature else "a typical residual there"
    note = f"norm {norm:.3g}" + (f"; {there} has norm {typical:.3g}" if typical else "")
    subject = (f"{plot_text(feature.split(' (')[0])}: its decoder direction" if feature
               else f"The layer-{layer} steering vector")
    fig.update_layout(title=title(f"{subject} read through the unembedding", note),
                      height=max(360, 28 * len(promotes) + 160), margin={"l": 110, "r": 20, "t": 90, "b": 60})
    return fig


def set_figures(result) -> dict[str, go.Figure]:
    """Over a prompt set: each cell's mean effect and top-1 accuracy with 95% intervals."""
    summary = result.tables.get("effects_summary")
    if summary is None or not len(summary):
        return {}
    examples = result.tables.get("examples")
    with_wrong = examples is not None and "wrong" in examples.columns and examples["wrong"].notna().all()
    metric = "logit(answer) − logit(wrong)" if with_wrong else "log p(answer)"
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(metric, "top-1 accuracy"))
    # the accuracy's interval is Wilson's (`analyses/core/summary.py`): inside [0, 1]
    for col, quantity, colour, interval in ((1, "metric", "#4C78A8", "95% CI"),
                                            (2, "top1", "#F58518", "Wilson 95% CI")):
        rows = summary[summary["quantity"] == quantity]
        labels = [cell_label(r.layer, r.coeff, r.ablated, getattr(r, "p_target", None)) for r in rows.itertuples()]
        fig.add_trace(go.Bar(
            x=labels, y=rows["mean"], marker={"color": colour}, showlegend=False,
            error_y={"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["mean"],
                     "arrayminus": rows["mean"] - rows["ci_low"]},
            customdata=np.stack([rows["ci_low"], rows["ci_high"], rows["n"]], axis=-1),
            hovertemplate="%{x}: %{y:.4g} (" + interval + " %{customdata[0]:.4g} to %{customdata[1]:.4g}, "
                          "n = %{customdata[2]})<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title={"text": "intervention"}, type="category", row=1, col=col)
    fig.update_yaxes(title={"text": "mean over the examples (" + ("logits" if with_wrong else "nats") + ")"},
                     row=1, col=1)
    fig.update_yaxes(title={"text": "share of examples"}, range=[0, 1.05], row=1, col=2)
    n = result.meta.get("n_examples")
    fig.update_layout(title=title("Before and after, over the prompt set",
                                  f"means over {n} examples; bars: 95% intervals, Student's t for the mean, "
                                  "Wilson's for the accuracy"), height=460,
                      margin={"l": 70, "r": 20, "t": 90, "b": 90})
    return {"effects_summary": fig}


def highlighted_html(tokens: list[str], reference: list[str],
                     escape: Callable[[str], str] | None = None) -> str:
    """`tokens` as HTML text, each one that differs from `reference` at its place marked.

    Tokens are untrusted text: each is written by `escape` (default: invisible characters
    made visible, then HTML-escaped), in its own `<span>` or `<mark>`, so no link or other
    construct can run across tokens. Where the HTML is read as Markdown first (Streamlit's
    `st.markdown(…, unsafe_allow_html=True)`), pass the app's Markdown escape instead."""
    escape = escape or _html_token
    parts = []
    for i, token in enumerate(tokens):
        differs = i >= len(reference) or token != reference[i]
        opening, closing = (f'<mark style="background:{DIFFERS}55">', "</mark>") if differs else ("<span>", "</span>")
        parts.append(f"{opening}{escape(token)}{closing}")
    return "".join(parts)


def _html_token(token: str) -> str:
    return html.escape(display_token(token))
