"""Prompt sets, the spec's `dataset`: rows of input fields, parsed and checked without torch.

A row is a JSON object whose keys are the spec's own input fields (`ROW_FIELDS`); the spec's
other fields apply to every row. A set is named by a shipped name (`data/datasets/<name>.jsonl`,
made by `python -m analyses.embedded.datasets` from the embedded model's corpus code) or by its
content, `sha256:<hex>` of its canonical JSON (`reference`), for one a user added: the store
keeps it under that reference, so a link to it reopens wherever that store is.

Files are JSON lines or CSV with those columns, at most `MAX_BYTES` and `MAX_ROWS`; every
problem names its line, and a file with any bad line is refused whole (nothing is stored).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import SpecError, UserError

# `label`: a labelled (concept) set's class of the row's prompt, "1" (has the concept) or "0"
ROW_FIELDS = ("prompt", "clean", "corrupted", "answer", "wrong", "token", "subject", "label")
LABELS = ("0", "1")
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "data" / "datasets"
# the sets in SHIPPED_DIR, by name; `capital_concept` and `name_concept` are labelled sets
SHIPPED = ("ioi", "facts", "induction", "needle", "capital_concept", "name_concept")
REFERENCE = re.compile(r"sha256:[0-9a-f]{64}")
MAX_BYTES = 5 * 2**20  # an uploaded or added file
MAX_ROWS = 10_000
MAX_TEXT_CHARS = 20_000  # one field of one row, as in a spec


class DatasetError(UserError):
    """A prompt set that cannot be read or used; the message names the line."""


@dataclass(frozen=True)
class PromptSet:
    name: str  # a shipped name, or the file a user added it from
    rows: tuple[dict[str, str], ...]

    @property
    def reference(self) -> str:
        """`sha256:<hex>` of the rows' canonical JSON: the set's identity, whatever its name."""
        return "sha256:" + hashlib.sha256(canonical_json(self.rows).encode()).hexdigest()

    @property
    def fields(self) -> tuple[str, ...]:
        """The input fields its rows give, in `ROW_FIELDS` order."""
        present = {key for row in self.rows for key in row}
        return tuple(f for f in ROW_FIELDS if f in present)


def serves(kind, fields: tuple[str, ...] | list[str]) -> bool:
    """Whether rows with `fields` give `kind` (a catalogue Kind) every input it needs from a
    row (a pair's `clean` stands in for `prompt`, its `answer` for the logit lens's `token`;
    see `AnalysisSpec.for_row`)."""
    given = set(fields)
    if "clean" in given:
        given.add("prompt")
    if "answer" in given:
        given.add("token")
    # a kind that reads the set as a whole (a probe, a circuit) needs every field of its rows
    needed = [f for f in kind.row_fields if f in kind.required or kind.set_runner is not None]
    return bool(kind.row_fields) and all(f in given for f in needed)


def canonical_json(rows) -> str:
    return json.dumps(list(rows), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def check_name(value: str) -> None:
    """A spec's `dataset` must be a shipped name or a content reference."""
    if value in SHIPPED or REFERENCE.fullmatch(value):
        return
    raise SpecError("dataset", f"{value[:80]!r} is neither a shipped set ({', '.join(SHIPPED)}) nor a "
                               "reference sha256:<64 hex digits> from `python -m analyses datasets add`")


def check_row(row, line: int) -> dict[str, str]:
    """One row as a dict of non-empty strings over `ROW_FIELDS`, or an error naming `line`."""
    if not isinstance(row, dict):
        raise DatasetError(f"line {line}: expected a JSON object of input fields, got {type(row).__name__}")
    unknown = sorted(set(row) - set(ROW_FIELDS))
    if unknown:
        raise DatasetError(f"line {line}: unknown field {unknown[0][:40]!r}; a row's fields are "
                           f"{', '.join(ROW_FIELDS)}")
    if not row:
        raise DatasetError(f"line {line}: an empty row")
    if "label" in row:  # a class: 0 or 1, as a number or as text
        row = {**row, "label": _label(row["label"], line)}
    for key, value in row.items():
        if not isinstance(value, str):
            raise DatasetError(f"line {line}: {key} must be text, got {type(value).__name__}")
        if not value.strip():
            raise DatasetError(f"line {line}: {key} is empty")
        if len(value) > MAX_TEXT_CHARS:
            raise DatasetError(f"line {line}: {key} is {len(value):,} characters (at most {MAX_TEXT_CHARS:,})")
    return dict(row)


def _label(value, line: int) -> str:
    text = str(int(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and float(value) in (0.0, 1.0) else value
    if text not in LABELS:
        raise DatasetError(f"line {line}: label must be 0 or 1 (the row's class), got {str(value)[:40]!r}")
    return text


def parse(data: bytes, name: str) -> PromptSet:
    """A set from a file's bytes: JSON lines, or CSV when `name` ends in .csv."""
    if len(data) > MAX_BYTES:
        raise DatasetError(f"{name}: {len(data):,} bytes; a set file holds at most {MAX_BYTES:,}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{name}: not UTF-8 text (byte {err.start})") from None
    rows = _csv_rows(text) if name.lower().endswith(".csv") else _jsonl_rows(text)
    if not rows:
        raise DatasetError(f"{name}: no rows")
    if len(rows) > MAX_ROWS:
        raise DatasetError(f"{name}: {len(rows):,} rows; a set holds at most {MAX_ROWS:,}")
    return PromptSet(name=Path(name).name, rows=tuple(rows))


def _jsonl_rows(text: str) -> list[dict]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DatasetError(f"line {line}: not valid JSON ({err.msg} at column {err.colno})") from None
        rows.append(check_row(value, line))
    return rows


def _csv_rows(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [h for h in header if h not in ROW_FIELDS]
    if unknown:
        raise DatasetError(f"line 1: unknown column {unknown[0][:40]!r}; the columns are "
                           f"{', '.join(ROW_FIELDS)}")
    rows = []
    for line, record in enumerate(reader, start=2):
        if None in record:
            raise DatasetError(f"line {line}: more values than columns")
        # an empty cell is an absent field (a CSV cannot leave a column out of one row)
        rows.append(check_row({k: v for k, v in record.items() if v not in (None, "")}, line))
    return rows


def shipped(name: str) -> PromptSet:
    """A shipped set by name, read from `SHIPPED_DIR` (once per version of its file: every
    result key of a set run names its content, and a page asks for keys on each rerun)."""
    path = SHIPPED_DIR / f"{name}.jsonl"
    if name not in SHIPPED or not path.is_file():
        raise SpecError("dataset", f"no shipped set {name[:40]!r} (shipped: {', '.join(SHIPPED)})")
    return _read_shipped(name, path, path.stat().st_mtime_ns)


@lru_cache(maxsize=len(SHIPPED))
def _read_shipped(name: str, path: Path, mtime_ns: int) -> PromptSet:
    return PromptSet(name=name, rows=parse(path.read_bytes(), path.name).rows)
