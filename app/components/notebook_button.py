""""Add to notebook" under every result (drawn once, by `app/components/page.py`): appends
the result's share link as a step of this session's notebook and links to the notebook page."""
from __future__ import annotations

import streamlit as st

from analyses import AnalysisSpec
from analyses.core.errors import UserError
from app.components import notebook_state
from app.components.display import md_escape
from app.routes import NOTEBOOK

ADDED_KEY = "notebook:added"  # session state: the query of the last step added, for its message


def notebook_button(spec: AnalysisSpec) -> None:
    st.button("Add to notebook", key=f"{spec.kind}:add-to-notebook", icon=":material/playlist_add:",
              on_click=_add, args=(spec.to_query(),),
              help="Adds this result (its share link, figure and key numbers) as a step of the "
                   "notebook this browser session is editing; notes and exports are on the "
                   "Notebook page.")
    reference = notebook_state.current_reference()
    if reference is None:
        return
    book = notebook_state.current()
    if st.session_state.get(ADDED_KEY) == spec.to_query():
        st.success(f"Added as step {len(book.steps)} of *{md_escape(book.title)}*.",
                   icon=":material/check:")
    st.page_link(NOTEBOOK, label=f"Open the notebook ({len(book.steps)} step{'s' * (len(book.steps) != 1)})",
                 icon=":material/menu_book:", query_params={"notebook": reference})


def _add(query: str) -> None:
    try:
        notebook_state.keep(notebook_state.current().with_step(query))
        st.session_state[ADDED_KEY] = query
    except UserError as err:
        st.session_state[ADDED_KEY] = None
        st.toast(md_escape(f"Not added: {err}"), icon=":material/error:")
