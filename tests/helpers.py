"""Helpers several test modules share (plain functions; fixtures live in conftest.py)."""
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd

from analyses import AnalysisSpec

REPO = Path(__file__).resolve().parents[1]


def lens_spec(model_dir, prompt="When Mary and John went to the store, John gave a drink to"):
    return AnalysisSpec(kind="logit_lens", model=str(model_dir), prompt=prompt, top_k=3, token=" Mary")


def assert_same_result(a, b):
    assert a.spec == b.spec
    assert set(a.tables) == set(b.tables)
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name].reset_index(drop=True),
                                      b.tables[name].reset_index(drop=True), check_dtype=False)


def run_python(code: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                            env=dict(os.environ, HF_HUB_OFFLINE="1", **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, line: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = proc.stdout.readline()
        if got.strip() == line:
            return
        if proc.poll() is not None:
            raise AssertionError(f"helper process ended: {proc.stderr.read()}")
    raise AssertionError(f"no {line!r} from the helper process within {seconds} s")


def run_concurrently(fn, args_list):
    results, errors = [None] * len(args_list), []
    barrier = threading.Barrier(len(args_list))

    def call(i, args):
        barrier.wait()
        try:
            results[i] = fn(*args)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=call, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results
