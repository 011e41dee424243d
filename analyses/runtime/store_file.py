"""Taking turns on one DuckDB file with other processes (the app and a notebook beside it).

DuckDB lets one process at a time open a file, and a process holding any connection to it
(even a read-only one) keeps every other process out. So the store holds its file only for
the length of one operation: a long-lived in-memory DuckDB instance ATTACHes the file, the
operation runs on a cursor of it, and when the last of this process's overlapping
operations ends the file is DETACHed (DuckDB checkpoints it and lets go of its lock).
Attaching costs a few milliseconds; a new connection per operation (a new database
instance each time) costs some 40 ms on this project's machines.

Another process holding the file: retry with backoff for up to `busy_s` seconds, then
`StoreBusy`. A file that cannot be attached for any other reason (corrupt, another DuckDB
storage version) is moved aside and rebuilt: the store is a cache, never the only copy.
One `StoreFile` per path per process (`store_file(path)`): DuckDB refuses to attach one
file twice in a process, and Store objects on the same path share it.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import duckdb

log = logging.getLogger("analyses.runtime.store")
ALIAS = "store"  # the attached file's catalogue name; every cursor USEs it
FIRST_RETRY_S = 0.005
LONGEST_RETRY_S = 0.2


class StoreBusy(Exception):
    """Another process held the store file for longer than this store waits."""


class StoreUnusable(Exception):
    """The store file can neither be opened nor rebuilt (a read-only folder, a full disk)."""


def _is_lock_conflict(err: duckdb.Error) -> bool:
    return "lock" in str(err).lower()


class StoreFile:
    """This process's use of one DuckDB file; operations that overlap share one attachment.
    `prepare(cursor)` runs once after the file is first attached (and after a rebuild):
    the schema and its migrations."""

    def __init__(self, path: Path, prepare: Callable):
        self.path = path
        self._prepare = prepare
        self._prepared = False
        self._db = duckdb.connect(":memory:")
        self._lock = threading.Lock()  # guards attaching and `_users`
        self._users = 0  # this process's operations now using the file
        self.write_lock = threading.Lock()  # one writer at a time, whichever Store object

    def enter(self, busy_s: float) -> None:
        """Attach the file unless an overlapping operation of this process already has."""
        with self._lock:  # other threads wait here: they need the file too
            if self._users == 0:
                self._attach(busy_s)
            self._users += 1

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._db.execute(f"DETACH {ALIAS}")  # checkpoints, and lets other processes in

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor on the attached file (its registered frames die with it)."""
        cursor = self._db.cursor()
        cursor.execute(f"USE {ALIAS}")
        return cursor

    def _attach(self, busy_s: float) -> None:
        deadline, delay = time.monotonic() + busy_s, FIRST_RETRY_S
        while True:
            try:
                self._db.execute(f"ATTACH '{_sql_text(self.path)}' AS {ALIAS}")
                break
            except duckdb.ResourceInUseException as err:  # opened by other code in this process
                raise StoreUnusable(f"{self.path} is open elsewhere in this process ({err})") from err
            except duckdb.Error as err:
                if not _is_lock_conflict(err):
                    self._rebuild(err)
                    break
                if time.monotonic() + delay > deadline:
                    raise StoreBusy(f"{self.path} is held by another process (waited {busy_s:g} s); "
                                    "try again when it lets go") from err
                time.sleep(delay)
                delay = min(delay * 2, LONGEST_RETRY_S)
        if not self._prepared:
            try:
                self._run_prepare()
            except BaseException:
                self._db.execute(f"DETACH {ALIAS}")
                raise
            self._prepared = True

    def _run_prepare(self) -> None:
        cursor = self.cursor()
        try:
            self._prepare(cursor)
        finally:
            cursor.close()

    def _rebuild(self, err: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
        log.warning("cache %s cannot be opened (%s); moved aside to %s and rebuilt", self.path, err, aside)
        try:
            for suffix in ("", ".wal"):
                part = Path(str(self.path) + suffix)
                if part.exists():
                    part.rename(Path(str(aside) + suffix))
            self._db.execute(f"ATTACH '{_sql_text(self.path)}' AS {ALIAS}")
        except (duckdb.Error, OSError) as again:
            raise StoreUnusable(f"cache {self.path} is unusable ({again}); computing without it") from again
        self._prepared = False


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


_FILES: weakref.WeakValueDictionary[Path, StoreFile] = weakref.WeakValueDictionary()
_FILES_LOCK = threading.Lock()


def store_file(path: Path, prepare: Callable) -> StoreFile:
    """The process's StoreFile of `path` (kept while any Store uses it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = path.resolve()
    with _FILES_LOCK:
        found = _FILES.get(key)
        if found is None:
            found = _FILES[key] = StoreFile(path, prepare)
        return found
