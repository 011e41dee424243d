"""Results already read from the store, kept decoded in this process's memory.

A page viewed again (a link opened twice, a slider moved) asks the store for the same key;
reading it from DuckDB again costs milliseconds (attach, query, frames), from here
microseconds. The store (`Store.get`) puts every result it decodes here and asks here
first; it drops a key when it evicts that result, and a Store on another path (or a closed
one) starts empty, so what is here is always something the store holds or held a minute ago
(the store checks a kept key against its file when it refreshes `last_used`, at most once a
minute).

Bounded: `max_bytes` (`ANALYSES_MEMORY_CACHE_MB`, default 256 MB) of tables as pandas holds
them (`memory_usage(deep=True)`, the size the store caps on too); over it the least recently
used go first, and a result larger than the whole cap is never kept.

Callers never share a frame: each gets its own `DataFrame` objects over the kept data
(`copy(deep=False)`), and pandas' copy-on-write (the only mode since pandas 3) copies a
column the moment one of them writes to it, so a caller's edit never reaches the kept
result or another caller (tested). Meta is copied whole for each caller.
"""
from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec

DEFAULT_MEMORY_MB = 256  # a few hundred typical results, or two GPT-2 neuron atlases


def memory_bytes_from_env() -> int:
    return int(float(os.environ.get("ANALYSES_MEMORY_CACHE_MB") or DEFAULT_MEMORY_MB) * 2**20)


@dataclass
class Decoded:
    """One result as the store decoded it, without the meta of its delivery."""

    spec: AnalysisSpec
    tables: dict[str, pd.DataFrame]
    meta: dict  # as stored (no cache_hit, stored, library_versions, …)
    made_with: dict[str, str]  # library versions it was made with
    n_bytes: int  # its tables as pandas holds them
    checked: datetime  # when the store last saw it in its file (and refreshed `last_used`)

    def result(self, delivery: dict) -> Result:
        """A Result of its own for one caller: own frames (copy-on-write), own meta."""
        tables = {name: frame.copy(deep=False) for name, frame in self.tables.items()}
        return Result(spec=self.spec, tables=tables, meta={**copy.deepcopy(self.meta), **delivery})


class DecodedResults:
    """A thread-safe LRU of `Decoded` results by key, capped at `max_bytes`."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes if max_bytes is not None else memory_bytes_from_env()
        self._kept: OrderedDict[str, Decoded] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Decoded | None:
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
            return found

    def put(self, key: str, decoded: Decoded) -> None:
        if decoded.n_bytes > self.max_bytes:
            return  # it would push out everything else and still not fit
        with self._lock:
            self._drop(key)
            self._kept[key] = decoded
            self._bytes += decoded.n_bytes
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._kept)))

    def discard(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._kept

    @property
    def n_bytes(self) -> int:
        return self._bytes

    def _drop(self, key: str) -> None:
        gone = self._kept.pop(key, None)
        if gone is not None:
            self._bytes -= gone.n_bytes
