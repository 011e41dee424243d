"""`compute(spec)`: the one entry point that turns an analysis spec into a result.

Until the DuckDB store and the worker land (their own issue), `cache` is
accepted and ignored: every call computes, in this process.
"""
from __future__ import annotations

import time
from dataclasses import replace

from . import models
from .progress import Progress, silent
from .registry import analysis_for
from .result import Result
from .spec import AnalysisSpec


def compute(spec: AnalysisSpec, cache: bool = True, progress: Progress = silent,
            device: str | None = None, dtype: str = "float32") -> Result:
    analysis = analysis_for(spec.kind)
    progress(0.0, f"loading model {spec.model}")
    model = models.load(spec.model, device=device, dtype=dtype)
    started = time.perf_counter()
    result = analysis.run(model, spec, progress)
    meta = dict(result.meta, model_fingerprint=model.fingerprint, analysis_version=analysis.version,
                device=model.device, dtype=model.dtype,
                compute_seconds=round(time.perf_counter() - started, 4))
    return replace(result, meta=meta)
