"""Import the model stack (torch, transformers, TransformerLens) once, from one thread at a time.

`transformers` resolves most of its names lazily, on first attribute access; two threads
doing that first import at once can see a half-initialised module (an AttributeError for
`transformers.AutoModelForCausalLM`, seen when the app's background warm-up raced a job).
Every path that needs the stack — the app's warm-up, `execute()` before it loads a model —
goes through `import_model_stack()`, which holds a lock for the duration; later calls return
at once.
"""
from __future__ import annotations

import threading

from analyses.runtime.offline import ensure_offline_if_unreachable

_LOCK = threading.Lock()
_imported = threading.Event()


def import_model_stack() -> None:
    if _imported.is_set():
        return
    with _LOCK:
        if _imported.is_set():
            return
        ensure_offline_if_unreachable()  # before transformers reads HF_HUB_OFFLINE, once
        import torch  # noqa: F401
        import transformers
        from transformer_lens.model_bridge import TransformerBridge  # noqa: F401

        transformers.AutoModelForCausalLM, transformers.AutoTokenizer  # noqa: B018 - resolve the lazy names now
        _imported.set()
