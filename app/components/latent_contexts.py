"""A latent's top-activating contexts as text: each context's tokens shaded by the latent's
activation on them (its own maximum the darkest), the activating token boxed. No tensor math:
the index's `contexts` and `context_tokens` tables, drawn."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.components.display import display_token

SHADE = "76,120,168"  # the figures' blue


def inert_text(text: str) -> str:
    """`text` for HTML that Streamlit reads as Markdown first: invisible characters made
    visible, then every character but letters, digits and spaces written as a numeric
    character reference, which neither Markdown nor HTML acts on (a token cannot open a tag,
    a link or emphasis), and which shows as the character itself (a backslash escape would
    show its backslash inside HTML)."""
    return "".join(c if c.isalnum() or c == " " else f"&#{ord(c)};" for c in display_token(text))


def context_html(tokens: pd.DataFrame, top: float) -> str:
    """One context's tokens (its `context_tokens` rows) as inline HTML (`inert_text`)."""
    spans = []
    for offset, text, value in tokens.sort_values("offset")[["offset", "token_str", "value"]].itertuples(index=False):
        alpha = 0.0 if top <= 0 else min(max(float(value) / top, 0.0), 1.0)
        border = "border:2px solid #E45756;border-radius:3px;" if offset == 0 else ""
        tip = f"activation {float(value):.3g}"
        spans.append(f"<span title='{tip}' style='background:rgba({SHADE},{alpha:.2f});{border}"
                     f"white-space:pre'>{inert_text(str(text))}</span>")
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
        lines.append(f"<div style='font-family:monospace;font-size:0.9em;margin:2px 0;white-space:nowrap;"
                     f"overflow-x:auto'>"
                     f"<span style='color:#888'>{value:6.2f} · doc {doc} pos {position}&nbsp;</span>"
                     f"{context_html(around, top)}</div>")
    st.markdown("".join(lines), unsafe_allow_html=True)
