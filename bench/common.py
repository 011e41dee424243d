"""What every benchmark row shares: the environment (set before `analyses` is imported),
timing, peak memory, the row format, and the models and prompts rows run on."""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# A worker subprocess (bench/model_size.py) shares its parent's folder through BENCH_TMP.
TMP = Path(os.environ.get("BENCH_TMP") or tempfile.mkdtemp(prefix="bench-"))
os.environ["BENCH_TMP"] = str(TMP)

# Before anything imports analyses: the random GPT-2-small-shaped model lives in TMP, and the
# cache rows use a store of their own.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's sweeps draw progress bars
os.environ["ANALYSES_MODEL_ROOTS"] = os.pathsep.join(
    [str(REPO_ROOT / "data" / "models"), str(REPO_ROOT), str(TMP),
     str(REPO_ROOT.parent / "shared" / "fixtures")])
os.environ["ANALYSES_CACHE"] = str(TMP / "cache.duckdb")

import torch  # noqa: E402

torch.set_num_threads(1)  # the machine is shared

from analyses.runtime import models  # noqa: E402

GPT2_SMALL = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257)
STORIES260K = REPO_ROOT.parent / "shared" / "fixtures" / "stories260K"


# --------------------------------------------------------------------------- measuring

def timed(fn, repeats: int = 3, warmup: int = 1, long_call_s: float = 5.0):
    """(median seconds over `repeats` calls after `warmup` calls, the last call's value).

    A call whose warm-up took over `long_call_s` is timed once: at that length noise is
    small against the call, and the whole run must fit 15 minutes on a slow machine."""
    value = None
    for _ in range(warmup):
        start = time.perf_counter()
        value = fn()
        if time.perf_counter() - start > long_call_s:
            repeats = min(repeats, 1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def timed_alternating(ours, reference, rounds: int = 7):
    """(median seconds of `ours`, of `reference`, ours' last value, the reference's last
    value): the two called in turn,
    after one warm-up each, so that a slow stretch of a shared machine hits both alike
    (for rows of a few milliseconds, where it otherwise decides the ratio)."""
    ours(), reference()
    mine, theirs = [], []
    value = expected = None
    for _ in range(rounds):
        start = time.perf_counter()
        value = ours()
        mine.append(time.perf_counter() - start)
        start = time.perf_counter()
        expected = reference()
        theirs.append(time.perf_counter() - start)
    return statistics.median(mine), statistics.median(theirs), value, expected


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _libc():
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


# glibc raises its mmap threshold each time a large block is freed, after which big tensors
# come from (and stay in) the heap: a second run would then reuse resident memory and show
# no peak. A fixed threshold of 128 KiB (M_MMAP_THRESHOLD = -3) keeps big blocks mmapped, so
# freeing them returns them to the system and each call's peak is its own. Only while memory
# is measured: every mmapped block costs page faults, which slowed a batched patching sweep
# by 1.7x (a one-row TransformerLens forward's small tensors stay in the heap), so timing
# rows run with glibc's own behaviour.
M_MMAP_THRESHOLD = -3


def _mmap_threshold(size: int) -> None:
    try:
        _libc().mallopt(M_MMAP_THRESHOLD, size)
    except (OSError, AttributeError):  # not glibc: peaks may read low after a warm-up
        pass


def peak_memory(fn):
    """(seconds, peak resident memory above the starting point in MiB, value) of one call.

    Linux resets the process's high-water mark (VmHWM) when 5 is written to
    /proc/self/clear_refs, so each call's own peak is measured in process; free heap
    memory is handed back first (malloc_trim) so it cannot hide the call's own."""
    _mmap_threshold(128 * 1024)
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = status_kib("VmRSS")
        start = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - start
        return seconds, max(0, status_kib("VmHWM") - before) / 1024, value
    finally:
        # glibc cannot go back to its sliding threshold; 32 MiB is where it slides to
        # (its maximum on 64-bit), so later timing rows see a heap like an unmeasured run's.
        _mmap_threshold(32 * 2**20)


def row(name, ours=None, reference=None, ratio=None, max_diff=None, target="", met=None,
        note=""):
    return dict(name=name, ours_s=ours, reference_s=reference, ratio=ratio, max_diff=max_diff,
                target=target, met=met, note=note)


# --------------------------------------------------------------------------- models

_MODELS: dict = {}


def embedded():
    return "default", models.load("default")


def gpt2_small_shape():
    """A random GPT-2-small-shaped model (weights saved under TMP, context 1024) with the
    embedded model's tokenizer; its vocabulary is 50257, bigger than the tokenizer's."""
    if "gpt2" not in _MODELS:
        import transformers as tf

        folder = TMP / "gpt2-small-shape"
        config = tf.GPT2Config(n_positions=1024, bos_token_id=0, eos_token_id=0, **GPT2_SMALL)
        torch.manual_seed(0)
        tf.GPT2LMHeadModel(config).save_pretrained(folder)
        tf.AutoTokenizer.from_pretrained(str(models.resolve("default").path)).save_pretrained(folder)
        _MODELS["gpt2"] = str(folder)
    return _MODELS["gpt2"], models.load(_MODELS["gpt2"])


def stories260k():
    """../shared/fixtures/stories260K's checkpoint, or None when this clone has no fixtures."""
    checkpoint = STORIES260K / "stories260K.bin"
    return (str(checkpoint), models.load(str(checkpoint))) if checkpoint.exists() else None


# --------------------------------------------------------------------------- prompts

def ioi_pair() -> dict:
    first = json.loads((REPO_ROOT / "data" / "prompts.json").read_text())["ioi"][0]
    return {k: first[k] for k in ("clean", "corrupted", "answer", "wrong")}


def n_tokens(bridge, text: str) -> int:
    return int(bridge.to_tokens(text, truncate=False).shape[1])  # TL would cut at n_ctx


def pair_of_length(bridge, length: int) -> dict:
    """The IOI pair of data/prompts.json brought to exactly `length` tokens (BOS included):
    cut or extended by a story after the names, the same in both prompts, so the prompts
    first differ early (about position 11), the least favourable case for our engine, which
    skips what lies before the first difference."""
    import numpy as np

    from analyses.embedded import corpus

    pair = ioi_pair()
    rng = np.random.default_rng(0)
    tail = ""
    while n_tokens(bridge, pair["clean"] + tail) < length:
        tail += " " + corpus.story(rng, 6)
    words = tail.split(" ")
    lo, hi = 0, len(words)  # the longest prefix of the tail that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if n_tokens(bridge, pair["clean"] + " ".join(words[:mid])) <= length:
            lo = mid
        else:
            hi = mid - 1
    tail = " ".join(words[:lo])
    filler = [" the", " a", " and", " it", " to"]
    while n_tokens(bridge, pair["clean"] + tail) < length:  # top up one short word at a time
        tail += filler[n_tokens(bridge, pair["clean"] + tail) % len(filler)]
    out = {**pair, "clean": pair["clean"] + tail, "corrupted": pair["corrupted"] + tail}
    for key in ("clean", "corrupted"):
        if n_tokens(bridge, out[key]) != length:
            raise RuntimeError(f"no {length}-token {key} prompt for this tokenizer")
    return out
