"""The local worker (the default backend): jobs on a small thread pool in this process.

TransformerLens hooks live on shared modules and are not thread-safe, so every job holds
its model's lock while it runs: two jobs on one model run one after the other, jobs on
different models run side by side.
"""
from __future__ import annotations

from analyses.runtime.execute import Execution, execute
from analyses.runtime.jobs import Job, State, Worker
from analyses.runtime.model_locks import ModelLocks


class LocalWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_lock = ModelLocks()  # model_lock(fingerprint) -> that model's lock

    def _execute(self, job: Job, device: str | None, dtype: str, progress) -> Execution:
        def running() -> None:
            job.state = State.RUNNING

        return execute(job.spec, device, dtype, progress, catalogue=self.catalogue,
                       model_lock=self.model_lock, on_running=running)
