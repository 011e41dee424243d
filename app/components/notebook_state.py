"""The notebook being edited in this browser session: its reference in `st.session_state`
(and in the notebook page's URL), the notebook itself in the store (`analyses.notebook`).

Every change makes a new notebook (its content is its name), stores it and makes it the
current one, so the page's link always reopens exactly what is shown.
"""
from __future__ import annotations

import streamlit as st

from analyses import notebook as nb
from analyses.core.errors import UserError
from analyses.core.notebooks import Notebook

CURRENT_KEY = "notebook:current"  # session state: the reference (or shipped name) being edited


def current_reference() -> str | None:
    return st.session_state.get(CURRENT_KEY)


def current() -> Notebook:
    """The session's notebook, or a new empty one (also when its reference cannot be read)."""
    reference = current_reference()
    if reference:
        try:
            return nb.resolve(reference)
        except UserError:
            pass
    return Notebook()


def keep(notebook: Notebook) -> str:
    """Store `notebook`, make it this session's; returns its reference (UserError if the
    store cannot take it)."""
    reference = nb.save(notebook)
    st.session_state[CURRENT_KEY] = reference
    return reference


def adopt(reference: str) -> None:
    """The notebook a link opened becomes the one this session edits."""
    st.session_state[CURRENT_KEY] = reference
