"""Pick a prompt set: the shipped sets and those in this store whose rows give this page's
inputs; the choice goes into the form's "Prompt set" input (a shipped set by name, a stored
one by its `sha256:` reference), ready to Run."""
from __future__ import annotations

import streamlit as st

from analyses.core import datasets as ds
from analyses.core.catalogue import CATALOGUE


def choices(kind: str) -> dict[str, str]:
    """What the form's input gets -> how the picker names it, for the sets `kind` can run."""
    from analyses.runtime import datasets

    analysis = CATALOGUE[kind]
    found = {}
    for row in datasets.listing():
        if not ds.serves(analysis, row["fields"].split(",")):
            continue
        value = row["dataset"] if row["origin"] == "shipped" else row["reference"]
        where = "shipped" if row["origin"] == "shipped" else f"stored, {row['reference'][:15]}…"
        found[value] = f"{row['dataset']} — {row['rows']:,} rows ({where})"
    return found


def set_picker(kind: str, dataset_key: str) -> None:
    """A select box of the sets this kind can run; choosing one fills `dataset_key`'s input."""
    options = choices(kind)
    picker_key = f"{kind}:set_choice"

    def chosen() -> None:
        st.session_state[dataset_key] = st.session_state.get(picker_key) or ""

    current = st.session_state.get(dataset_key)  # e.g. from a link: shown as the choice
    index = list(options).index(current) if current in options else None
    st.selectbox("Run over a prompt set", list(options), index=index, key=picker_key,
                 format_func=options.get, on_change=chosen, placeholder="Choose a shipped or stored set…",
                 help="Fills the form's Prompt set input: every row of the set runs, and the page "
                      "shows means with 95% intervals and each example's value.")
