"""The Ray backend of the worker: the same `submit` interface, jobs run on Ray Serve.

A Serve deployment whose replicas each hold their own models (`models.load`'s
LRU lives in the replica process) runs one analysis at a time per replica, so
replicas need no model lock; scale out with more replicas, one per GPU
(`ANALYSES_RAY_GPUS_PER_REPLICA=1`). Its queue is bounded: when
`ANALYSES_RAY_MAX_QUEUED` requests wait already, a new one is answered "busy" at
once. Results come back to this process, which stays the only writer of the
DuckDB store.

Settings (environment):
  ANALYSES_WORKER=ray                 select this backend (default: local threads)
  ANALYSES_RAY_ADDRESS                a cluster to join (`auto`, `ray://head:10001`); unset: start Ray here
  ANALYSES_RAY_REPLICAS               replicas (default 1)
  ANALYSES_RAY_GPUS_PER_REPLICA       GPUs per replica (default 0; 1 on a GPU cluster)
  ANALYSES_RAY_MAX_QUEUED             requests allowed to wait (default 32)
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .progress import silent
from .worker import Busy, Job, LocalWorker, State

REPO = Path(__file__).resolve().parents[1]
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "ANALYSES_MODEL_ROOTS", "HF_HOME", "HF_HUB_CACHE")


class AnalysisReplica:
    """One Serve replica: loads models on first use and runs analyses, one at a time."""

    def run(self, spec_json: str, device: str | None, dtype: str):
        from . import models
        from .registry import analysis_for
        from .spec import AnalysisSpec
        from .worker import with_meta

        spec = AnalysisSpec.from_json(spec_json)
        model = models.load(spec.model, device=device, dtype=dtype)
        analysis = analysis_for(spec.kind)
        started = time.perf_counter()
        result = analysis.run(model, spec, silent)
        seconds = time.perf_counter() - started
        return with_meta(result, model, analysis.version, seconds), model.fingerprint, analysis.version, seconds


class RayWorker(LocalWorker):
    """LocalWorker's queue, dedupe and store; execution on Ray Serve replicas."""

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
        self._handle = serve.run(deployment.bind(), name="analyses", route_prefix=None)

    def _execute(self, job: Job, device: str | None, dtype: str, progress):
        from ray.serve.exceptions import BackPressureError

        progress(0.0, "sent to a Ray replica")
        job.state = State.RUNNING
        try:
            answer = self._handle.run.remote(job.spec.to_json(), device, dtype).result()
        except BackPressureError:
            raise Busy("every Ray replica is busy and the queue is full; try again in a moment") from None
        self.computations += 1
        return answer

    def shutdown(self) -> None:
        import ray
        from ray import serve

        super().shutdown()
        serve.shutdown()
        ray.shutdown()
