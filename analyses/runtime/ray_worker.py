"""The Ray backend of the worker: the same queue, jobs run on Ray Serve replicas.

A Serve deployment whose replicas each hold their own models (`models.load`'s LRU lives in
the replica process) takes one request at a time per replica; each replica still holds a
lock per model (`model_locks.py`), since a cancelled request's thread runs on until its
next progress report while the next request starts. Scale out with more replicas, one per
GPU (`ANALYSES_RAY_GPUS_PER_REPLICA=1`). Its queue is bounded: when
`ANALYSES_RAY_MAX_QUEUED` requests wait already, a new one is answered "busy" at once.
Results come back to this process, which stays the only writer of the DuckDB store.

Progress: a replica runs the same `execute()` as the local worker, and streams each of its
progress reports back as it happens (a streaming Serve call: the replica's method is a
generator), so a job's bar moves exactly as it does with the local worker. Cancelling a
job stops the stream, and the replica's run stops at its next progress report.

Settings (environment):
  ANALYSES_WORKER=ray                 select this backend (default: local threads)
  ANALYSES_RAY_ADDRESS                a cluster to join (`auto`, `ray://head:10001`); unset: start Ray here
  ANALYSES_RAY_REPLICAS               replicas (default 1)
  ANALYSES_RAY_GPUS_PER_REPLICA       GPUs per replica (default 0; 1 on a GPU cluster)
  ANALYSES_RAY_MAX_QUEUED             requests allowed to wait (default 32)
"""
from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

from analyses.core.catalogue import CATALOGUE, Catalogue
from analyses.core.errors import UserError
from analyses.core.progress import Cancelled
from analyses.runtime.jobs import Busy, Job, State, Worker
from analyses.runtime.model_locks import ModelLocks

REPO = Path(__file__).resolve().parents[2]
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "ANALYSES_MODEL_ROOTS", "HF_HOME", "HF_HUB_CACHE")
PROGRESS, DONE, FAILED = "progress", "done", "failed"  # the kinds of message a replica streams


class AnalysisReplica:
    """One Serve replica: loads models on first use and runs analyses, one at a time."""

    def __init__(self, catalogue: Catalogue = CATALOGUE):
        self.catalogue = catalogue  # which code runs each kind (tests inject doubles here)
        self.model_lock = ModelLocks()  # a cancelled job's thread may still be on its model

    def run(self, spec_json: str, device: str | None, dtype: str):
        """Stream (PROGRESS, fraction, message) tuples while the job runs, then one
        (DONE, Execution) or (FAILED, is_user_error, message)."""
        from analyses.core.spec import AnalysisSpec
        from analyses.runtime.execute import execute

        messages: queue.Queue = queue.Queue()
        abandoned = threading.Event()  # the caller stopped listening (a cancelled job)

        def progress(fraction: float, message: str) -> None:
            if abandoned.is_set():
                raise Cancelled("the caller cancelled the job")
            messages.put((PROGRESS, float(fraction), message))

        def work() -> None:
            try:
                messages.put((DONE, execute(AnalysisSpec.from_json(spec_json), device, dtype,
                                            progress, catalogue=self.catalogue,
                                            model_lock=self.model_lock)))
            except BaseException as err:  # noqa: BLE001 - reported to the caller, not raised here
                messages.put((FAILED, isinstance(err, UserError), _error_text(err)))

        thread = threading.Thread(target=work, name="analysis", daemon=True)
        thread.start()
        try:
            while True:
                message = messages.get()
                yield message
                if message[0] != PROGRESS:
                    return
        finally:
            abandoned.set()


def _error_text(err: BaseException) -> str:
    """What the caller shows: a user error's own words, else its type and first line.
    (Sent as text: exception objects with their own __init__ do not always unpickle.)"""
    if isinstance(err, UserError):
        return str(err)
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


class RayWorker(Worker):
    """The worker's queue, dedupe and store; execution on Ray Serve replicas."""

    def __init__(self, store=None, replicas: int | None = None, threads: int = 8):
        import ray
        from ray import serve

        super().__init__(threads=threads, max_queued=10_000, store=store)
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        ray.init(address=os.environ.get("ANALYSES_RAY_ADDRESS"), ignore_reinit_error=True,
                 include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
        deployment = serve.deployment(AnalysisReplica).options(
            name="analyses",
            num_replicas=replicas or int(os.environ.get("ANALYSES_RAY_REPLICAS", "1")),
            ray_actor_options={"num_gpus": float(os.environ.get("ANALYSES_RAY_GPUS_PER_REPLICA", "0")),
                               "num_cpus": 1},
            max_ongoing_requests=1,  # TransformerLens hooks are not thread-safe
            max_queued_requests=int(os.environ.get("ANALYSES_RAY_MAX_QUEUED", "32")),
        )
        serve.start(proxy_location="Disabled")  # callers use the handle; no HTTP proxy needed
        handle = serve.run(deployment.bind(), name="analyses", route_prefix=None)
        self._stream = handle.options(stream=True)

    def _execute(self, job: Job, device: str | None, dtype: str, progress):
        from ray.serve.exceptions import BackPressureError

        progress(0.0, "sent to a Ray replica")
        job.state = State.RUNNING
        stream = self._stream.run.remote(job.spec.to_json(), device, dtype)
        try:
            for message in stream:
                if message[0] == PROGRESS:
                    progress(message[1], message[2])  # raises Cancelled if the job was cancelled
                elif message[0] == DONE:
                    return message[1]
                else:
                    _, user_error, text = message
                    raise UserError(text) if user_error else RuntimeError(text)
        except BackPressureError:
            raise Busy("every Ray replica is busy and the queue is full; try again in a moment") from None
        except Cancelled:
            stream.cancel()
            raise
        raise RuntimeError("the Ray replica ended its stream without a result")

    def shutdown(self) -> None:
        import ray
        from ray import serve

        super().shutdown()
        serve.shutdown()
        ray.shutdown()
