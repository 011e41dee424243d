"""Where a notebook link's `notebook=` comes from: a shipped file, or the store by content.

`resolve(name)` gives the notebook a link names; `save(notebook)` keeps it in the store under
its `sha256:` reference (what the notebook page's link carries); `listing()` the shipped and
stored ones. Torch-free: a notebook is text.
"""
from __future__ import annotations

from analyses.core import notebooks as nb
from analyses.core.notebooks import Notebook, NotebookError


def _store(store):
    from analyses.runtime.store import default_store  # duckdb: only when the store is asked

    return store if store is not None else default_store()


def resolve(name: str, store=None) -> Notebook:
    """The notebook `name` stands for: a shipped one (`ioi-walkthrough`) or a stored reference."""
    name = name.strip()
    nb.check_name(name)
    if name in nb.shipped_names():
        return nb.shipped(name)
    found = _store(store).get_notebook(name)
    if found is None:
        raise NotebookError(f"notebook: {name} is not in this store ({_store(store).path}); "
                            "it was made on another server, or its store was removed")
    return found


def save(notebook: Notebook, store=None) -> str:
    """Store `notebook`; returns its reference (NotebookError when the store cannot take it)."""
    target = _store(store)
    if not target.put_notebook(notebook):
        raise NotebookError(f"the store {target.path} cannot keep the notebook "
                            f"({target.problem or 'read-only'})")
    return notebook.reference


def listing(store=None) -> list[dict]:
    """Every notebook a link can name: shipped ones first, then the store's."""
    shipped = [{"title": nb.shipped(n).title, "reference": n, "steps": len(nb.shipped(n).steps),
                "origin": "shipped"} for n in nb.shipped_names()]
    return shipped + [{**row, "origin": "stored"} for row in _store(store).notebook_rows()]
