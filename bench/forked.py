"""One call in a forked child process: it starts from the parent's state (a loaded model,
warmed-up code) but allocates, peaks and exits on its own, so a memory figure measured in it
is its own and not what earlier calls left in the allocator."""
from __future__ import annotations

import json
import os


def in_a_fork(fn) -> dict:
    """fn() run in a forked child; its JSON-able value comes back through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, leave without running the parent's exit code
        os.close(read_end)
        try:
            out = json.dumps(fn())
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
            out = json.dumps({"error": f"{type(err).__name__}: {err}"})
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(out)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    value = json.loads(text) if text else {"error": "the measuring process died (out of memory?)"}
    if "error" in value:
        raise RuntimeError(value["error"])
    return value
