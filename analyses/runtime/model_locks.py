"""One lock per loaded model: TransformerLens hooks live on the model's shared modules and
are not thread-safe, so at most one analysis may run on a model at a time.

Both backends hold it around the analysis (`execute(..., model_lock=...)`): the local
worker, whose jobs share one process, and each Ray replica, where a cancelled job's
stream ends at once while its thread runs on to its next progress report — Serve's
`max_ongoing_requests=1` counts requests, not threads, so without the lock the next
request would run on the same model meanwhile.
"""
from __future__ import annotations

import threading


class ModelLocks:
    """`locks(fingerprint)` is the lock of that model, made on first use."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def __call__(self, fingerprint: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(fingerprint, threading.Lock())
