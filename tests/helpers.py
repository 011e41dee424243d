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


def save_non_additive_model(arch: str, out: Path) -> Path:
    """A tiny random model whose heads do not write `z @ W_O` straight into the residual
    stream: "gemma2" normalises the attention output before the residual add (a
    post-attention norm), "granite" scales it (`residual_multiplier`)."""
    import transformers as tf

    from conftest import randomize_, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    shape = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                 bos_token_id=0, eos_token_id=0, pad_token_id=0)
    config = {"gemma2": lambda: tf.Gemma2Config(head_dim=8, **shape),
              "granite": lambda: tf.GraniteConfig(residual_multiplier=0.5, **shape)}[arch]()
    model = tf.AutoModelForCausalLM.from_config(config)
    randomize_(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
