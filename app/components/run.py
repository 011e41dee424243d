"""Run an analysis for a page: `compute(spec)` behind a progress bar, errors shown kindly.

`compute` hands the spec to the worker (or answers from the store) and, while it waits,
calls the progress callback from this script thread, which moves an `st.progress` bar.
A `UserError` (bad spec, unknown model, too long a prompt, a busy worker) is shown as the
message it carries; anything else as one short line (the traceback goes to the server
log, never to the page).

Results are also kept for this browser session under their content key (model
fingerprint, analysis version, inputs), so a rerun of the page (a download click, a
widget edit) draws at once, without even a store lookup's progress flash.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict

import streamlit as st

from analyses import AnalysisSpec, Result, compute
from analyses.core.errors import UserError
from analyses.runtime.jobs import TIME_LIMIT_ENV
from analyses.runtime.service import cached, result_key
from app.components.display import md_escape, without_server_paths
from app.components.model_picker import LAST_META_KEY

log = logging.getLogger("app")
RESULTS_KEY = "_results"  # session state: OrderedDict content key -> Result, most recent last
KEPT_RESULTS = 4
# A page waits at most this long (seconds) for a job: never an endless spinner. The job
# goes on in the worker and stores its result, so reopening the link later shows it.
WAIT_S = float(os.environ.get("ANALYSES_APP_WAIT_S", "600"))
# Each job may run this long (seconds) in the app unless the operator set ANALYSES_JOB_TIME_LIMIT
# (0: none; headless compute has none by default): one visitor's link must not hold a model
# for hours. Below WAIT_S, so a visitor still waiting is told the job was stopped, and why.
APP_JOB_TIME_LIMIT_S = 540.0
os.environ.setdefault(TIME_LIMIT_ENV, f"{APP_JOB_TIME_LIMIT_S:g}")  # the worker reads it per job


def run_spec(spec: AnalysisSpec, cache: bool = True) -> Result | None:
    """The result of `spec` (kept from this session, or computed now), or None after an
    error has been shown."""
    kept: OrderedDict = st.session_state.setdefault(RESULTS_KEY, OrderedDict())
    key = _guarded(spec, lambda: result_key(spec))  # the model's fingerprint: no load
    if key is None:
        return None
    if key in kept:
        kept.move_to_end(key)
        return kept[key]
    result = (_guarded(spec, lambda: cached(spec)) if cache else None) or _compute(spec, cache)
    if result is not None:
        kept[key] = result
        while len(kept) > KEPT_RESULTS:
            kept.popitem(last=False)
        st.session_state[LAST_META_KEY] = {"model": spec.model, **result.meta}
    return result


def _compute(spec: AnalysisSpec, cache: bool) -> Result | None:
    bar = st.progress(0.0, text="Starting…")
    owner = threading.current_thread()

    def progress(fraction: float, message: str) -> None:
        if threading.current_thread() is not owner:
            return  # only the script thread may draw; `compute` reports from it
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=md_escape(message))

    try:
        return _guarded(spec, lambda: compute(spec, cache=cache, progress=progress, timeout=WAIT_S))
    finally:
        bar.empty()


def _guarded(spec: AnalysisSpec, call):
    """`call()`, or None after showing its error as a short message."""
    try:
        return call()
    except UserError as err:
        st.error(md_escape(without_server_paths(str(err))), icon=":material/error:")
    except TimeoutError as err:
        st.warning(md_escape(f"{err}. Reopen this link later to see it."), icon=":material/schedule:")
    except Exception as err:  # noqa: BLE001 - a page must never show a traceback
        log.exception("analysis failed for %s", spec.to_query())
        first_line = (str(err).strip().splitlines() or [""])[0][:300]
        st.error(md_escape(f"The analysis failed unexpectedly ({type(err).__name__}: "
                           f"{first_line}). The server log has the details."),
                 icon=":material/error:")
    return None
