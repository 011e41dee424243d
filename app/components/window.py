"""The position window of a long prompt: which positions layer × position figures show.

A view of the result, never part of the link: the default is the last `WINDOW` positions and
every position the prompts differ at (`analyses.figures.layout.position_window`); a slider
widens or moves it.
"""
from __future__ import annotations

import streamlit as st

from analyses.figures.layout import WINDOW, position_window


def position_picker(key: str, n_tokens: int, differing: list[int] = ()) -> list[int] | None:
    """The positions to show (None: all); draws a slider only for prompts over `WINDOW`."""
    default = position_window(n_tokens, differing)
    if default is None:
        return None
    lo, hi = st.slider(
        f"Positions shown (of {n_tokens}; a view of this result, not part of its link)",
        min_value=0, max_value=n_tokens - 1, value=(n_tokens - WINDOW, n_tokens - 1), key=key,
        help="Long prompts show their last positions by default, plus every position where the "
             "two prompts differ; drag either end to show more.")
    shown = set(range(lo, hi + 1)) | {p for p in differing if 0 <= p < n_tokens}
    return sorted(shown)
