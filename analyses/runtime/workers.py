"""The process's worker: the local thread pool, or Ray Serve with `ANALYSES_WORKER=ray`."""
from __future__ import annotations

import os
import threading

from analyses.runtime.jobs import Worker

_WORKER: Worker | None = None
_WORKER_LOCK = threading.Lock()
BACKENDS = ("local", "ray")


def default_worker() -> Worker:
    """The process's worker, made on first use: local unless ANALYSES_WORKER=ray."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            backend = os.environ.get("ANALYSES_WORKER", "local").strip() or "local"
            if backend == "ray":
                from analyses.runtime.ray_worker import RayWorker

                _WORKER = RayWorker()
            elif backend == "local":
                from analyses.runtime.local_worker import LocalWorker

                _WORKER = LocalWorker()
            else:
                raise ValueError(f"ANALYSES_WORKER={backend!r}: choose one of {', '.join(BACKENDS)}")
        return _WORKER
