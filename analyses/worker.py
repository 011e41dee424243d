"""The worker: the only code that touches models and devices.

`LocalWorker` (the default backend) runs jobs on a small thread pool inside this
process. TransformerLens hooks live on shared modules and are not thread-safe,
so every job holds its model's lock while it runs: two jobs on one model run one
after the other, jobs on different models run side by side. Equal specs in
flight share one job. Jobs report progress (fraction + message), can be
cancelled, and store their result when they finish — so a result is cached even
if whoever asked for it has gone (a closed browser tab). An out-of-memory error
fails that job with a clear message, empties the CUDA cache, and the worker goes on.

The Ray backend (`analyses.ray_backend`) offers the same `submit` interface;
`ANALYSES_WORKER=ray` selects it.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

from . import models
from .errors import UserError
from .progress import Cancelled
from .registry import analysis_for
from .result import Result
from .spec import AnalysisSpec

log = logging.getLogger(__name__)


class State(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Busy(UserError):
    """The worker's queue is full: ask again shortly."""


class JobFailed(UserError):
    """A job ended in failure; the message says why (bad input, out of memory, ...)."""


@dataclass
class Job:
    id: str
    key: str
    spec: AnalysisSpec
    state: State = State.QUEUED
    fraction: float = 0.0
    message: str = "queued"
    result: Result | None = None
    error: str | None = None
    user_error: bool = False
    submitted_at: float = field(default_factory=time.time)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Result:
        """The result; raises JobFailed / Cancelled / TimeoutError otherwise."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.state.value} after {timeout} s")
        if self.state is State.DONE:
            return self.result
        if self.state is State.CANCELLED:
            raise Cancelled(f"job {self.id} was cancelled")
        raise JobFailed(self.error)


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower()


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class LocalWorker:
    def __init__(self, threads: int = 2, max_queued: int = 64, store=None):
        self.max_queued = max_queued
        self._store = store  # where finished results go; None: the process's default store
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="analysis")
        self._lock = threading.Lock()
        self._in_flight: dict[str, Job] = {}  # key -> job not yet finished
        self._model_locks: dict[str, threading.Lock] = {}
        self._ids = itertools.count(1)
        self.computations = 0  # jobs that actually ran an analysis (tests count them)

    def submit(self, spec: AnalysisSpec, key: str, device: str | None = None,
               dtype: str = "float32", store: bool = True) -> Job:
        with self._lock:
            job = self._in_flight.get(key)
            if job is not None:
                return job  # an equal spec is already queued or running: share it
            if len(self._in_flight) >= self.max_queued:
                raise Busy(f"the worker is busy ({len(self._in_flight)} jobs in flight); "
                           "try again in a moment")
            job = Job(id=f"job-{next(self._ids)}", key=key, spec=spec)
            self._in_flight[key] = job
        self._pool.submit(self._run, job, device, dtype, store)
        return job

    @property
    def store(self):
        from .store import default_store

        return self._store if self._store is not None else default_store()

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._in_flight.values())

    def _model_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._model_locks.setdefault(name, threading.Lock())

    def _run(self, job: Job, device: str | None, dtype: str, store: bool) -> None:
        def progress(fraction: float, message: str) -> None:
            if job._cancel.is_set():
                raise Cancelled(job.id)
            job.fraction, job.message = float(fraction), message

        try:
            result, fingerprint, version, seconds = self._execute(job, device, dtype, progress)
            if store:
                self.store.put(job.key, result, fingerprint, version, seconds)
            job.result, job.state, job.fraction, job.message = result, State.DONE, 1.0, "done"
        except Cancelled:
            job.state, job.message = State.CANCELLED, "cancelled"
        except UserError as err:
            job.state, job.error, job.user_error = State.FAILED, str(err), True
        except BaseException as err:  # noqa: BLE001 — a job must never take the worker down
            if _is_out_of_memory(err):
                _free_device_memory()
                job.error = (f"out of memory while running {job.spec.kind} on {job.spec.model}: "
                             "try a shorter prompt, a smaller model or the CPU")
            else:
                log.exception("job %s failed", job.id)
                job.error = f"{type(err).__name__}: {err}"
            job.state = State.FAILED
        finally:
            with self._lock:
                self._in_flight.pop(job.key, None)
            job._done.set()

    def _execute(self, job: Job, device: str | None, dtype: str, progress):
        """Run the analysis in this process: (result, model fingerprint, version, seconds)."""
        progress(0.0, f"loading {job.spec.model}")
        model = models.load(job.spec.model, device=device, dtype=dtype)
        analysis = analysis_for(job.spec.kind)
        with self._model_lock(model.fingerprint):
            job.state = State.RUNNING
            progress(0.0, "running")
            started = time.perf_counter()
            result = analysis.run(model, job.spec, progress)
            seconds = time.perf_counter() - started
            self.computations += 1
        return with_meta(result, model, analysis.version, seconds), model.fingerprint, analysis.version, seconds

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def with_meta(result: Result, model, analysis_version: int, seconds: float) -> Result:
    from dataclasses import replace

    meta = dict(result.meta, model_fingerprint=model.fingerprint, analysis_version=analysis_version,
                device=model.device, dtype=model.dtype, compute_seconds=round(seconds, 4))
    return replace(result, meta=meta)


_WORKER = None
_WORKER_LOCK = threading.Lock()


def default_worker():
    """The process's worker: local unless ANALYSES_WORKER=ray."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            if os.environ.get("ANALYSES_WORKER", "local") == "ray":
                from .ray_backend import RayWorker

                _WORKER = RayWorker()
            else:
                _WORKER = LocalWorker()
        return _WORKER
