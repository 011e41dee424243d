"""What a page shows for a run over a prompt set (`dataset=`): how many examples ran and
which were skipped, the largest effects with their intervals and every example's value
(`result.figures()`), and a link to any one example's single-prompt run."""
from __future__ import annotations

import streamlit as st

from analyses import Result
from analyses.figures.sets import interval_note
from app import links
from app.components.display import md_escape
from app.components.share_link import current_base


def set_sections(result: Result) -> dict:
    """Sections and figures, in order, for `show_result`."""
    return {"set_summary": lambda: summary(result), **result.figures(),
            "one_example": lambda: one_example(result)}


def summary(result: Result) -> None:
    meta = result.meta
    ran, skipped = st.columns(2)
    ran.metric("Examples run", f"{meta.get('n_examples', 0):,}", border=True,
               help=f"of the {meta.get('n_rows', 0):,} rows of {meta.get('dataset')}")
    skipped.metric("Rows skipped", f"{meta.get('n_skipped', 0):,}", border=True,
                   help="rows that could not run on this model (the tables' `skipped` says why)")
    table = result.tables.get("skipped")
    if table is not None and len(table):
        reasons = "; ".join(f"row {r.example}: {r.reason}" for r in table.head(3).itertuples())
        st.warning(md_escape(f"{len(table)} rows skipped — {reasons}" + (" …" if len(table) > 3 else "")),
                   icon=":material/skip_next:")
    st.caption(md_escape(f"Set {meta.get('dataset')} ({meta.get('dataset_reference', '')[:19]}…). "
                         f"Estimates over the examples. {interval_note(result)}"))


def one_example(result: Result) -> None:
    examples = result.tables.get("examples")
    if examples is None or not len(examples):
        return
    rows = {int(r["example"]): r for r in examples.to_dict("records")}
    chosen = st.selectbox("Open one example on its own", list(rows), format_func=lambda i: _describe(rows[i]),
                          key=f"{result.kind}:set:example")
    spec = result.spec.for_row({k: v for k, v in rows[chosen].items() if isinstance(v, str)})
    st.link_button("Open this example's single-prompt link", links.share_url(spec, current_base()))


def _describe(row: dict) -> str:
    text = row.get("prompt") or row.get("clean") or ""
    return f"{int(row['example'])}: {text[:70]}{'…' if len(text) > 70 else ''}"
