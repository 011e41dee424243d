"""`execute(spec)`: load the model, run the kind, time it, stamp the result — in this process.

The one path from a spec to a result, used by every worker backend: the local worker
calls it on its threads, each Ray replica calls it in its own process. So the model
loading, the progress messages, the timing and the result's meta are the same wherever
a job runs.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

from analyses.core.catalogue import CATALOGUE, Catalogue
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.runtime import models
from analyses.runtime.stack import import_model_stack


@dataclass(frozen=True)
class Execution:
    """What a finished job hands back: its result (meta stamped) and what the store keys
    and records it by."""

    result: Result
    fingerprint: str  # the model's content hash
    version: int  # the kind's analysis version
    seconds: float  # time in the kind's run function (model loading excluded)


def execute(spec: AnalysisSpec, device: str | None = None, dtype: str = "float32",
            progress: Progress = silent, catalogue: Catalogue = CATALOGUE,
            model_lock: Callable[[str], AbstractContextManager] | None = None,
            on_running: Callable[[], None] = lambda: None) -> Execution:
    """Run `spec` here. `model_lock(fingerprint)` is held while the analysis runs (hooks
    live on the shared model); `on_running()` is called once it is held."""
    prompt_set = None
    if spec.dataset is not None:  # read (and checked) before any model is loaded
        from analyses.runtime.datasets import resolve

        prompt_set = resolve(spec.dataset)
    progress(0.0, f"loading {spec.model}")
    import_model_stack()  # one thread at a time: transformers' lazy names are not thread-safe
    model = models.load(spec.model, device=device, dtype=dtype)
    kind = catalogue[spec.kind]
    run = kind.run_function()
    if prompt_set is not None and kind.set_function() is not None:
        run_whole = kind.set_function()

        def run(model, spec, progress):
            return run_whole(model, spec, prompt_set, progress)
    elif prompt_set is not None:
        from analyses.kinds import sets

        run_one, run_many = run, kind.examples_function()

        def run(model, spec, progress):
            return sets.run(run_one, model, spec, prompt_set, progress, run_many)
    with model_lock(model.fingerprint) if model_lock else nullcontext():
        on_running()
        progress(0.0, "running")
        started = time.perf_counter()
        result = run(model, spec, progress)
        seconds = time.perf_counter() - started
    return Execution(stamped(result, model, kind.version, seconds), model.fingerprint,
                     kind.version, seconds)


def stamped(result: Result, model, analysis_version: int, seconds: float) -> Result:
    """`result` with where and how it was computed in its meta."""
    meta = dict(result.meta, model_fingerprint=model.fingerprint, analysis_version=analysis_version,
                device=model.device, dtype=model.dtype, compute_seconds=round(seconds, 4))
    return replace(result, meta=meta)
