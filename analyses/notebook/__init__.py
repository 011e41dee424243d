"""Notebooks: the steps of a finding — share links with their figures, key numbers and the
researcher's notes — handed over as one document, from Python or the command line.

    from analyses import notebook
    book = notebook.build(["kind=dla&dataset=ioi", "http://localhost:8501/attention?kind=…"],
                          notes=["MLP0 carries most of it", ""], title="IOI")
    ref = notebook.save(book)                       # sha256:…, what `notebook=` in a link names
    html = notebook.to_html(book, notebook.results(book))   # one self-contained file
    text = notebook.to_markdown(book, notebook.results(book, compute_missing=False))

`python -m analyses notebook export sha256:… --html out.html --md out.md` does the same.
Building, saving and exporting cached steps need no torch; a step not in the store is
computed (loading its model) unless `compute_missing=False`, which leaves it out ("not
computed", with its link).
"""
from __future__ import annotations

from collections.abc import Sequence

from analyses.core.notebooks import Notebook, NotebookError, Step
from analyses.core.result import Result
from analyses.notebook.export import step_url, to_html, to_markdown
from analyses.notebook.library import listing, resolve, save
from analyses.notebook.notes import note_html
from analyses.notebook.numbers import key_numbers

__all__ = ["Notebook", "NotebookError", "Step", "build", "key_numbers", "listing", "note_html",
           "resolve", "results", "save", "step_url", "to_html", "to_markdown"]


def build(links: Sequence[str], notes: Sequence[str] = (), titles: Sequence[str] = (),
          title: str = "Untitled notebook", intro: str = "") -> Notebook:
    """A notebook of `links` (share links or spec query strings), each with its note and title
    (shorter lists leave the rest empty); NotebookError names a bad step."""
    book = Notebook(title=title, intro=intro)
    for i, link in enumerate(links):
        book = book.with_step(link, title=titles[i] if i < len(titles) else "",
                              note=notes[i] if i < len(notes) else "")
    return Notebook.from_dict(book.to_dict())  # the title and intro checked too


def results(notebook: Notebook, compute_missing: bool = True, store=None, progress=None) -> list[Result | None]:
    """Each step's result, in order: from the store, else computed (None where
    `compute_missing` is False and it is not stored)."""
    from analyses.runtime.service import cached, compute

    found = []
    for number, step in enumerate(notebook.steps, start=1):
        if progress is not None:
            progress((number - 1) / max(len(notebook.steps), 1), f"step {number}: {step.kind}")
        result = cached(step.spec, store=store)
        if result is None and compute_missing:
            result = compute(step.spec, store=store)
        found.append(result)
    return found
