"""Load the model stack in the background once the first page is on screen.

Pages draw without torch (the catalogue, specs, links and cached results need none of it), so
the home page and every form appear in a second or two. torch, transformers and
TransformerLens then take 6–10 s to import on a small CPU: started here, right after the
first page is drawn, they are usually ready by the time a user presses Run. Set
`ANALYSES_APP_WARMUP=0` to load them only on the first run instead (the tests do: they import
transformers from threads of their own). The import holds `analyses.runtime.stack`'s lock,
which every job takes first, so a job never meets a half-imported transformers.
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("app")
ENV = "ANALYSES_APP_WARMUP"
_started = threading.Event()


def warm_up_in_background() -> None:
    """Start importing the model stack once per process (later calls do nothing)."""
    if os.environ.get(ENV, "1").strip() == "0" or _started.is_set():
        return
    _started.set()
    threading.Thread(target=_import_model_stack, name="warm-up", daemon=True).start()


def _import_model_stack() -> None:
    from analyses.runtime.stack import import_model_stack

    try:
        import_model_stack()  # under the lock every job's execute() takes too
    except Exception:  # noqa: BLE001 - the first run will import them again and say what fails
        log.exception("background import of the model stack failed")
