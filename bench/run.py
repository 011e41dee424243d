"""Speed ratios measured in one run: `python -m bench.run` (or `make bench`).

Every row times our code and a reference in the same process, one thread, with
`time.perf_counter`: one warm-up, then the median of 3 repeats. The whole run takes about
7 minutes on a 2-core CPU. Ratios, not absolute times, are what the targets are about; the
tests never assert on time. Each row is independent: one that fails prints an error row and
the run goes on. `BENCH_ONLY=<substring>` runs only the rows whose name contains it.
Writes `bench/results.json`.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"
TMP = Path(tempfile.mkdtemp(prefix="bench-"))

# Before anything imports analyses: the random GPT-2-small-shaped model lives in TMP, and the
# cache rows use a store of their own.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's sweeps draw progress bars
os.environ["ANALYSES_MODEL_ROOTS"] = os.pathsep.join(
    [str(REPO_ROOT / "data" / "models"), str(REPO_ROOT), str(TMP)])
os.environ["ANALYSES_CACHE"] = str(TMP / "cache.duckdb")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # the machine is shared

from analyses import AnalysisSpec, compute, models  # noqa: E402
from analyses import activation_patching, logit_lens, neurons  # noqa: E402

GPT2_SMALL = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257)
PROMPT_TOKENS = 16  # GPT-2-small-shaped rows: prompts of 16 tokens (BOS included)


# --------------------------------------------------------------------------- timing

def timed(fn, repeats: int = 3, warmup: int = 1):
    """(median seconds over `repeats` calls after `warmup` calls, the last call's value)."""
    value = None
    for _ in range(warmup):
        value = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def row(name, ours=None, reference=None, ratio=None, max_diff=None, target="", met=None,
        note=""):
    return dict(name=name, ours_s=ours, reference_s=reference, ratio=ratio, max_diff=max_diff,
                target=target, met=met, note=note)


# --------------------------------------------------------------------------- models

def ioi_pair() -> dict:
    first = json.loads((REPO_ROOT / "data" / "prompts.json").read_text())["ioi"][0]
    return {k: first[k] for k in ("clean", "corrupted", "answer", "wrong")}


_GPT2 = {}


def gpt2_small_shape():
    """A random GPT-2-small-shaped model (its weights saved under TMP) with the embedded
    model's tokenizer; its vocabulary is 50257, bigger than the tokenizer's."""
    if "model" not in _GPT2:
        import transformers as tf

        folder = TMP / "gpt2-small-shape"
        config = tf.GPT2Config(n_positions=256, bos_token_id=0, eos_token_id=0, **GPT2_SMALL)
        torch.manual_seed(0)
        tf.GPT2LMHeadModel(config).save_pretrained(folder)
        embedded = models.resolve("default").path
        tf.AutoTokenizer.from_pretrained(str(embedded)).save_pretrained(folder)
        _GPT2["folder"] = folder
        _GPT2["model"] = models.load(str(folder))
    return _GPT2["folder"], _GPT2["model"]


def sixteen_token_pair(bridge) -> dict:
    """An IOI pair from data/prompts.json whose prompts are PROMPT_TOKENS tokens long, or
    the first pair with words added in front until it is (same words in both)."""
    pairs = json.loads((REPO_ROOT / "data" / "prompts.json").read_text())["ioi"]
    length = lambda text: int(bridge.to_tokens(text).shape[1])  # noqa: E731
    for p in pairs:
        if length(p["clean"]) == PROMPT_TOKENS == length(p["corrupted"]):
            return {k: p[k] for k in ("clean", "corrupted", "answer", "wrong")}
    pair = ioi_pair()
    while length(pair["clean"]) < PROMPT_TOKENS:
        pair = {**pair, "clean": "Then " + pair["clean"], "corrupted": "Then " + pair["corrupted"]}
    if length(pair["clean"]) != PROMPT_TOKENS or length(pair["corrupted"]) != PROMPT_TOKENS:
        raise RuntimeError(f"no IOI pair of {PROMPT_TOKENS} tokens for this tokenizer")
    return pair


# --------------------------------------------------------------------------- rows

TL_SWEEPS = {"resid_pre": ("get_act_patch_resid_pre", ["layer", "position"]),
             "head_out": ("get_act_patch_attn_head_out_all_pos", ["layer", "head"])}


def patching_row(label, model, ref, pair, granularity, target_ratio, repeats_ref=3, warmup_ref=1):
    """Ours vs TransformerLens's one-forward-per-cell sweep, compared as in
    tests/test_activation_patching.py: the raw logit difference, atol 1e-5."""
    from transformer_lens import patching as tl_patching

    bridge = model.bridge
    spec = AnalysisSpec(kind="activation_patching", model=ref, granularity=granularity, **pair)
    t_ours, result = timed(lambda: activation_patching.run(model, spec))
    tl_pair = activation_patching.prompt_pair(bridge, spec)
    sweep_name, axes = TL_SWEEPS[granularity]
    sweep = getattr(tl_patching, sweep_name)

    def metric(logits):
        return logits[0, -1, tl_pair.answer] - logits[0, -1, tl_pair.wrong]

    def reference():
        with torch.no_grad():
            _, clean_cache = bridge.run_with_cache(tl_pair.clean)
            return sweep(bridge, tl_pair.corrupted, clean_cache, metric)

    t_ref, expected = timed(reference, repeats=repeats_ref, warmup=warmup_ref)
    got = result.tables["effects"].set_index(axes).raw.unstack().to_numpy()
    diff = float(np.abs(got - expected.numpy()).max())
    ratio = t_ref / t_ours
    note = f"{int(tl_pair.clean.shape[1])} tokens"
    if (repeats_ref, warmup_ref) != (3, 1):
        note += f"; reference: {repeats_ref} run(s) after {warmup_ref} warm-up"
    return row(f"patching {granularity}, {label}", t_ours, t_ref, ratio, diff,
               f">= {target_ratio}x, abs diff <= 1e-5", ratio >= target_ratio and diff <= 1e-5, note)


def logit_lens_row(label, model, ref, prompt):
    bridge = model.bridge
    spec = AnalysisSpec(kind="logit_lens", model=ref, prompt=prompt, top_k=10)
    t_ours, _ = timed(lambda: logit_lens.run(model, spec))
    tokens = bridge.to_tokens(prompt)

    def forward():
        with torch.no_grad():
            return bridge.run_with_cache(tokens)

    t_fwd, _ = timed(forward)
    ratio = t_ours / t_fwd
    return row(f"logit lens (all layers x positions, top-10), {label}", t_ours, t_fwd, ratio,
               None, "<= 1.5x a forward", ratio <= 1.5,
               f"{int(tokens.shape[1])} tokens; reference = one run_with_cache")


def cache_row():
    spec = AnalysisSpec(kind="activation_patching", model="default", granularity="resid_pre",
                        **ioi_pair())
    stored = compute(spec)  # stores it (the store is a fresh file under TMP)
    t_hit, hit = timed(lambda: compute(spec))
    t_miss, fresh = timed(lambda: compute(spec, cache=False))
    diff = float(np.abs(hit.tables["effects"].raw.to_numpy()
                        - fresh.tables["effects"].raw.to_numpy()).max())
    del stored
    ratio = t_miss / t_hit
    return row("cache: stored activation_patching result vs computing it, embedded", t_hit,
               t_miss, ratio, diff, ">= 50x", ratio >= 50,
               "ANALYSES_CACHE = a temp file; reference = compute(cache=False)")


def neurons_row(label, model, ref, layer=None):
    """Achieved GFLOP/s of the atlas (2 * neurons * d_model * d_vocab / time) against
    torch.mm on the same shapes, in the atlas's own chunks, in the same run."""
    bridge = model.bridge
    spec = AnalysisSpec(kind="neurons", model=ref, layer=layer)
    t_ours, result = timed(lambda: neurons.run(model, spec))
    n = int(result.meta["neurons"])
    d_model, d_vocab = bridge.W_U.shape
    chunk = neurons.chunk_size(d_vocab)
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(n, d_model, generator=gen)
    w_u = torch.randn(d_model, d_vocab, generator=gen)

    def mm():
        out = None
        for start in range(0, n, chunk):
            out = torch.mm(rows[start:start + chunk], w_u)
        return out

    t_mm, _ = timed(mm)
    flops = 2.0 * n * d_model * d_vocab
    ours_rate, mm_rate = flops / t_ours / 1e9, flops / t_mm / 1e9
    ratio = ours_rate / mm_rate
    scope = "all neurons" if layer is None else f"layer {layer}"
    return row(f"neuron atlas, {label}", t_ours, t_mm, ratio, None, ">= 50% of torch.mm GFLOP/s",
               ratio >= 0.5,
               f"{n} neurons ({scope}), {d_model}x{d_vocab}: {ours_rate:.1f} vs "
               f"{mm_rate:.1f} GFLOP/s; ratio = ours/mm rate")


def rows():
    """(name, thunk) per row; a thunk builds what it needs, so one failing leaves the rest."""
    def embedded():
        return "default", models.load("default")

    def gpt2():
        folder, model = gpt2_small_shape()
        return str(folder), model

    def emb_patch(granularity):
        ref, model = embedded()
        return patching_row("embedded", model, ref, ioi_pair(), granularity, 10)

    def gpt2_patch(granularity):
        ref, model = gpt2()
        return patching_row("GPT-2-small shape", model, ref, sixteen_token_pair(model.bridge),
                            granularity, 3)

    def emb_lens():
        ref, model = embedded()
        return logit_lens_row("embedded", model, ref, ioi_pair()["clean"])

    def gpt2_lens():
        ref, model = gpt2()
        return logit_lens_row("GPT-2-small shape", model, ref,
                              sixteen_token_pair(model.bridge)["clean"])

    def emb_neurons():
        ref, model = embedded()
        return neurons_row("embedded", model, ref)

    def gpt2_neurons():
        ref, model = gpt2()
        return neurons_row("GPT-2-small shape", model, ref)

    return [
        ("patching resid_pre, embedded", lambda: emb_patch("resid_pre")),
        ("patching head_out, embedded", lambda: emb_patch("head_out")),
        ("patching resid_pre, GPT-2-small shape", lambda: gpt2_patch("resid_pre")),
        ("patching head_out, GPT-2-small shape", lambda: gpt2_patch("head_out")),
        ("logit lens, embedded", emb_lens),
        ("logit lens, GPT-2-small shape", gpt2_lens),
        ("cache, embedded", cache_row),
        ("neuron atlas, embedded", emb_neurons),
        ("neuron atlas, GPT-2-small shape", gpt2_neurons),
    ]


# --------------------------------------------------------------------------- output

def _num(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, float) and (value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4)):
        return f"{value:.1e}"
    return f"{value:.{digits}g}"


def table(results) -> str:
    head = ("name", "ours (s)", "reference (s)", "ratio", "max abs diff", "target", "met")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        met = "error" if r.get("error") else ("yes" if r["met"] else "no")
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3g}" + (
            "" if r["name"].startswith("neuron") else "x")
        cells = (r["name"], _num(r["ours_s"]), _num(r["reference_s"]), ratio,
                 _num(r["max_diff"], 2), r["target"], met)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['name']}: {r.get('error') or r['note']}" for r in results
             if r.get("error") or r["note"]]
    return "\n".join(lines + ([""] + notes if notes else []))


def main() -> int:
    started = time.perf_counter()
    results = []
    only = os.environ.get("BENCH_ONLY", "")  # a substring of row names, for a quick check
    for name, thunk in rows():
        if only and only not in name:
            continue
        t0 = time.perf_counter()
        try:
            results.append(thunk())
        except Exception as err:  # one failing row must not stop the run
            traceback.print_exc(file=sys.stderr)
            results.append({**row(name), "error": f"{type(err).__name__}: {err}"})
        print(f"[{time.perf_counter() - t0:6.1f} s] {name}", file=sys.stderr, flush=True)
    text = table(results)
    print(text)
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s; torch {torch.__version__}, {torch.get_num_threads()} thread, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    if only:
        print(f"BENCH_ONLY={only!r}: {RESULTS.name} left as it was")
        return 0
    RESULTS.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "total_s": total, "rows": results,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:  # the random GPT-2-small-shaped model takes 0.5 GB
        shutil.rmtree(TMP, ignore_errors=True)
