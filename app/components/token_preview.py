"""Under each text box, the tokens its text becomes for the chosen model (no torch needed).

Prompts are shown with the BOS the analyses put first; one-token fields (`answer`, `wrong`,
each `token`) warn when the text is several tokens, or lacks the leading space its word
usually has (`Paris` is not ` Paris`).
"""
from __future__ import annotations

import streamlit as st

from analyses.core.listtext import text_items
from analyses.runtime.preview import preview, spacing_hint
from app.components.display import VISIBLE_SPACE, display_token, md_code, md_escape

PROMPT_FIELDS = ("prompt", "clean", "corrupted")
ONE_TOKEN_FIELDS = ("answer", "wrong")
SHOWN = 24  # tokens listed; the count covers all


def shown_token(text: str) -> str:
    return display_token(text).replace(" ", VISIBLE_SPACE)


def token_caption(model: str, field: str, text: str | None) -> None:
    """A caption (and a warning where due) for one text field's value."""
    if not text or field not in (*PROMPT_FIELDS, *ONE_TOKEN_FIELDS, "token"):
        return
    items = text_items(text) if field == "token" else [text]
    for item in items:
        seen = preview(model, item, with_bos=field in PROMPT_FIELDS)
        if seen is None:
            return
        listed = " ".join(md_code(shown_token(t)) for t in seen.tokens[:SHOWN])
        more = f" … (+{seen.count - SHOWN})" if seen.count > SHOWN else ""
        what = "tokens with BOS" if seen.with_bos else ("token" if seen.count == 1 else "tokens")
        st.caption(f"{seen.count} {what}: {listed}{more}")
        if field not in PROMPT_FIELDS:
            hint = spacing_hint(model, item)
            if hint:
                st.warning(md_escape(hint), icon=":material/space_bar:")
            elif seen.count != 1:
                st.warning(md_escape(f"{item!r} is {seen.count} tokens; {field} must be exactly one"),
                           icon=":material/warning:")
