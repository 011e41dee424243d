"""Jobs and the queue every worker backend shares.

A `Job` has a state, progress (fraction + message), can be cancelled, and ends with a
result or an error. `Worker` owns the queue: equal specs in flight share one job, more
than `max_queued` jobs in flight are answered "busy", and a finished job stores its own
result — so a result is cached even if whoever asked has gone (a closed browser tab).
An out-of-memory error fails that job with a clear message and the worker goes on.

A job may run at most `ANALYSES_JOB_TIME_LIMIT` seconds (unset or 0: no limit, the
headless default; the app sets 600 unless the operator chose): past it, the job's next
progress report stops it the way a cancel does, and it fails saying so — one link with
`exact=1` on a long prompt must not hold a model for hours.

Backends differ only in `_execute(job, device, dtype, progress) -> Execution`: the local
worker runs it on its own threads (`local_worker.py`), the Ray worker on Serve replicas
(`ray_worker.py`). Both end in `execute.execute`, and both report progress the same way.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

from analyses.core.catalogue import CATALOGUE, Catalogue
from analyses.core.errors import UserError
from analyses.core.progress import Cancelled
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec

log = logging.getLogger(__name__)


HISTORY = 64  # progress reports a job keeps
TIME_LIMIT_ENV = "ANALYSES_JOB_TIME_LIMIT"  # seconds a job may run; unset or 0: no limit


def job_time_limit() -> float | None:
    """The configured limit per job in seconds, or None for none."""
    text = os.environ.get(TIME_LIMIT_ENV, "").strip()
    try:
        seconds = float(text) if text else 0.0
    except ValueError:
        raise ValueError(f"{TIME_LIMIT_ENV}={text!r}: give a number of seconds (0 or unset: no limit)") from None
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{TIME_LIMIT_ENV}={text!r}: give a number of seconds (0 or unset: no limit)")
    return seconds or None


class State(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Busy(UserError):
    """The worker's queue is full: ask again shortly."""


class OverTimeLimit(Cancelled):
    """Raised at a job's first progress report past its time limit: it stops as a
    cancelled job does (the Ray backend cancels the replica's stream for it too)."""


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
    # the latest progress reports, (fraction, message), oldest first: what a log or a test
    # reads after the fact (a caller that polls sees only the report current at each poll)
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY), repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

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


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower()


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Worker:
    """The queue, dedupe and storing of results; subclasses say how a job executes."""

    def __init__(self, threads: int = 2, max_queued: int = 64, store=None,
                 catalogue: Catalogue = CATALOGUE):
        self.max_queued = max_queued
        self.catalogue = catalogue  # which code runs each kind (tests inject doubles here)
        self._store = store  # where finished results go; None: the process's default store
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="analysis")
        self._lock = threading.Lock()
        self._in_flight: dict[str, Job] = {}  # key -> job not yet finished
        self._ids = itertools.count(1)
        self.computations = 0  # jobs that actually ran an analysis (tests count them)

    def submit(self, spec: AnalysisSpec, key: str, device: str | None = None,
               dtype: str = "float32", store: bool = True) -> Job:
        limit = job_time_limit()  # read per job: a bad setting fails here, named, not in a thread
        with self._lock:
            job = self._in_flight.get(key)
            if job is not None:
                return job  # an equal spec is already queued or running: share it
            if len(self._in_flight) >= self.max_queued:
                raise Busy(f"the worker is busy ({len(self._in_flight)} jobs in flight); "
                           "try again in a moment")
            job = Job(id=f"job-{next(self._ids)}", key=key, spec=spec)
            self._in_flight[key] = job
        self._pool.submit(self._run, job, device, dtype, store, limit)
        return job

    @property
    def store(self):
        from analyses.runtime.store import default_store

        return self._store if self._store is not None else default_store()

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._in_flight.values())

    def _run(self, job: Job, device: str | None, dtype: str, store: bool, limit: float | None) -> None:
        deadline = None if limit is None else time.monotonic() + limit

        def progress(fraction: float, message: str) -> None:
            if job.cancelled:
                raise Cancelled(job.id)
            if deadline is not None and time.monotonic() > deadline:
                raise OverTimeLimit(job.id)
            job.fraction, job.message = float(fraction), message
            job.history.append((job.fraction, message))

        try:
            done = self._execute(job, device, dtype, progress)
            with self._lock:
                self.computations += 1
            if store:
                self.store.put(job.key, done.result, done.fingerprint, done.version, done.seconds)
            job.result, job.state, job.fraction, job.message = done.result, State.DONE, 1.0, "done"
        except OverTimeLimit:
            job.state, job.user_error = State.FAILED, True
            job.error = (f"{job.spec.kind} on {job.spec.model} was stopped after {limit:g} s: this "
                         f"server's limit per job ({TIME_LIMIT_ENV}); try a shorter prompt or a smaller "
                         "request (fewer layers, positions or examples; exact=0)")
        except Cancelled:
            job.state, job.message = State.CANCELLED, "cancelled"
        except UserError as err:
            job.state, job.error, job.user_error = State.FAILED, str(err), True
        except BaseException as err:  # noqa: BLE001 — a job must never take the worker down
            if is_out_of_memory(err):
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
        """Run the job's spec: an `execute.Execution`. Backends implement this."""
        raise NotImplementedError

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
