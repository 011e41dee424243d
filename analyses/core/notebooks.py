"""A notebook: the steps of a finding, handed over as one document (no torch, no DuckDB).

Each step is a share link — the spec's query string, which reopens the step's result on its
page and reproduces it headless — with a title and the researcher's note in Markdown (shown
through `analyses.notebook.notes`, which drops raw HTML and images). Like a prompt set, a
notebook is named by its content, `sha256:<hex>` of its canonical JSON (`reference`), or, for
one shipped with the project, by its file's name (`data/notebooks/<name>.json`, e.g.
`ioi-walkthrough`): `notebook=<name or reference>` in the notebook page's link.

A notebook never changes: an edit makes a new one, with a new reference (the old link still
opens the old version).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from .datasets import REFERENCE, canonical_json
from .errors import SpecError, UserError
from .spec import AnalysisSpec

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "data" / "notebooks"
SHIPPED_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
MAX_STEPS = 50
MAX_TITLE_CHARS = 200
MAX_NOTE_CHARS = 20_000
STEP_KEYS = ("link", "title", "note", "figure")
NOTEBOOK_KEYS = ("title", "intro", "steps")


class NotebookError(UserError):
    """A notebook that cannot be read or built; the message names the step and field."""


@dataclass(frozen=True)
class Step:
    """One step: `link` is the spec's query string (`kind=dla&dataset=ioi&…`), canonical
    (`AnalysisSpec.to_query`), so equal steps are equal text; `figure` names which of
    `result.figures()` the step shows ("" = the first)."""

    link: str
    title: str = ""
    note: str = ""  # Markdown; raw HTML and images are never rendered
    figure: str = ""

    @property
    def spec(self) -> AnalysisSpec:
        return AnalysisSpec.from_query(self.link)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def to_dict(self) -> dict[str, str]:
        return {"link": self.link, "title": self.title, "note": self.note, "figure": self.figure}


@dataclass(frozen=True)
class Notebook:
    title: str = "Untitled notebook"
    intro: str = ""  # Markdown, shown above the first step
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def reference(self) -> str:
        """`sha256:<hex>` of the canonical JSON: the notebook's identity (and its link's)."""
        return "sha256:" + hashlib.sha256(canonical_json([self.to_dict()]).encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"title": self.title, "intro": self.intro, "steps": [s.to_dict() for s in self.steps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    @classmethod
    def from_dict(cls, data) -> Notebook:
        """A notebook from its JSON object, every field checked (errors name the step)."""
        if not isinstance(data, dict):
            raise NotebookError(f"a notebook is a JSON object, got {type(data).__name__}")
        _no_unknown(data, NOTEBOOK_KEYS, "notebook")
        steps = data.get("steps", [])
        if not isinstance(steps, list):
            raise NotebookError("steps: expected a list of steps")
        if len(steps) > MAX_STEPS:
            raise NotebookError(f"steps: {len(steps)} steps; a notebook holds at most {MAX_STEPS}")
        return cls(title=_text(data, "title", "notebook", MAX_TITLE_CHARS, "Untitled notebook"),
                   intro=_text(data, "intro", "notebook", MAX_NOTE_CHARS),
                   steps=tuple(_step(item, i + 1) for i, item in enumerate(steps)))

    @classmethod
    def from_json(cls, text: str) -> Notebook:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise NotebookError(f"not JSON: {err}") from None
        return cls.from_dict(data)

    # --- edits: each returns a new notebook ------------------------------------
    def with_step(self, link: str, title: str = "", note: str = "", figure: str = "") -> Notebook:
        """This notebook with one more step, from a share link or a query string."""
        if len(self.steps) >= MAX_STEPS:
            raise NotebookError(f"a notebook holds at most {MAX_STEPS} steps")
        step = _step({"link": link, "title": title, "note": note, "figure": figure}, len(self.steps) + 1)
        return replace(self, steps=(*self.steps, step))

    def with_edit(self, index: int, **fields: str) -> Notebook:
        """Step `index` (from 0) with `fields` (title, note, figure) changed, checked."""
        merged = {**self.steps[index].to_dict(), **fields}
        steps = list(self.steps)
        steps[index] = _step(merged, index + 1)
        return replace(self, steps=tuple(steps))

    def without(self, index: int) -> Notebook:
        return replace(self, steps=self.steps[:index] + self.steps[index + 1:])

    def moved(self, index: int, offset: int) -> Notebook:
        """Step `index` moved `offset` places (-1: up), kept inside the notebook."""
        target = min(max(index + offset, 0), len(self.steps) - 1)
        steps = list(self.steps)
        steps.insert(target, steps.pop(index))
        return replace(self, steps=tuple(steps))

    def titled(self, title: str | None = None, intro: str | None = None) -> Notebook:
        data = self.to_dict()
        data.update({k: v for k, v in (("title", title), ("intro", intro)) if v is not None})
        return Notebook.from_dict(data)


def spec_query(link: str) -> str:
    """The canonical query string of a share link (`http://host/dla?kind=dla&…`) or of a
    bare query string (`kind=dla&…`); SpecError names the bad field."""
    text = link.strip()
    if "?" in text or "://" in text:
        text = urlsplit(text).query
    return AnalysisSpec.from_query(text).to_query()


def check_name(value: str) -> None:
    """A notebook link names a shipped notebook or a content reference."""
    if value in shipped_names() or REFERENCE.fullmatch(value):
        return
    raise NotebookError(f"notebook: {value[:80]!r} is neither a shipped notebook "
                        f"({', '.join(shipped_names()) or 'none'}) nor a reference sha256:<64 hex digits>")


def shipped_names() -> tuple[str, ...]:
    if not SHIPPED_DIR.is_dir():
        return ()
    return tuple(sorted(p.stem for p in SHIPPED_DIR.glob("*.json") if SHIPPED_NAME.fullmatch(p.stem)))


def shipped(name: str) -> Notebook:
    if name not in shipped_names():
        raise NotebookError(f"notebook: no shipped notebook {name[:80]!r}")
    return Notebook.from_json((SHIPPED_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _step(item, number: int) -> Step:
    where = f"step {number}"
    if not isinstance(item, dict):
        raise NotebookError(f"{where}: expected an object with {', '.join(STEP_KEYS)}")
    _no_unknown(item, STEP_KEYS, where)
    link = item.get("link")
    if not isinstance(link, str) or not link.strip():
        raise NotebookError(f"{where}: link: expected a share link or a spec's query string")
    try:
        query = spec_query(link)
    except SpecError as err:
        raise NotebookError(f"{where}: link: {err}") from None
    return Step(link=query, title=_text(item, "title", where, MAX_TITLE_CHARS),
                note=_text(item, "note", where, MAX_NOTE_CHARS),
                figure=_text(item, "figure", where, MAX_TITLE_CHARS))


def _text(data: dict, name: str, where: str, limit: int, default: str = "") -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise NotebookError(f"{where}: {name}: expected text, got {type(value).__name__}")
    if len(value) > limit:
        raise NotebookError(f"{where}: {name}: {len(value):,} characters; at most {limit:,}")
    return value


def _no_unknown(data: dict, known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise NotebookError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(known)})")
