"""Links from a head that a result ranks high to its attention pattern on that result's prompt."""
from __future__ import annotations

import streamlit as st

from analyses import AnalysisSpec
from analyses.core.errors import UserError
from analyses.figures.layout import head_label
from app import links
from app.components.display import md_escape

MAX_LINKS = 6


def head_links(model: str, prompt: str | None, heads: list[tuple[int, int, str]], what: str) -> None:
    """One link per (layer, head, why) to the attention page on `prompt` (nothing without one)."""
    if not prompt or not heads:
        return
    st.markdown(f"**Attention patterns** of the heads {md_escape(what)} — on this prompt")
    with st.container(horizontal=True):
        for layer, head, why in heads[:MAX_LINKS]:
            try:
                spec = AnalysisSpec(kind="attention", model=model, prompt=prompt, layer=layer, head=head)
            except UserError:
                return  # a prompt the attention kind refuses: no links rather than broken ones
            st.page_link(links.page_file("attention"), label=md_escape(f"{head_label(layer, head)} ({why})"),
                         query_params=links.params(spec), icon=":material/visibility:")


def top_heads(frame, value: str, k: int = MAX_LINKS, by_magnitude: bool = True) -> list[tuple[int, int, str]]:
    """The k (layer, head) rows of `frame` with the largest `value` (|value| when signed),
    one entry per head, labelled with that value."""
    rows = frame[(frame["head"] >= 0) & (frame["layer"] >= 0)].copy()
    rows["_rank"] = rows[value].abs() if by_magnitude else rows[value]
    rows = rows.sort_values("_rank", ascending=False).drop_duplicates(["layer", "head"]).head(k)
    return [(int(r.layer), int(r.head), f"{getattr(r, value):.2f}") for r in rows.itertuples()]
