"""One-click examples from the prompt suites in `data/prompts.json`.

The file holds suites of examples (`ioi`, `facts`, `needle`, `induction`, `text`), each
entry named by spec fields (`prompt`, `clean`, `corrupted`, `answer`, `wrong`). A kind
takes the entries whose fields it accepts; where a kind names its inputs differently an
adapter in `ADAPTERS` maps them (the logit lens reads `answer`/`wrong` as target tokens).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from analyses.registry import analysis_for

PROMPTS_FILE = Path(__file__).resolve().parents[2] / "data" / "prompts.json"
PER_SUITE = 2  # examples taken from each suite
MAX_PRESETS = 8
LABEL_CHARS = 38


@dataclass(frozen=True)
class Preset:
    label: str  # plain text: escape before drawing
    suite: str
    fields: dict = field(default_factory=dict)  # spec fields, without kind and model


def _logit_lens(entry: dict) -> dict:
    prompt = entry.get("prompt") or entry.get("clean")
    targets = [entry[k] for k in ("answer", "wrong") if entry.get(k) and "," not in entry[k]]
    return {"prompt": prompt, **({"token": ",".join(targets)} if targets else {})}


# kind -> entry -> spec fields. Kinds not listed keep the entry fields they accept.
ADAPTERS: dict[str, Callable[[dict], dict]] = {
    "logit_lens": _logit_lens,
}


def load_suites(path: Path | None = None) -> dict[str, list[dict]]:
    """The suites (of `PROMPTS_FILE` unless `path` is given), or {} when the file is
    missing or unreadable (pages then show no examples)."""
    path = PROMPTS_FILE if path is None else path
    try:
        stat = path.stat()
    except OSError:
        return {}
    return _read(str(path), stat.st_mtime_ns, stat.st_size)


_READ_CACHE: dict[tuple, dict] = {}


def _read(path: str, mtime_ns: int, size: int) -> dict[str, list[dict]]:
    key = (path, mtime_ns, size)
    if key not in _READ_CACHE:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        suites = {name: [e for e in entries if isinstance(e, dict)]
                  for name, entries in (data.items() if isinstance(data, dict) else [])
                  if isinstance(entries, list)}
        _READ_CACHE.clear()
        _READ_CACHE[key] = suites
    return _READ_CACHE[key]


def presets_for(kind: str, suites: dict[str, list[dict]] | None = None) -> list[Preset]:
    """The examples that make a valid spec for `kind`, a few from each suite."""
    suites = load_suites() if suites is None else suites
    analysis = analysis_for(kind)
    accepted = set(analysis.required) | set(analysis.optional)
    adapt = ADAPTERS.get(kind, lambda entry: entry)
    found: list[Preset] = []
    for suite, entries in suites.items():
        taken = 0
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            fields = {k: v for k, v in adapt(entry).items()
                      if k in accepted and isinstance(v, str) and v}
            if taken == PER_SUITE or not all(name in fields for name in analysis.required):
                continue
            found.append(Preset(_label(suite, fields), suite, fields))
            taken += 1
    return found[:MAX_PRESETS]


def _label(suite: str, fields: dict) -> str:
    text = next((fields[k] for k in ("prompt", "clean") if k in fields), "")
    text = " ".join(text.split())
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1].rstrip() + "…"
    return f"{suite}: {text}"
