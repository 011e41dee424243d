"""`compute(spec)`: the one entry point that turns an analysis spec into a result.

1. the store: a result under the spec's content key returns at once — no model
   is loaded (the key needs only the model's fingerprint, read from its files);
2. otherwise the worker runs it as a job (equal specs in flight share one job),
   reporting progress, and stores the result when it finishes;
3. `cache=False` bypasses the store both ways.

Importing this module, making a key and answering from the store import no torch: the
worker loads the model (and torch with it) only for a job that must run.
"""
from __future__ import annotations

import time

from analyses.core.catalogue import CATALOGUE
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.runtime import models


def result_key(spec: AnalysisSpec, dtype: str = "float32") -> str:
    """Content key: kind, analysis version, model content (+ dtype), inputs and params, a
    prompt set's content (a shipped set named `ioi` is keyed by what its file holds) and a
    dictionary's (its config and weights, whatever name the spec gives it)."""
    version = CATALOGUE[spec.kind].version
    content = f"{models.fingerprint(spec.model)}/{dtype}"
    if spec.dataset is not None:
        from analyses.runtime.datasets import resolve

        content += f"/{resolve(spec.dataset).reference}"
    if getattr(spec, "dictionary", None) is not None:  # its weights, not its name
        from analyses.dictionaries import reference

        content += f"/dictionary:{reference.fingerprint(spec.model, spec.dictionary)}"
    kind = CATALOGUE[spec.kind]
    if kind.key_content is not None:  # e.g. the transcoders a graph reads, by content
        from analyses.core.catalogue import resolve as resolve_code

        content += f"/{resolve_code(kind.key_content)(spec)}"
    return spec.content_key(content, version)


def cached(spec: AnalysisSpec, dtype: str = "float32", store=None) -> Result | None:
    """The stored result of `spec`, or None: never runs anything (a page asks this first,
    so that a cached link draws no progress bar at all)."""
    from analyses.runtime.store import default_store  # duckdb: only when a result is asked for

    store = store if store is not None else default_store()
    return store.get(result_key(spec, dtype))


def compute(spec: AnalysisSpec, cache: bool = True, progress: Progress = silent,
            device: str | None = None, dtype: str = "float32", timeout: float | None = None,
            worker=None, store=None) -> Result:
    from analyses.runtime.workers import default_worker

    if cache:
        hit = cached(spec, dtype, store)
        if hit is not None:
            progress(1.0, "from the cache")
            return hit
    key = result_key(spec, dtype)
    worker = worker if worker is not None else default_worker()
    job = worker.submit(spec, key, device=device, dtype=dtype, store=cache)
    return follow(job, progress, timeout)


def follow(job, progress: Progress = silent, timeout: float | None = None, poll: float = 0.1) -> Result:
    """Wait for `job`, forwarding its progress; bounded by `timeout` seconds when given."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not job.finished:
        progress(job.fraction, job.message)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"no result after {timeout:.0f} s (job {job.id} is {job.state.value}); "
                               "it keeps running and its result will be cached")
        job._done.wait(poll)
    return job.wait(0)
