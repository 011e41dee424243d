"""Figures of a run over a prompt set: for each summary, the components with the largest
mean, each with its 95% interval and every example's own value beside it.

A mean hides how the examples spread (some prompts may even go the other way), so each
component's row shows the mean as a bar, the interval as an error bar, and the examples
as dots; hovering a dot names its example, whose single-prompt run is one link away.
Activation patching's bar is not the dots' mean: it is the ratio of the means, (mean patched
− mean corrupted) / (mean clean − mean corrupted), with its paired interval, while each dot is
its example's own ratio; the legend, hover and note say so.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.core.catalogue import SUMMARY_COLUMNS
from analyses.core.summary import mean_interval
from analyses.figures.layout import (
    MAX_VALUE_TEXT,
    axis,
    cells,
    differing_positions,
    grid_height,
    head_label,
    head_tick,
    heatmap,
    in_window,
    layer_head_axes,
    position_labels,
    position_window,
    symmetric_limit,
    tick_angle,
    title,
    window_note,
)
from analyses.figures.text import plot_text

TOP = 20  # components shown per summary, by |mean|
BAR_COLOUR, TOTAL_COLOUR = "#4C78A8", "#54585A"
TOTAL_LABEL = "total"  # direct logit attribution's sum of the components, drawn on top
EDGE = 0.03  # share of a set chart's axis beyond where its clipped dots are drawn
RATIO = "ratio of the means"  # the patching summary's estimate (`analyses/core/restored.py`)
RATIO_NOTE = (f"bars: the {RATIO}, (mean patched − mean corrupted) / (mean clean − mean corrupted), with its "
              "paired 95% interval; dots: each example's own ratio (their plain mean is another estimate)")
# per kind: summary table -> (its per-example table, the per-example value shown as dots, unit)
SHOWN = {
    "activation_patching": {"effects_summary": ("effects", "value", "share of the clean logit difference restored")},
    "attribution_patching": {"attributions_summary": ("attributions", "atp", "AtP estimate (logit difference)"),
                             "latents_summary": ("latents", "atp", "AtP estimate (logit difference)")},
    "dla": {"contributions_summary": ("contributions", "value", "direct contribution (logits)")},
    "logit_lens": {"targets_summary": ("targets", "prob", "probability at the last position")},
}
LABEL_KEYS = ("granularity", "component", "node", "layer", "head", "position", "target",
              "sender_layer", "sender_head", "receiver_input", "n_tokens", "latent")


def figures(result) -> dict[str, go.Figure]:
    if result.kind == "steering":  # cells of interventions, not components
        from analyses.figures.steering import set_figures
        return set_figures(result)
    if result.kind == "attention":  # the last position's attention, not components' effects
        from analyses.figures.attention import set_figures as attention_figures
        return attention_figures(result)
    if result.kind == "knockout":  # a line per source set over window starts, not components
        from analyses.figures.knockout import set_figures as knockout_figures
        return knockout_figures(result)
    if result.kind == "ablation_sweep":  # its grids read the summary: one figure set for both
        from analyses.figures.ablation_sweep import figures as sweep_figures
        return sweep_figures(result)
    shown = {}
    summary = result.tables.get("effects_summary")
    grid = head_mean_heatmap(summary)
    if grid is not None:
        shown["mean_by_head"] = grid
    if summary is not None and "receiver_input" in summary.columns:
        paths = summary[summary["granularity"] == "direct_path"]
        limit = symmetric_limit(paths["mean"])  # q, k and v on one scale, so they compare
        for name in dict.fromkeys(paths["receiver_input"]):
            shown[f"mean_direct_path_{name}"] = path_mean_heatmap(paths, name, limit)
    if summary is not None and "position" in summary.columns:
        blocks = summary[(summary["position"] >= 0) & (summary["head"] < 0)]
        for granularity in dict.fromkeys(blocks["granularity"]):
            shown[f"mean_by_position_{granularity}"] = position_mean_heatmap(
                blocks, result.tables.get("examples"), granularity)
    for summary_name, (table, value, unit) in SHOWN.get(result.kind, {}).items():
        if summary_name in result.tables and len(result.tables[summary_name]):
            per_example = result.tables[table]
            total = dla_total(per_example) if result.kind == "dla" else None
            shown[summary_name] = top_components_chart(result.tables[summary_name], per_example,
                                                       value, unit, result.meta.get("n_examples"),
                                                       ratio=result.kind == "activation_patching",
                                                       examples=result.tables.get("examples"), total=total)
    return shown


def dla_total(contributions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Direct logit attribution's total over a set: each example's sum of the components
    that add up to its logit difference, and their mean with its Student-t 95% interval.
    Returns (one summary row, per-example rows), keyed as the contributions are."""
    from analyses.figures.dla import DLA_TOTAL  # the rows that sum to the logit difference

    parts = contributions[contributions["component"].isin(DLA_TOTAL)]
    sums = parts.groupby("example", sort=True)["value"].sum()  # [example]
    keys = {"component": TOTAL_LABEL, "layer": -1, "head": -1}
    summary = pd.DataFrame([{**keys, **mean_interval(sums.to_numpy())}])
    return summary, pd.DataFrame({"example": sums.index, **keys, "value": sums.to_numpy()})


def position_names(examples: pd.DataFrame | None) -> dict[int, list[str]]:
    """Per prompt length, its positions' labels from its first example's tokens
    (`clean→corrupted` where that pair differs); none when the examples carry no tokens."""
    if examples is None or "clean_tokens" not in examples.columns or "n_tokens" not in examples.columns:
        return {}
    names = {}
    for length, group in examples.dropna(subset=["clean_tokens"]).groupby("n_tokens", sort=True):
        first = group.iloc[0]
        clean = json.loads(first["clean_tokens"])
        corrupted = json.loads(first["corrupted_tokens"]) if isinstance(first.get("corrupted_tokens"), str) else None
        names[int(length)] = position_labels(int(length), clean, corrupted)
    return names


# what each value of a summary's `interval` column means, for a page's caption
INTERVALS = {
    "t": "Student's t for means",
    "wilson": "Wilson's score interval for accuracies",
    "paired delta": (f"for the {RATIO}, (mean patched − mean corrupted) / (mean clean − mean corrupted) "
                     "(Wang et al.), the delta method on each example's paired values"),
    "single": "none for what is measured once per run: one measurement, n = 1",
}


def interval_note(result) -> str:
    """One sentence naming the 95% intervals `result`'s summaries use, and for which
    quantities where a summary has several (steering's `quantity`)."""
    used: dict[str, list[str]] = {}
    for name, table in result.tables.items():
        if not name.endswith("_summary") or "interval" not in table.columns:
            continue
        quantities = table["quantity"] if "quantity" in table.columns else [None] * len(table)
        for interval, quantity in zip(table["interval"], quantities):
            named = used.setdefault(interval, [])
            if quantity is not None and quantity not in named:
                named.append(quantity)
    parts = [INTERVALS.get(interval, interval) + (f" ({', '.join(named)})" if named else "")
             for interval, named in used.items()]
    return "95% intervals: " + "; ".join(parts) + "." if parts else ""


def component_labels(frame: pd.DataFrame, positions: dict[int, list[str]] | None = None) -> list[str]:
    """A short label per row from whichever key columns it has (NaN and -1 keys left out):
    a head as L0H0, a layer as L0, a position by its token where `positions` (per prompt
    length, each position's label) has its length: `␣Mary→␣John (position 3 of 15)`."""
    keys = [k for k in LABEL_KEYS if k in frame.columns]
    positions = positions or {}

    def known(value) -> bool:
        missing = value is None or value == "" or (isinstance(value, float) and np.isnan(value))
        return not missing and value != -1

    def whole(value):
        return int(value) if isinstance(value, (float, np.floating)) and float(value).is_integer() else value

    def label(row) -> str:
        parts, values = [], {k: whole(row[k]) for k in keys if known(row[k])}
        for key in ("granularity", "component", "node"):
            if key in values:
                parts.append(plot_text(str(values[key])))
        layer, head = values.get("layer"), values.get("head")
        if isinstance(layer, (int, np.integer)):
            parts.append(head_label(layer, head) if head is not None else f"L{layer}")
        elif layer is not None:  # a named layer (the logit lens's `final_post`)
            parts.append(f"layer {plot_text(str(layer))}")
        if "latent" in values:  # a dictionary's latent (attribution patching with dictionary=)
            parts.append(f"latent {values['latent']}")
        if "sender_layer" in values and "sender_head" in values:
            parts.append(f"from {head_label(values['sender_layer'], values['sender_head'])}")
        if "receiver_input" in values:
            parts.append(plot_text(str(values["receiver_input"])))
        if "position" in values:
            p, n = int(values["position"]), values.get("n_tokens")
            names = positions.get(int(n)) if n is not None else None
            if names is not None and p < len(names):
                parts.append(f"{names[p]} (position {p} of {int(n)})")
            else:
                parts.append(f"position {p}" + (f" of {int(n)}" if n is not None else ""))
        if "target" in values:
            parts.append(f"target {values['target']}")
        return " · ".join(parts)

    return [label(row) for _, row in frame.iterrows()]


def top_components_chart(summary: pd.DataFrame, per_example: pd.DataFrame, value: str, unit: str,
                         n_examples: int | None = None, ratio: bool = False,
                         examples: pd.DataFrame | None = None,
                         total: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> go.Figure:
    """The TOP rows of `summary` by |mean|: bar = mean, error bar = 95% interval, dots = the
    examples' own `value` for that row (matched on the summary's key columns). With `ratio`
    the bar is a ratio of means (patching's), which the dots do not average to: labelled so.
    `examples` (the set's table, with its tokens) labels positions by token; `total` (a
    summary row and its per-example rows, `dla_total`) is drawn on top in its own colour.

    The axis spans the bars and their intervals (and 0), not the dots: a few far examples
    would make the bars slivers. Dots beyond it are drawn at its edge as ◂ ▸, their value on
    hover, and the note counts them."""
    keys = [c for c in summary.columns if c not in SUMMARY_COLUMNS]
    top = summary.reindex(summary["mean"].abs().sort_values(ascending=False).index).head(TOP)
    if total is not None:
        top = pd.concat([total[0], top], ignore_index=True)
        per_example = pd.concat([per_example, total[1]], ignore_index=True)
    labels = component_labels(top[keys], position_names(examples))
    estimate = RATIO if ratio else "mean"
    fig = go.Figure()
    first = 1 if total is not None else 0  # the total: its own trace, so the legend names its colour
    for part, name, colour in ((slice(0, first), f"{TOTAL_LABEL}: the sum of the components", TOTAL_COLOUR),
                               (slice(first, None), f"{estimate} over the examples", BAR_COLOUR)):
        rows = top.iloc[part]
        if len(rows):
            fig.add_trace(go.Bar(
                y=labels[part], x=rows["mean"],
                orientation="h", name=name, marker={"color": colour},
                error_x={"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["mean"],
                         "arrayminus": rows["mean"] - rows["ci_low"], "color": "#333"},
                customdata=np.stack([rows["ci_low"], rows["ci_high"], rows["n"]], axis=-1),
                hovertemplate="%{y}<br>" + estimate + " %{x:.4g}<br>95% interval %{customdata[0]:.4g} to "
                              "%{customdata[1]:.4g}<br>n = %{customdata[2]}<extra></extra>"))
    shared = [k for k in keys if k in per_example.columns]
    if "position" in per_example.columns and "position" not in keys:  # summarised at the last position
        per_example = per_example[per_example["position"] == per_example["n_tokens"] - 1]
    if "position" in per_example.columns and "n_tokens" in shared:  # as the summary groups them:
        per_example = per_example.assign(  # position-free rows (position -1) pool every length
            n_tokens=per_example["n_tokens"].where(per_example["position"] >= 0, -1))
    dots = per_example.merge(top[shared].assign(_label=labels), on=shared, how="inner")
    low, high = bar_range(top)
    inside = dots[value].between(low, high) | dots[value].isna()
    if inside.any():
        fig.add_trace(go.Scatter(
            y=dots.loc[inside, "_label"], x=dots.loc[inside, value], mode="markers",
            name="each example's own ratio" if ratio else "each example",
            marker={"color": "rgba(60,60,60,0.35)", "size": 6}, customdata=dots.loc[inside, "example"],
            hovertemplate="example %{customdata}: %{x:.4g}<extra></extra>"))
    beyond = dots[~inside]
    if len(beyond):  # at the axis's edge, pointing the way they lie; their values on hover
        right = beyond[value] > high
        fig.add_trace(go.Scatter(
            y=beyond["_label"], x=np.where(right, high, low), mode="markers",
            name=f"examples beyond the axis ({len(beyond)}), at its edge",
            marker={"color": "rgba(60,60,60,0.6)", "size": 9,
                    "symbol": np.where(right, "triangle-right", "triangle-left").tolist()},
            customdata=np.stack([beyond["example"], beyond[value]], axis=-1),
            hovertemplate="example %{customdata[0]}: %{customdata[1]:.4g} (beyond the axis)<extra></extra>"))
    bars = RATIO_NOTE if ratio else "bars: the mean with its 95% interval; dots: each example"
    note = (f"{TOP if len(summary) > TOP else len(summary)} of {len(summary)} by |mean|; {bars}"
            + (f" (n = {n_examples})" if n_examples else ""))
    if total is not None:
        note += f"; {TOTAL_LABEL}: each example's sum of the components (its logit difference)"
    if len(beyond):
        note += (f"<br>axis: the bars and their intervals; {len(beyond)} of {len(dots)} dots lie beyond "
                 "the axis, drawn at its edge as ◂ ▸ (hover for their values)")
    if "target" in keys:
        note += "; target 0: each row's answer (its first token), 1: wrong (the second)"
    if any("position" in label for label in labels) and position_names(examples):
        note += "; positions named by the tokens of each length's first example"
    height, top_margin, bottom_margin = max(340, 24 * len(top) + 190), 90, 110
    fig.update_layout(
        title=title("Largest effects over the prompt set", note),
        # a little past the clipped dots, so their markers are drawn whole
        xaxis={"title": {"text": plot_text(unit)}, "zeroline": True, "zerolinecolor": "#888",
               "range": [low - EDGE * (high - low), high + EDGE * (high - low)]},
        barmode="overlay",  # the total's trace and the others' share the category axis
        yaxis={"title": {"text": "component"}, "autorange": "reversed", "type": "category",
               "categoryorder": "array", "categoryarray": labels},
        height=height, margin={"l": 260, "r": 20, "t": top_margin, "b": bottom_margin},
        # below the axis title whatever the height: 75 px under the plot area
        legend={"orientation": "h", "yanchor": "top", "y": -75 / (height - top_margin - bottom_margin)},
    )
    return fig


def bar_range(top: pd.DataFrame, pad: float = 0.08) -> tuple[float, float]:
    """The value axis of a set chart: 0, the bars and their intervals, padded by `pad` of
    the span on each side (a bar with no interval, n = 1, counts by its mean)."""
    ends = np.concatenate([[0.0], top["mean"], top["ci_low"], top["ci_high"]]).astype(float)
    ends = ends[np.isfinite(ends)]
    low, high = float(ends.min()), float(ends.max())
    span = high - low or 1.0
    return low - pad * span, high + pad * span


def head_mean_heatmap(summary: pd.DataFrame | None) -> go.Figure | None:
    """Layer × head grid of the mean effect of patching each whole head (the `head_*`
    granularities, position-free), on a scale centred at 0; the hover gives each mean's
    interval and n. None when the summary has no such rows."""
    if summary is None or "head" not in summary.columns:
        return None
    rows = summary[(summary["head"] >= 0) & (summary["position"] < 0)]
    if "sender_layer" in rows.columns:
        rows = rows[rows["sender_layer"] < 0]  # not direct paths: those are sender x receiver
    if rows.empty or rows["granularity"].nunique() != 1:
        return None
    grid = rows.pivot_table(index="layer", columns="head", values="mean")
    low = rows.pivot_table(index="layer", columns="head", values="ci_low").reindex_like(grid)
    high = rows.pivot_table(index="layer", columns="head", values="ci_high").reindex_like(grid)
    z = grid.to_numpy(dtype=float)
    y_ticks, x_ticks = [str(int(v)) for v in grid.index], [head_tick(v) for v in grid.columns]
    n = int(rows["n"].max())

    def hover(i, j, v):
        return (f"{head_label(grid.index[i], grid.columns[j])}<br>{RATIO} {v:.3f}<br>paired 95% interval "
                f"{low.iat[i, j]:.3f} to {high.iat[i, j]:.3f}<br>n = {n}")

    fig = go.Figure(heatmap(z, cells(z, hover), signed=True, colorbar="mean restored",
                            values_in_cells=len(x_ticks) <= 16))
    granularity = plot_text(str(rows["granularity"].iloc[0]))
    fig.update_layout(title=title(f"Mean effect of patching each head ({granularity}) over the set",
                                  f"share of the clean logit difference restored: the {RATIO} (Wang et al.); "
                                  f"n = {n}; hover for each interval"),
                      **layer_head_axes(x_ticks, y_ticks))
    return fig


def path_mean_heatmap(paths: pd.DataFrame, receiver_input: str, limit: float | None = None) -> go.Figure:
    """Sender head × receiver head grid of the direct paths into one receiver input (q, k or
    v) over the set: the ratio of the means (Wang et al.) printed in each cell, its paired
    interval and n on hover, on a scale centred at 0 and set by the data."""
    rows = paths[paths["receiver_input"] == receiver_input]
    index, columns = ["sender_layer", "sender_head"], ["layer", "head"]
    mean = rows.pivot_table(index=index, columns=columns, values="mean", aggfunc="first")
    low = rows.pivot_table(index=index, columns=columns, values="ci_low", aggfunc="first").reindex_like(mean)
    high = rows.pivot_table(index=index, columns=columns, values="ci_high", aggfunc="first").reindex_like(mean)
    z = mean.to_numpy(dtype=float)
    y_ticks = [head_label(layer, head) for layer, head in mean.index]
    x_ticks = [head_label(layer, head) for layer, head in mean.columns]
    n = int(rows["n"].max())

    def hover(i, j, v):
        return (f"{y_ticks[i]} → {x_ticks[j]} {receiver_input}<br>{RATIO} {v:.3f}<br>paired 95% interval "
                f"{low.iat[i, j]:.3f} to {high.iat[i, j]:.3f}<br>n = {n}")

    # a path restores a few hundredths of the gap: three decimals, or every cell reads 0.00
    small = len(x_ticks) <= MAX_VALUE_TEXT
    text = ([[f"{v:.3f}".replace("-0.000", "0.000") if np.isfinite(v) else "" for v in row] for row in z]
            if small else None)
    fig = go.Figure(heatmap(z, cells(z, hover), signed=True, colorbar="mean restored", limit=limit, text=text))
    fig.update_layout(
        title=title(f"Direct paths into the receivers' {plot_text(receiver_input)} input, over the set",
                    f"share of the logit difference restored by each path: the {RATIO}; n = {n}; "
                    "blank: no such path; hover for each interval"),
        xaxis=axis(f"receiver head ({plot_text(receiver_input)} input)", x_ticks, tickangle=-45),
        yaxis=axis("sender head", y_ticks),
        height=grid_height(len(y_ticks), extra=190), margin={"l": 80, "r": 20, "t": 80, "b": 100})
    return fig


def position_mean_heatmap(summary: pd.DataFrame, examples: pd.DataFrame | None, granularity: str) -> go.Figure:
    """Layer × position grid of one layer × position granularity's mean effect, for the
    prompts of the most common length (a position means the same only within one length);
    centred at 0, each cell's interval and n on hover. Positions are labelled with the
    tokens of that length's first example (`clean→corrupted` where its pair differs); a
    long prompt shows the last positions and those where that pair differs."""
    rows = summary[summary["granularity"] == granularity]
    sizes = rows.groupby("n_tokens")["n"].max()
    length = int(sizes.idxmax())
    rows = rows[rows["n_tokens"] == length]
    clean = corrupted = None
    first = None
    if examples is not None and "clean_tokens" in examples.columns:
        same = examples[examples["n_tokens"] == length]
        if len(same):
            first = same.iloc[0]
            clean, corrupted = json.loads(first["clean_tokens"]), json.loads(first["corrupted_tokens"])
    rows = in_window(rows, position_window(length, differing_positions(clean, corrupted)))
    mean = rows.pivot_table(index="layer", columns="position", values="mean")
    low = rows.pivot_table(index="layer", columns="position", values="ci_low").reindex_like(mean)
    high = rows.pivot_table(index="layer", columns="position", values="ci_high").reindex_like(mean)
    z = mean.to_numpy(dtype=float)
    names = position_labels(length, clean, corrupted)
    x_ticks = [names[int(p)] for p in mean.columns]
    y_ticks = [str(int(v)) for v in mean.index]
    n = int(rows["n"].max())

    def hover(i, j, v):
        return (f"layer {y_ticks[i]} · position {int(mean.columns[j])} ({x_ticks[j]})<br>{RATIO} {v:.3f}"
                f"<br>paired 95% interval {low.iat[i, j]:.3f} to {high.iat[i, j]:.3f}<br>n = {n}")

    fig = go.Figure(heatmap(z, cells(z, hover), signed=True, colorbar="mean restored"))
    others = [f"{int(k)} ({int(v)})" for k, v in sizes.items() if int(k) != length]
    notes = [f"prompts of {length} tokens, n = {n}"
             + (f" (other lengths, n: {', '.join(others)}: in the tables)" if others else ""),
             f"share of the clean logit difference restored: the {RATIO} (Wang et al.)"]
    if first is not None:
        notes.append(f"tokens of example {int(first['example'])}")
    shown_note = window_note(mean.columns, length)
    if shown_note:
        notes.append(shown_note)
    # level labels run together once a cell is narrower than its label (~1000 px across)
    long_labels = max(map(len, x_ticks), default=0) * 7 > 1000 / max(1, len(x_ticks))
    fig.update_layout(
        title=title(f"Mean effect of patching {plot_text(granularity)} at each layer and position",
                    f"{notes[0]}<br>{' · '.join(notes[1:])}"),
        xaxis=axis("input token (position)", x_ticks,
                   tickangle=-45 if long_labels else tick_angle(len(x_ticks))),
        yaxis=axis("layer", y_ticks),
        height=grid_height(len(y_ticks), extra=230), margin={"l": 80, "r": 20, "t": 110, "b": 120},
    )
    return fig
