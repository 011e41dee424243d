"""The notebook page (`/notebook?notebook=<sha256:… or a shipped name>`): the steps a
researcher collected with "Add to notebook" — each its figure, key numbers, link and note —
as one document with its own share link, HTML and Markdown downloads, and edits.

It only arranges: the notebook is `analyses.core.notebooks`, its rendering and numbers
`analyses.notebook`, the session's notebook `app/components/notebook_state.py`. Notes go
through `analyses.notebook.notes` (no raw HTML, no images) before `st.html` shows them.
"""
from __future__ import annotations

import html

import streamlit as st

from analyses import notebook as nb
from analyses.core.errors import UserError
from analyses.core.notebooks import Notebook, Step
from analyses.notebook.export import chosen_figure
from app import links
from app.components import notebook_state
from app.components.copy_box import copy_box
from app.components.display import md_escape
from app.components.page import chart
from app.components.run import run_spec
from app.components.share_link import current_base
from app.routes import PAGES

WALKTHROUGH = "ioi-walkthrough"
STYLE = """<style>
.workbench-note { background: var(--st-secondary-background-color, #f0f2f6); border-radius: .5rem;
                  padding: .6rem 1rem .1rem 1rem; margin-bottom: .5rem; }
.workbench-numbers { border-collapse: collapse; font-size: .9rem; margin: .3rem 0 .6rem 0; }
.workbench-numbers td { padding: .1rem 1.2rem .1rem 0; border-bottom: 1px solid rgba(49,51,63,.1); }
.workbench-numbers td:last-child { font-variant-numeric: tabular-nums; }
</style>"""


def opened() -> tuple[Notebook, str | None]:
    """The notebook the URL names (it becomes the session's), else the session's; with its
    reference (None for a new, empty one)."""
    asked = st.query_params.get("notebook")
    if asked:
        try:
            book = nb.resolve(asked)
        except UserError as err:
            st.error(md_escape(f"This notebook link cannot be opened: {err}"), icon=":material/link_off:")
            return Notebook(), None
        notebook_state.adopt(asked)
        return book, asked
    reference = notebook_state.current_reference()
    if reference:
        st.query_params["notebook"] = reference  # the URL is the state
        return notebook_state.current(), reference
    return Notebook(), None


def change(make) -> None:
    """Apply an edit (`make(notebook) -> notebook`) to the session's notebook, keep it and
    point the URL at the new version; an invalid edit is shown, nothing is changed."""
    try:
        reference = notebook_state.keep(make(notebook_state.current()))
    except UserError as err:
        st.session_state["notebook:error"] = md_escape(str(err))
        return
    st.query_params["notebook"] = reference


def from_widget(key: str, edit):
    """An edit reading the widget `key`'s new value (for on_change callbacks)."""
    return lambda: change(lambda book: edit(book, st.session_state[key]))


def draw_note(text: str) -> None:
    if text.strip():
        st.html(f'<div class="workbench-note">{nb.note_html(text)}</div>')


def draw_numbers(rows: list[tuple[str, str]]) -> None:
    if rows:
        cells = "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>"
                        for label, value in rows)
        st.html(f'<table class="workbench-numbers">{cells}</table>')


def draw_step(number: int, step: Step, tag: str):
    """One step, drawn; returns its result (None when it could not be had)."""
    index = number - 1
    spec = step.spec
    with st.container(border=True):
        st.subheader(f"{number}. {md_escape(step.title or links.page_title(step.kind))}", anchor=False)
        st.page_link(PAGES[step.kind], label=f"Open on the {links.page_title(step.kind)} page",
                     icon=":material/open_in_new:", query_params=links.params(spec))
        draw_note(step.note)
        result = run_spec(spec)
        if result is not None:
            figure = chosen_figure(step, result)
            if figure is not None:
                chart(figure, f"notebook:{tag}:figure:{number}")
            draw_numbers(nb.key_numbers(result))
        with st.expander(f"Edit step {number}", icon=":material/edit:"):
            key = f"notebook:{tag}:{number}"
            st.text_input("Title", value=step.title, key=f"{key}:title",
                          on_change=from_widget(f"{key}:title", lambda b, v: b.with_edit(index, title=v)))
            st.text_area("Note (Markdown; HTML and images are shown as text)", value=step.note,
                         key=f"{key}:note", height=120,
                         on_change=from_widget(f"{key}:note", lambda b, v: b.with_edit(index, note=v)))
            if result is not None:
                names = list(result.figures())
                if len(names) > 1:
                    chosen = step.figure if step.figure in names else names[0]
                    st.selectbox("Figure", names, index=names.index(chosen), key=f"{key}:figure",
                                  on_change=from_widget(f"{key}:figure",
                                                        lambda b, v: b.with_edit(index, figure=v)))
            with st.container(horizontal=True):
                st.button("Move up", key=f"{key}:up", icon=":material/arrow_upward:",
                          on_click=change, args=(lambda b: b.moved(index, -1),), disabled=index == 0)
                st.button("Move down", key=f"{key}:down", icon=":material/arrow_downward:",
                          on_click=change, args=(lambda b: b.moved(index, 1),))
                st.button("Remove", key=f"{key}:remove", icon=":material/delete:",
                          on_click=change, args=(lambda b: b.without(index),))
            st.caption(md_escape(links.share_url(spec, current_base())))
    return result


def add_from_link(tag: str) -> None:
    key = f"notebook:{tag}:add-link"
    with st.form(key=f"{key}:form", clear_on_submit=True, border=False):
        st.text_input("Add a step from a share link", key=key,
                      placeholder="e.g. http://localhost:8501/dla?kind=dla&dataset=ioi")
        st.form_submit_button("Add the step", icon=":material/playlist_add:",
                              on_click=lambda: change(lambda b: b.with_step(st.session_state[key])))


def start_new() -> None:
    st.session_state.pop(notebook_state.CURRENT_KEY, None)
    st.query_params.clear()


st.html(STYLE)
book, reference = opened()
tag = (reference or "new").replace(":", "")[:20]  # widget keys per version: edits start fresh
st.title(md_escape(book.title), anchor=False)
problem = st.session_state.pop("notebook:error", None)
if problem:
    st.error(problem, icon=":material/error:")
draw_note(book.intro)
if not book.steps:
    st.info("This notebook has no steps yet. Press **Add to notebook** under any result, or paste a "
            "share link below. An example: the walkthrough of how the embedded model does IOI.",
            icon=":material/menu_book:")
    st.page_link("views/notebook.py", label="Open the IOI walkthrough", icon=":material/school:",
                 query_params={"notebook": WALKTHROUGH})

results = [draw_step(number, step, tag) for number, step in enumerate(book.steps, start=1)]
add_from_link(tag)
with st.expander("Title and introduction", icon=":material/edit_note:"):
    st.text_input("Title", value=book.title, key=f"notebook:{tag}:title",
                  on_change=from_widget(f"notebook:{tag}:title", lambda b, v: b.titled(title=v)))
    st.text_area("Introduction (Markdown)", value=book.intro, key=f"notebook:{tag}:intro",
                 on_change=from_widget(f"notebook:{tag}:intro", lambda b, v: b.titled(intro=v)))

if reference is not None:
    base = current_base()
    st.markdown("**Share link** — opens this notebook, as it is now")
    copy_box(links.notebook_url(reference, base), "Copy the notebook link", key="notebook:link")
    with st.container(horizontal=True):
        stem = f"notebook-{reference.removeprefix('sha256:')[:8]}"
        st.download_button("Download HTML", data=lambda: nb.to_html(book, results, base_url=base),
                           file_name=f"{stem}.html", mime="text/html", on_click="ignore",
                           icon=":material/download:", key="notebook:download:html",
                           help="One self-contained file: interactive figures, numbers, links, notes")
        st.download_button("Download Markdown", data=lambda: nb.to_markdown(book, results, base_url=base),
                           file_name=f"{stem}.md", mime="text/markdown", on_click="ignore",
                           icon=":material/download:", key="notebook:download:md")
        st.button("Start a new notebook", key="notebook:new", icon=":material/note_add:", on_click=start_new)
