"""Where a spec's `dataset` comes from: a shipped set's file, or the store by content.

`add(path)` reads and checks a JSONL or CSV file and stores it under its `sha256:`
reference (a file with any bad line stores nothing); `resolve(name)` gives the set a spec
names; `listing()` the shipped and stored sets.
"""
from __future__ import annotations

from pathlib import Path

from analyses.core import datasets as ds
from analyses.core.errors import SpecError


def _store(store):
    from analyses.runtime.store import default_store

    return store if store is not None else default_store()


def resolve(name: str, store=None) -> ds.PromptSet:
    """The set `name` stands for: a shipped one, or one stored under its reference."""
    ds.check_name(name)
    if name in ds.SHIPPED:
        return ds.shipped(name)
    found = _store(store).get_dataset(name)
    if found is None:
        raise SpecError("dataset", f"{name} is not in this store ({_store(store).path}); add its file "
                                   "with `python -m analyses datasets add FILE`")
    return found


def add_bytes(data: bytes, name: str, store=None) -> ds.PromptSet:
    """Check and store a set from a file's bytes (an upload); returns it (`.reference`)."""
    prompt_set = ds.parse(data, name)
    target = _store(store)
    if not target.put_dataset(prompt_set):
        raise ds.DatasetError(f"{name}: the store {target.path} cannot take it "
                              f"({target.problem or 'read-only'})")
    return prompt_set


def add(path: Path, store=None) -> ds.PromptSet:
    path = Path(path)
    try:
        data = path.read_bytes() if path.stat().st_size <= ds.MAX_BYTES else None
    except OSError as err:
        raise ds.DatasetError(f"{path}: cannot be read ({err.strerror})") from None
    if data is None:
        raise ds.DatasetError(f"{path.name}: {path.stat().st_size:,} bytes; a set file holds at most "
                              f"{ds.MAX_BYTES:,}")
    return add_bytes(data, path.name, store)


def listing(store=None) -> list[dict]:
    """Every set a spec can name: shipped ones first, then the store's."""
    shipped = [ds.shipped(name) for name in ds.SHIPPED]
    rows = [{"dataset": s.name, "reference": s.reference, "rows": len(s.rows), "fields": ",".join(s.fields),
             "origin": "shipped"} for s in shipped]
    return rows + [{**row, "origin": "stored"} for row in _store(store).dataset_rows()]
