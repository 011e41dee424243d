"""Helpers several test modules share (plain functions; fixtures live in conftest.py)."""
import json
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


def _elements(node):
    """Every element under an AppTest block, in page order."""
    children = getattr(node, "children", None)
    if children is None:
        yield node
        return
    for child in children.values():
        yield from _elements(child)


def _component_data(element, name: str):
    proto = getattr(element, "proto", None)
    if getattr(element, "type", None) == "bidi_component" and proto.component_name == name:
        return json.loads(proto.json)
    return None


def page_figures(at) -> list[dict]:
    """The plotly figures an AppTest page shows, in order, as plotly JSON: those the page's
    own component draws (`app/components/plot.py`) and any `st.plotly_chart` fallback."""
    found = []
    for element in _elements(at.main):
        data = _component_data(element, "workbench_plot")
        if data is not None:
            found.append(json.loads(data["figure"]))
        elif getattr(element, "type", None) == "plotly_chart":
            found.append(json.loads(element.proto.spec))
    return found


def copy_boxes(at) -> list[str]:
    """The texts of the page's copy boxes (share link, snippet), in order."""
    return [data["text"] for data in (_component_data(e, "workbench_copy") for e in _elements(at.main))
            if data is not None]
