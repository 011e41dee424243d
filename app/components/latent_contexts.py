"""A latent's top-activating contexts as text: each context's tokens shaded by the latent's
activation on them (its own maximum the darkest), the activating token boxed. No tensor math:
the index's `contexts` and `context_tokens` tables, drawn."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.components.display import md_escape

SHADE = "76,120,168"  # the figures' blue


def context_html(tokens: pd.DataFrame, top: float) -> str:
    """One context's tokens (its `context_tokens` rows) as inline HTML. Every token's text goes
    through md_escape: Streamlit reads this as Markdown first, and escaped text stays inert
    as both (a token cannot open a tag or a link)."""
    spans = []
    for offset, text, value in tokens.sort_values("offset")[["offset", "token_str", "value"]].itertuples(index=False):
        alpha = 0.0 if top <= 0 else min(max(float(value) / top, 0.0), 1.0)
        border = "border:2px solid #E45756;border-radius:3px;" if offset == 0 else ""
        tip = f"activation {float(value):.3g}"
        spans.append(f"<span title='{tip}' style='background:rgba({SHADE},{alpha:.2f});{border}"
                     f"white-space:pre'>{md_escape(str(text))}</span>")
    return "".join(spans)


def show_contexts(contexts: pd.DataFrame, context_tokens: pd.DataFrame, latent: int, limit: int = 12) -> None:
    mine = contexts[contexts["latent"] == latent].sort_values("rank").head(limit)
    if mine.empty:
        st.info(f"Latent {latent} never fired on the index's corpus: it has no contexts.", icon=":material/info:")
        return
    top = float(mine["value"].max())
    neighbours = context_tokens[context_tokens["latent"] == latent]
    lines = []
    for rank, doc, position, value in mine[["rank", "doc", "position", "value"]].itertuples(index=False):
        around = neighbours[neighbours["rank"] == rank]
        lines.append(f"<div style='font-family:monospace;font-size:0.9em;margin:2px 0'>"
                     f"<span style='color:#888'>{value:6.2f} · doc {doc} pos {position}&nbsp;</span>"
                     f"{context_html(around, top)}</div>")
    st.markdown("".join(lines), unsafe_allow_html=True)
