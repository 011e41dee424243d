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
visible; a write that fails (a full disk, a column whose type cannot take the values) is
rolled back, logged with its real error, and the caller still gets its result, uncached and
saying so (`meta["stored"]` False, `meta["store_problem"]` why). A table's column types come
from the first rows it is given: an empty table is never stored as a table (its columns are
in the catalogue row), an all-empty column takes its type from the first values it gets,
and integers widen to fractions rather than being rounded.

The file is held only for one operation at a time (`store_file`), so the app and a notebook
beside it both store and read, taking turns; a file held by another program for longer
than `busy_s` makes an operation answer "not stored" / "not found", never raise. Threads use
their own cursor; writes are serialised by a lock. A file that cannot be opened (corrupt,
another DuckDB version) is moved aside and rebuilt — this is a cache, never the only copy.

The results' tables are capped at `max_bytes` (`ANALYSES_CACHE_MAX_MB`, default 2048 MB,
counted as pandas holds them): over it, the least recently read results are evicted whole
(`last_used`, refreshed by a read at most once a minute). Prompt sets and notebooks (`notebooks`,
by content like prompt sets) are never evicted.

In front of the file, `memory` keeps the results this Store has decoded (`decoded_results`,
capped by `ANALYSES_MEMORY_CACHE_MB`, default 256): a result read again in this process comes
from there (`meta["cache_hit"]` "memory", else "store"), still refreshing `last_used` at most
once a minute, which also checks that the file still holds it. A result the store evicts
leaves memory with it; a Store on another path starts with nothing in memory.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from analyses.core.datasets import PromptSet, canonical_json
from analyses.core.jsonable import jsonable
from analyses.core.notebooks import Notebook
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.runtime.decoded_results import Decoded, DecodedResults
from analyses.runtime.store_columns import TableConflict, insert_rows, quoted
from analyses.runtime.store_file import ALIAS, StoreBusy, StoreUnusable, store_file
from analyses.runtime.versions import library_versions, version_differences

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
    last_used TIMESTAMP,
    n_bytes BIGINT,
    meta_json VARCHAR NOT NULL
)"""
# stores made before these columns: recency (for eviction) and size
MIGRATIONS = ("ALTER TABLE results ADD COLUMN IF NOT EXISTS last_used TIMESTAMP",
              "ALTER TABLE results ADD COLUMN IF NOT EXISTS n_bytes BIGINT")
RESULT_COLUMNS = ("key", "kind", "spec_json", "model_ref", "model_fingerprint", "analysis_version",
                  "library_versions", "created_at", "compute_seconds", "tables_json", "last_used",
                  "n_bytes", "meta_json")
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
# notebooks (the notebook page's notebook=sha256:<hex>), by content; never evicted
NOTEBOOKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS notebooks (
    reference VARCHAR PRIMARY KEY,
    title VARCHAR NOT NULL,
    n_steps INTEGER NOT NULL,
    notebook_json VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
)"""
DEFAULT_MAX_MB = 2048  # results' tables; a GPT-2 neuron atlas is ~100 MB, most results < 1 MB
DEFAULT_BUSY_S = 10.0  # how long an operation waits for another process to let go of the file
# meta a result carries about its delivery, never stored with it
DELIVERY_META = ("cache_hit", "stored", "store_problem", "library_versions", "made_with_other_versions")


class StoreQueryRefused(ValueError):
    """`Store.sql` was given something other than one query (a write, several statements)."""


def cache_path() -> Path:
    return Path(os.environ.get("ANALYSES_CACHE") or DEFAULT_PATH)


def max_bytes_from_env() -> int:
    return int(float(os.environ.get("ANALYSES_CACHE_MAX_MB") or DEFAULT_MAX_MB) * 2**20)


def table_name(kind: str, table: str, analysis_version: int, over_set: bool = False) -> str:
    """The store's table of a kind's table; a run over a prompt set (its tables carry
    `example` and summaries) has tables of its own: `tbl_<kind>_set_<table>_v<n>`."""
    name = f"tbl_{kind}_{'set_' if over_set else ''}{table}_v{analysis_version}"
    if not re.fullmatch(r"[a-z0-9_]+", name):  # names come from the catalogue, never from users
        raise ValueError(f"unsafe table name {name!r}")
    return name


def _prepare(cur) -> None:
    """The schema, on a file attached for the first time in this process (or rebuilt)."""
    cur.execute(SCHEMA)
    cur.execute(DATASETS_SCHEMA)
    cur.execute(NOTEBOOKS_SCHEMA)
    for migration in MIGRATIONS:
        cur.execute(migration)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def tables_bytes(tables: dict[str, pd.DataFrame]) -> int:
    """A result's size for the cap: its tables as pandas holds them (DuckDB, which
    compresses, usually writes less)."""
    return int(sum(frame.memory_usage(deep=True).sum() for frame in tables.values()))


class Store:
    def __init__(self, path: Path | str | None = None, max_bytes: int | None = None,
                 busy_s: float | None = None, read_only: bool = False, memory_bytes: int | None = None):
        self.path = Path(path) if path else cache_path()
        self.max_bytes = max_bytes if max_bytes is not None else max_bytes_from_env()
        self.busy_s = busy_s if busy_s is not None else float(
            os.environ.get("ANALYSES_CACHE_BUSY_S") or DEFAULT_BUSY_S)
        self.read_only = read_only  # never writes: a shared cache this process only reads
        self.problem: str | None = None  # the last reason an operation could not use the file
        self.memory = DecodedResults(memory_bytes)  # results read here before, decoded
        self._file = store_file(self.path, _prepare)
        try:
            with self._session():
                pass  # attach once now: a corrupt file is rebuilt, an old one migrated
        except (StoreBusy, StoreUnusable) as err:
            self._note(err)

    # --- the file, one operation at a time -----------------------------------
    @property
    def available(self) -> bool:
        """False when the file can neither be opened nor rebuilt (or the store is closed);
        a file another process holds for now is still available."""
        return self._file is not None

    @contextmanager
    def _session(self):
        """A cursor on the file, held for one operation (StoreBusy, StoreUnusable)."""
        if self._file is None:
            raise StoreUnusable(self.problem or f"the store on {self.path} is closed")
        self._file.enter(self.busy_s)
        try:
            cur = self._cursor()
            try:
                yield cur
            finally:
                cur.close()
        finally:
            self._file.leave()

    def _cursor(self):
        """This operation's own cursor on the attached file."""
        return self._file.cursor()

    def _note(self, err: Exception) -> None:
        self.problem = str(err)
        log.warning(self.problem)
        if isinstance(err, StoreUnusable):
            self._file = None

    # --- reading -------------------------------------------------------------
    # A read refreshes `last_used` at most this often: the update is a write, and a write makes
    # the DETACH after it checkpoint (a read took ~45 ms with it, ~7 ms without); a minute is
    # recent enough to choose what to evict
    TOUCH_EVERY_S = 60.0

    def get(self, key: str) -> Result | None:
        """The result stored under `key`, or None (also when the file is busy or unusable:
        `problem` says so). Its meta says it is a cache hit — "memory" when this Store had
        decoded it before, else "store" — and what it was made with. Each call's Result has
        its own frames and meta: what one caller changes, no other sees."""
        if not self.available:
            return None
        kept = self.memory.get(key)
        if kept is not None:
            if self._still_stored(key, kept):
                return kept.result(_delivery("memory", kept.made_with))
            self.memory.discard(key)  # evicted or replaced by another process: read the file
        try:
            with self._session() as cur:
                row = cur.execute("SELECT kind, spec_json, analysis_version, tables_json, meta_json, "
                                  "library_versions, last_used, n_bytes FROM results WHERE key = ?",
                                  [key]).fetchone()
                if row is None:
                    return None
                kind, spec_json, analysis_version, tables_json, meta_json, made_with, last_used, size = row
                spec = AnalysisSpec.from_json(spec_json)
                tables = self._read_tables(cur, key, kind, spec, analysis_version, tables_json)
                touched = self._touch(cur, key, last_used, size, tables)
        except (StoreBusy, StoreUnusable) as err:
            self._note(err)
            return None
        decoded = Decoded(spec=spec, tables=tables, meta=json.loads(meta_json), made_with=json.loads(made_with),
                          n_bytes=size if size is not None else tables_bytes(tables), checked=touched)
        self.memory.put(key, decoded)
        return decoded.result(_delivery("store", decoded.made_with))

    def _still_stored(self, key: str, kept: Decoded) -> bool:
        """Whether the file still holds `key`, asked at most once a `TOUCH_EVERY_S` per key,
        refreshing its `last_used` (a read from memory is a use); between asks, and while
        the file is busy, what memory holds is taken as stored (keys are content: it is
        the right result either way)."""
        now = _now()
        if (now - kept.checked).total_seconds() < self.TOUCH_EVERY_S:
            return True
        try:
            with self._session() as cur:
                if self.read_only:
                    found = cur.execute("SELECT 1 FROM results WHERE key = ?", [key]).fetchone()
                else:
                    found = cur.execute("UPDATE results SET last_used = ? WHERE key = ? RETURNING key",
                                        [now, key]).fetchone()
        except (StoreBusy, StoreUnusable) as err:
            self._note(err)
            return True
        except duckdb.Error as err:  # another thread touched it at this instant: it is there
            log.debug("last_used of %s not updated (%s)", key, err)
            return True
        kept.checked = now
        return found is not None

    @staticmethod
    def _read_tables(cur, key: str, kind: str, spec: AnalysisSpec, analysis_version: int,
                     tables_json: str) -> dict[str, pd.DataFrame]:
        tables = {}
        tables_columns = json.loads(tables_json)  # {table: its columns}; older stores: [table, ...]
        if isinstance(tables_columns, list):
            tables_columns = dict.fromkeys(tables_columns)
        for table, columns in tables_columns.items():
            name = table_name(kind, table, analysis_version, over_set=spec.dataset is not None)
            # its own columns: a column the table gained since this result was stored is not one
            chosen = ", ".join(quoted(c) for c in columns) if columns else "* EXCLUDE (result_key, row_index)"
            try:
                tables[table] = cur.execute(f"SELECT {chosen} FROM {name} "
                                            "WHERE result_key = ? ORDER BY row_index", [key]).df()
            except (duckdb.CatalogException, duckdb.BinderException):
                # stored empty: no rows went in, so the table (or these columns) may not exist
                tables[table] = pd.DataFrame(columns=columns or [])
        return tables

    def _touch(self, cur, key: str, last_used: datetime | None, size: int | None,
               tables: dict[str, pd.DataFrame]) -> datetime:
        """Mark `key` read now (its size too, for a result stored before sizes were kept);
        the time its `last_used` was last refreshed (now, or under a minute ago)."""
        now = _now()
        if self.read_only or (size is not None and last_used is not None
                              and (now - last_used).total_seconds() < self.TOUCH_EVERY_S):
            return now if self.read_only or last_used is None else last_used
        try:
            if size is None:
                cur.execute("UPDATE results SET last_used = ?, n_bytes = ? WHERE key = ?",
                            [now, tables_bytes(tables), key])
            else:
                cur.execute("UPDATE results SET last_used = ? WHERE key = ?", [now, key])
        except duckdb.Error as err:  # another thread touched it at this instant: recent enough
            log.debug("last_used of %s not updated (%s)", key, err)
        return now

    def __contains__(self, key: str) -> bool:
        return self._read_or(False, lambda cur: cur.execute(
            "SELECT 1 FROM results WHERE key = ?", [key]).fetchone() is not None)

    def keys(self) -> list[str]:
        return self._read_or([], lambda cur: [k for (k,) in cur.execute(
            "SELECT key FROM results ORDER BY created_at").fetchall()])

    def _read_or(self, fallback, read):
        """`read(cursor)`, or `fallback` when the file is busy or unusable."""
        if not self.available:
            return fallback
        try:
            with self._session() as cur:
                return read(cur)
        except (StoreBusy, StoreUnusable) as err:
            self._note(err)
            return fallback

    def sql(self, query: str, params: list | None = None) -> pd.DataFrame:
        """Read-only SQL over the catalogue and result tables, for notebooks and the app:
        one SELECT (WITH …, FROM …, DESCRIBE, SHOW) statement; anything else is refused
        (StoreQueryRefused) before it runs, and the query runs in a transaction that is
        rolled back."""
        statements = duckdb.extract_statements(query)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            found = ", ".join(s.type.name for s in statements) or "no statement"
            raise StoreQueryRefused(f"Store.sql is read-only: it runs one SELECT query (WITH … SELECT, "
                                    f"FROM …, DESCRIBE and SHOW too); this query is: {found}")
        with self._session() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                return cur.execute(query, params or []).df()
            finally:
                cur.execute("ROLLBACK")

    # --- writing -------------------------------------------------------------
    def put(self, key: str, result: Result, model_fingerprint: str, analysis_version: int,
            compute_seconds: float | None = None) -> bool:
        """Store `result` whole, in one transaction, or not at all; then evict the least
        recently used results over the size cap. False when nothing was stored (read-only,
        unusable, busy, or the write failed: logged, not raised, because the caller's result
        is fine and this is only a cache). Either way `result.meta["stored"]` says which, and
        `result.meta["store_problem"]` why not, for the page to show."""
        if self.read_only or not self.available:
            return _noted(result, False, "the store is read-only" if self.read_only else self.problem)
        with self._file.write_lock:
            try:
                with self._session() as cur:
                    if cur.execute("SELECT 1 FROM results WHERE key = ?", [key]).fetchone():
                        return _noted(result, True)  # equal content, equal result: nothing to do
                    self._write(cur, key, result, model_fingerprint, analysis_version, compute_seconds)
                    self._evict_over_cap(cur, keep=key)
            except (StoreBusy, StoreUnusable, TableConflict, duckdb.Error, OSError) as err:
                log.warning("result %s was not stored in %s (%s); it is returned uncached",
                            key, self.path, err)
                if isinstance(err, StoreUnusable | StoreBusy):
                    self._note(err)
                return _noted(result, False, f"{type(err).__name__}: {err}")
        return _noted(result, True)

    def _write(self, cur, key: str, result: Result, model_fingerprint: str, analysis_version: int,
               compute_seconds: float | None) -> None:
        cur.execute("BEGIN TRANSACTION")
        try:
            for table, frame in result.tables.items():
                insert_rows(cur, key, table_name(result.kind, table, analysis_version,
                                                        over_set=result.spec.dataset is not None), frame)
            now = _now()
            meta = {k: v for k, v in result.meta.items() if k not in DELIVERY_META}
            cur.execute(
                f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) VALUES ({', '.join('?' * len(RESULT_COLUMNS))})",
                [key, result.kind, result.spec.to_json(), result.spec.model, model_fingerprint,
                 analysis_version, json.dumps(library_versions()), now, compute_seconds,
                 json.dumps({name: list(map(str, frame.columns)) for name, frame in result.tables.items()}),
                 now, tables_bytes(result.tables), json.dumps(jsonable(meta, nan_as_null=False))])
            cur.execute("COMMIT")
        except BaseException:
            try:
                cur.execute("ROLLBACK")
            except duckdb.Error:
                pass  # a failed COMMIT has already ended it; re-raise the error that says why
            raise

    def _evict_over_cap(self, cur, keep: str) -> None:
        """Evict least recently used results (never `keep`, the one just stored) until the
        results fit `max_bytes`; each one's rows and catalogue row go in one transaction."""
        (total,) = cur.execute("SELECT coalesce(sum(n_bytes), 0) FROM results").fetchone()
        if total <= self.max_bytes:
            return
        oldest_first = cur.execute("SELECT key, coalesce(n_bytes, 0) FROM results WHERE key <> ? "
                                   "ORDER BY coalesce(last_used, created_at), created_at", [keep]).fetchall()
        tables = [name for (name,) in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND starts_with(table_name, 'tbl_')",
            [ALIAS]).fetchall()]
        for key, size in oldest_first:
            if total <= self.max_bytes:
                break
            cur.execute("BEGIN TRANSACTION")
            try:
                for name in tables:
                    cur.execute(f"DELETE FROM {name} WHERE result_key = ?", [key])
                cur.execute("DELETE FROM results WHERE key = ?", [key])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            self.memory.discard(key)
            total -= size
            log.info("evicted result %s (%d bytes) from %s: the cache is capped at %d MB",
                     key, size, self.path, self.max_bytes // 2**20)

    # --- prompt sets -----------------------------------------------------------
    def put_dataset(self, prompt_set: PromptSet) -> bool:
        """Keep `prompt_set` under its reference (again: nothing to do). False when nothing
        can be stored here (read-only, unusable, busy). Prompt sets are never evicted."""
        return self._keep("datasets", prompt_set.reference, lambda ref: [
            ref, prompt_set.name, len(prompt_set.rows), ",".join(prompt_set.fields),
            canonical_json(prompt_set.rows), _now()])

    def get_dataset(self, reference: str) -> PromptSet | None:
        row = self._read_or(None, lambda cur: cur.execute(
            "SELECT name, rows_json FROM datasets WHERE reference = ?", [reference]).fetchone())
        if row is None:
            return None
        return PromptSet(name=row[0], rows=tuple(json.loads(row[1])))

    def dataset_rows(self) -> list[dict]:
        found = self._read_or([], lambda cur: cur.execute(
            "SELECT name, reference, n_rows, fields FROM datasets ORDER BY created_at").fetchall())
        return [{"dataset": n, "reference": r, "rows": k, "fields": f} for n, r, k, f in found]

    # --- notebooks ------------------------------------------------------------
    def put_notebook(self, notebook: Notebook) -> bool:
        """Keep `notebook` under its reference (again: nothing to do). False when nothing
        can be stored here (read-only, unusable, busy). Notebooks are never evicted."""
        return self._keep("notebooks", notebook.reference, lambda ref: [
            ref, notebook.title, len(notebook.steps), notebook.to_json(), _now()])

    def _keep(self, table: str, reference: str, row) -> bool:
        """Insert `row(reference)` into `table` (datasets, notebooks: keyed by content) unless
        that reference is there already; False when nothing can be stored here."""
        if self.read_only or not self.available:
            return False

        def write(cur) -> bool:
            if not cur.execute(f"SELECT 1 FROM {table} WHERE reference = ?", [reference]).fetchone():
                values = row(reference)
                cur.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values))})", values)
            return True

        with self._file.write_lock:
            return self._read_or(False, write)

    def get_notebook(self, reference: str) -> Notebook | None:
        row = self._read_or(None, lambda cur: cur.execute(
            "SELECT notebook_json FROM notebooks WHERE reference = ?", [reference]).fetchone())
        return None if row is None else Notebook.from_json(row[0])

    def notebook_rows(self) -> list[dict]:
        found = self._read_or([], lambda cur: cur.execute(
            "SELECT title, reference, n_steps, created_at FROM notebooks ORDER BY created_at").fetchall())
        return [{"title": t, "reference": r, "steps": n, "created_at": str(c)} for t, r, n, c in found]

    def close(self) -> None:
        """Let go of this process's hold on the file (it holds none between operations)
        and of the results kept in memory."""
        self._file = None
        self.memory.clear()


def _delivery(where: str, made_with: dict[str, str]) -> dict:
    """The meta of a cache hit: where it came from ("memory" or "store") and what it was made with."""
    return dict(cache_hit=where, library_versions=dict(made_with),
                made_with_other_versions=version_differences(made_with, library_versions()))


def _noted(result: Result | None, stored: bool, problem: str | None = None) -> bool:
    """Say on `result` whether it went into the store (and why not)."""
    if result is not None:
        result.meta["stored"] = stored
        if problem:
            result.meta["store_problem"] = problem
        else:
            result.meta.pop("store_problem", None)
    return stored


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
