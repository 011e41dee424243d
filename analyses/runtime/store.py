"""The result cache: one DuckDB file, keyed by content (`spec.content_key`).

Each result is a row of `results` (spec JSON, kind, model fingerprint, analysis
version, library versions, created-at, compute seconds, meta) plus its tables as
real DuckDB tables — `tbl_<kind>_<table>_v<version>`, one row per table row, with
`result_key` and `row_index` columns — so the neuron atlas and head scores can be
queried with SQL across models:

    SELECT r.model_fingerprint, s.layer, s.head, s.score
    FROM tbl_heads_scores_v2 s JOIN results r ON r.key = s.result_key
    WHERE s.detector = 'induction' AND s.score > 0.5;

One result is written in one transaction: a half-written result is never
visible; a write that fails (a full disk) is rolled back and logged, and the
caller still gets its result, uncached. One process writes the file (DuckDB's
own lock); threads use their own cursor and writes are serialised by a lock.
A file that cannot be opened (corrupt, another DuckDB version) is moved aside
and rebuilt — this is a cache, never the only copy of anything. A file held by
another process is opened read-only when possible; otherwise the store is
unavailable and callers compute without it (`Store.available`, `Store.problem`
say why).
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import duckdb
import pandas as pd

from analyses.core.datasets import PromptSet, canonical_json
from analyses.core.jsonable import jsonable
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec

log = logging.getLogger(__name__)
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "data" / "cache.duckdb"
SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    spec_json VARCHAR NOT NULL,
    model_ref VARCHAR NOT NULL,
    model_fingerprint VARCHAR NOT NULL,
    analysis_version INTEGER NOT NULL,
    library_versions VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    compute_seconds DOUBLE,
    tables_json VARCHAR NOT NULL,
    meta_json VARCHAR NOT NULL
)"""
# prompt sets a user added (the spec's dataset=sha256:<hex>), by content
DATASETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    reference VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    n_rows INTEGER NOT NULL,
    fields VARCHAR NOT NULL,
    rows_json VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
)"""
_LIBRARIES = ("torch", "transformer-lens", "transformers", "duckdb")


def cache_path() -> Path:
    return Path(os.environ.get("ANALYSES_CACHE") or DEFAULT_PATH)


def library_versions() -> dict[str, str]:
    return {name: version(name) for name in _LIBRARIES}


def table_name(kind: str, table: str, analysis_version: int, over_set: bool = False) -> str:
    """The store's table of a kind's table; a run over a prompt set (its tables carry
    `example` and summaries) has tables of its own: `tbl_<kind>_set_<table>_v<n>`."""
    name = f"tbl_{kind}_{'set_' if over_set else ''}{table}_v{analysis_version}"
    if not re.fullmatch(r"[a-z0-9_]+", name):  # names come from the catalogue, never from users
        raise ValueError(f"unsafe table name {name!r}")
    return name


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


class Store:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else cache_path()
        self.read_only = False
        self.problem: str | None = None
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._conn = self._open()

    # --- opening -------------------------------------------------------------
    def _open(self) -> duckdb.DuckDBPyConnection | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = duckdb.connect(str(self.path))
            conn.execute(SCHEMA)
            conn.execute(DATASETS_SCHEMA)
            return conn
        except duckdb.IOException as err:
            if "lock" in str(err).lower():
                return self._open_read_only(err)
            return self._rebuild(err)
        except (duckdb.Error, OSError) as err:
            return self._rebuild(err)

    def _open_read_only(self, err: Exception) -> duckdb.DuckDBPyConnection | None:
        try:
            conn = duckdb.connect(str(self.path), read_only=True)
            self.read_only = True
            self.problem = f"{self.path} is held by another process: results are read, not stored"
            log.warning(self.problem)
            return conn
        except duckdb.Error:
            self.problem = f"{self.path} is held by another process ({err}); computing without the cache"
            log.warning(self.problem)
            return None

    def _rebuild(self, err: Exception) -> duckdb.DuckDBPyConnection | None:
        aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
        log.warning("cache %s cannot be opened (%s); moved aside to %s and rebuilt", self.path, err, aside)
        try:
            for suffix in ("", ".wal"):
                part = Path(str(self.path) + suffix)
                if part.exists():
                    part.rename(Path(str(aside) + suffix))
            conn = duckdb.connect(str(self.path))
            conn.execute(SCHEMA)
            conn.execute(DATASETS_SCHEMA)
            return conn
        except (duckdb.Error, OSError) as again:
            self.problem = f"cache {self.path} is unusable ({again}); computing without it"
            log.warning(self.problem)
            return None

    @property
    def available(self) -> bool:
        return self._conn is not None

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's own cursor on the shared connection."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._conn.cursor()
        return cursor

    # --- reading -------------------------------------------------------------
    def get(self, key: str) -> Result | None:
        if not self.available:
            return None
        cur = self._cursor()
        row = cur.execute("SELECT kind, spec_json, analysis_version, tables_json, meta_json "
                          "FROM results WHERE key = ?", [key]).fetchone()
        if row is None:
            return None
        kind, spec_json, analysis_version, tables_json, meta_json = row
        spec = AnalysisSpec.from_json(spec_json)
        tables = {}
        tables_columns = json.loads(tables_json)  # {table: its columns}; older stores: [table, ...]
        if isinstance(tables_columns, list):
            tables_columns = dict.fromkeys(tables_columns)
        for table, columns in tables_columns.items():
            name = table_name(kind, table, analysis_version, over_set=spec.dataset is not None)
            # its own columns: a column the table gained since this result was stored is not one
            chosen = ", ".join(_quoted(c) for c in columns) if columns else "* EXCLUDE (result_key, row_index)"
            frame = cur.execute(f"SELECT {chosen} FROM {name} "
                                "WHERE result_key = ? ORDER BY row_index", [key]).df()
            tables[table] = frame
        meta = dict(json.loads(meta_json), cache_hit=True)
        return Result(spec=spec, tables=tables, meta=meta)

    def __contains__(self, key: str) -> bool:
        return self.available and self._cursor().execute(
            "SELECT 1 FROM results WHERE key = ?", [key]).fetchone() is not None

    def keys(self) -> list[str]:
        if not self.available:
            return []
        return [k for (k,) in self._cursor().execute("SELECT key FROM results ORDER BY created_at").fetchall()]

    def sql(self, query: str, params: list | None = None) -> pd.DataFrame:
        """Read-only SQL over the catalogue and result tables, for notebooks and the app."""
        return self._cursor().execute(query, params or []).df()

    # --- writing -------------------------------------------------------------
    def put(self, key: str, result: Result, model_fingerprint: str, analysis_version: int,
            compute_seconds: float | None = None) -> bool:
        """Store `result` whole, in one transaction, or not at all. False when nothing was
        stored: read-only, absent, or the write failed (a full disk) — that is logged, not
        raised, because the caller's result is fine and this is only a cache."""
        if not self.available or self.read_only:
            return False
        with self._write_lock:
            cur = self._cursor()
            try:
                if cur.execute("SELECT 1 FROM results WHERE key = ?", [key]).fetchone():
                    return True  # equal content, equal result: nothing to do
                self._write(cur, key, result, model_fingerprint, analysis_version, compute_seconds)
            except (duckdb.Error, OSError) as err:
                log.warning("result %s was not stored in %s (%s); it is returned uncached",
                            key, self.path, err)
                return False
        return True

    def _write(self, cur, key: str, result: Result, model_fingerprint: str, analysis_version: int,
               compute_seconds: float | None) -> None:
        cur.execute("BEGIN TRANSACTION")
        try:
            for table, frame in result.tables.items():
                self._insert_table(cur, key, table_name(result.kind, table, analysis_version,
                                                        over_set=result.spec.dataset is not None), frame)
            cur.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [key, result.kind, result.spec.to_json(), result.spec.model, model_fingerprint,
                 analysis_version, json.dumps(library_versions()),
                 datetime.now(UTC).replace(tzinfo=None), compute_seconds,
                 json.dumps({name: list(map(str, frame.columns)) for name, frame in result.tables.items()}),
                 json.dumps(jsonable(result.meta, nan_as_null=False))])
            cur.execute("COMMIT")
        except BaseException:
            try:
                cur.execute("ROLLBACK")
            except duckdb.TransactionException:
                pass  # a failed COMMIT has already ended it; re-raise the error that says why
            raise

    @staticmethod
    def _insert_table(cur, key: str, name: str, frame: pd.DataFrame) -> None:
        staged = frame.reset_index(drop=True)
        staged.insert(0, "row_index", range(len(staged)))
        staged.insert(0, "result_key", key)
        view = f"staged_{threading.get_ident()}"
        cur.register(view, staged)
        try:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM {view} LIMIT 0")
            # a table that gained a column since this store first took it (older rows: NULL)
            have = {row[0] for row in cur.execute(f"DESCRIBE {name}").fetchall()}
            for column, column_type, *_ in cur.execute(f"DESCRIBE SELECT * FROM {view}").fetchall():
                if column not in have:
                    cur.execute(f"ALTER TABLE {name} ADD COLUMN {_quoted(column)} {column_type}")
            cur.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {view}")
        finally:
            cur.unregister(view)

    # --- prompt sets -----------------------------------------------------------
    def put_dataset(self, prompt_set: PromptSet) -> bool:
        """Keep `prompt_set` under its reference (again: nothing to do). False when nothing
        can be stored here (read-only, absent)."""
        if not self.available or self.read_only:
            return False
        with self._write_lock:
            cur = self._cursor()
            ref = prompt_set.reference
            if cur.execute("SELECT 1 FROM datasets WHERE reference = ?", [ref]).fetchone():
                return True
            cur.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?)",
                        [ref, prompt_set.name, len(prompt_set.rows), ",".join(prompt_set.fields),
                         canonical_json(prompt_set.rows), datetime.now(UTC).replace(tzinfo=None)])
        return True

    def get_dataset(self, reference: str) -> PromptSet | None:
        if not self.available:
            return None
        row = self._cursor().execute("SELECT name, rows_json FROM datasets WHERE reference = ?",
                                     [reference]).fetchone()
        if row is None:
            return None
        return PromptSet(name=row[0], rows=tuple(json.loads(row[1])))

    def dataset_rows(self) -> list[dict]:
        if not self.available:
            return []
        found = self._cursor().execute("SELECT name, reference, n_rows, fields FROM datasets "
                                       "ORDER BY created_at").fetchall()
        return [{"dataset": n, "reference": r, "rows": k, "fields": f} for n, r, k, f in found]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_STORE: Store | None = None
_STORE_LOCK = threading.Lock()


def default_store() -> Store:
    """The process's store on `ANALYSES_CACHE` (reopened if the variable changes)."""
    global _STORE
    with _STORE_LOCK:
        if _STORE is None or _STORE.path != cache_path():
            if _STORE is not None:
                _STORE.close()
            _STORE = Store()
        return _STORE
