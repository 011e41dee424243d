"""A step's key numbers: the few rows of its result a reader needs beside the figure.

Over a prompt set (per-example runs), the kind's `<table>_summary`: each estimate with its
95% interval and n, largest |mean| first. On one input, the kind's main table (`MAIN`) by
|value|, largest first, plus the baselines and correlations the result carries in `meta`.
Labels name a row by its key columns, leaving out those that do not apply (-1 or empty).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analyses.core.catalogue import SUMMARY_COLUMNS
from analyses.core.result import Result

SHOWN = 6  # rows; a table this short or shorter is shown whole, in its own order
# kind -> its main tables, each with the value column ranked by its magnitude: the first
# that has rows is shown (the logit lens's targets are empty when no token was asked for)
MAIN = {
    "activation_patching": (("effects", "value"),),
    "attribution_patching": (("attributions", "atp"),),
    "dla": (("contributions", "value"),),
    "logit_lens": (("targets", "prob"), ("top", "prob")),
    "heads": (("scores", "score"),),
    "attention": (("patterns", "weight"),),
    "neurons": (("atlas", "score"),),
    "steering": (("effects", "metric"),),
    "circuit": (("edges", "score"),),
    "knockout": (("knockout", "change"),),
}
# kind -> a column whose largest value the rows shown are restricted to: attention from the
# last position (where the next token is predicted), not from BOS's row of ones
LAST = {"attention": "query_pos"}
# columns that say which row it is (the rest are values or bookkeeping)
LABEL_COLUMNS = ("quantity", "detector", "granularity", "node", "component", "sender", "receiver",
                 "receiver_input", "layer", "head", "sender_layer", "sender_head", "neuron",
                 "query_pos", "key_pos", "position", "n_tokens", "target", "token_str", "coeff", "ablated",
                 "source", "window_start")
META_NUMBERS = ("clean_baseline", "corrupted_baseline", "logit_diff", "exact_pearson", "exact_spearman")


def key_numbers(result: Result) -> list[tuple[str, str]]:
    """(label, value text) pairs, in the order they are worth reading."""
    summary = next((name for name in result.tables if name.endswith("_summary")), None)
    if summary is not None and not result.tables[summary].empty:
        rows = _summary_rows(result.tables[summary])
    else:
        rows = _main_rows(result)
    return rows + [(name.replace("_", " "), _number(result.meta[name]))
                   for name in META_NUMBERS if _is_number(result.meta.get(name))]


def _summary_rows(frame: pd.DataFrame) -> list[tuple[str, str]]:
    ordered = _largest(frame, "mean")
    return [(_label(row, frame.columns), _estimate(row)) for _, row in ordered.iterrows()]


def _main_rows(result: Result) -> list[tuple[str, str]]:
    for table, value in MAIN.get(result.kind, ()):
        frame = result.tables.get(table)
        if frame is not None and not frame.empty and value in frame.columns:
            if result.kind in LAST:
                frame = frame[frame[LAST[result.kind]] == frame[LAST[result.kind]].max()]
            ordered = _largest(frame, value)
            return [(_label(row, frame.columns), _number(row[value])) for _, row in ordered.iterrows()]
    return []


def _largest(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    if len(frame) <= SHOWN:
        return frame
    magnitude = pd.to_numeric(frame[value], errors="coerce").abs()
    return frame.loc[magnitude.sort_values(ascending=False, na_position="last").index[:SHOWN]]


def _label(row: pd.Series, columns) -> str:
    parts = [f"{name.replace('_', ' ')} {_plain(row[name])}" for name in LABEL_COLUMNS
             if name in columns and name not in SUMMARY_COLUMNS and _applies(row[name])]
    return ", ".join(parts) or "value"


def _estimate(row: pd.Series) -> str:
    text = _number(row["mean"])
    if _is_number(row.get("ci_low")) and _is_number(row.get("ci_high")):
        text += f" [{_number(row['ci_low'])}, {_number(row['ci_high'])}]"
    if _is_number(row.get("n")):
        text += f", n = {int(row['n'])}"
    return text


def _applies(value) -> bool:
    """False for a column that does not apply to this row: -1, empty, or missing."""
    if value is None or (_is_real(value) and (math.isnan(value) or value == -1)):
        return False
    return value != ""


def _plain(value) -> str:
    if _is_real(value) and float(value).is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) and value != value.strip() else str(value)


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return _is_real(value) and math.isfinite(value)


def _number(value) -> str:
    if not _is_number(value):
        return str(value)
    value = float(value)
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
