"""Speed and memory measured in one run: `python -m bench.run` (or `make bench`).

Every row times our code and a reference in the same process, one thread, with
`time.perf_counter` (one warm-up, then the median of 3 repeats unless a row says otherwise).
Ratios, not absolute times, are what the speed targets are about; the latency rows a user
feels (the CLI, the app's cold start) are absolute. The tests assert no speed targets.
Each row is independent: one that fails prints an error row and the run goes on.
`BENCH_ONLY=<substring>` runs only the rows whose name contains it (and leaves
`bench/results.json` alone). `make bench` runs every row but the slow growth rows (FULL_ONLY),
so that it fits 15 minutes; `make bench-full` (`BENCH_FULL=1`) runs those and writes
`bench/results-full.json`: the two runs together time every row (`bench/tiers.py`).
Rows: `bench/speed.py` (against TransformerLens, a forward pass, torch.mm), `bench/store_reads.py`
(the cache), `bench/scaling.py` (64-1024 tokens), `bench/app_rows.py`,
`bench/sparsity_rows.py`, `bench/probe_rows.py` (a probe sweep over layers), `bench/dictionaries.py`
(dictionary training).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import torch  # noqa: E402  (after bench.common set the environment)

from bench.common import TMP, embedded, gpt2_small_shape, ioi_pair, pair_of_length, stories260k
from bench.table import growth_table, table
from bench.tiers import selected

RESULTS = Path(__file__).resolve().parent / "results.json"
RESULTS_FULL = RESULTS.with_name("results-full.json")

def rows():
    """(name, thunk) per row or group of rows; a thunk builds what it needs, so one failing
    leaves the rest."""
    from bench import (
        app_rows,
        dictionaries,
        dictionary_rows,
        graph_rows,
        latent_rows,
        model_size,
        probe_rows,
        scaling,
        sparsity_rows,
        speed,
        store_reads,
    )

    def emb_patch(granularity):
        ref, model = embedded()
        return speed.patching_row("embedded", model, ref, ioi_pair(), granularity, 10)

    def gpt2_patch(granularity, length, sample=48):
        ref, model = gpt2_small_shape()
        # One warm-up where a row is the model's first patching: 64-token rows follow the
        # 16-token ones, and head_out_by_pos (12 s a sweep here) follows head_out.
        warmup = int(length == 16 and granularity != "head_out_by_pos")
        return speed.patching_row(f"GPT-2-small shape, {length} tokens", model, ref,
                                  pair_of_length(model.bridge, length), granularity, 3, sample,
                                  warmup=warmup)

    def stories_patch(granularity):
        found = stories260k()
        if found is None:
            raise FileNotFoundError("../shared/fixtures/stories260K is absent in this clone")
        ref, model = found
        pair = dict(clean="Once upon a time, Lily saw a cat. Lily gave the cat to",
                    corrupted="Once upon a time, Lily saw a cat. Tim gave the cat to",
                    answer=" Tim", wrong=" Lily")
        return speed.patching_row("stories260K", model, ref, pair, granularity, 10)

    def gpt2(fn, *args):
        ref, model = gpt2_small_shape()
        return fn("GPT-2-small shape", model, ref, *args)

    def emb(fn, *args):
        ref, model = embedded()
        return fn("embedded", model, ref, *args)

    gpt2_16 = lambda: pair_of_length(gpt2_small_shape()[1].bridge, 16)  # noqa: E731
    return [
        ("patching resid_pre, embedded", lambda: emb_patch("resid_pre")),
        ("patching head_out, embedded", lambda: emb_patch("head_out")),
        ("patching head_out_by_pos, embedded", lambda: emb_patch("head_out_by_pos")),
        ("patching resid_pre, stories260K", lambda: stories_patch("resid_pre")),
        ("patching head_out, stories260K", lambda: stories_patch("head_out")),
        ("patching resid_pre, GPT-2-small shape, 16 tokens", lambda: gpt2_patch("resid_pre", 16)),
        ("patching head_out, GPT-2-small shape, 16 tokens", lambda: gpt2_patch("head_out", 16)),
        ("patching head_out_by_pos, GPT-2-small shape, 16 tokens",
         lambda: gpt2_patch("head_out_by_pos", 16)),
        ("patching resid_pre, GPT-2-small shape, 64 tokens", lambda: gpt2_patch("resid_pre", 64, 24)),
        ("patching head_out, GPT-2-small shape, 64 tokens", lambda: gpt2_patch("head_out", 64, 24)),
        ("attribution patching, embedded", lambda: emb(speed.attribution_rows, ioi_pair())),
        ("attribution patching, GPT-2-small shape",
         lambda: gpt2(speed.attribution_rows, gpt2_16())),
        ("logit lens, embedded", lambda: emb(speed.logit_lens_row, ioi_pair()["clean"])),
        ("logit lens, GPT-2-small shape", lambda: gpt2(speed.logit_lens_row, gpt2_16()["clean"])),
        ("logit lens window, GPT-2-small shape",
         lambda: gpt2(speed.logit_lens_row, pair_of_length(gpt2_small_shape()[1].bridge, 256)["clean"], 24)),
        ("head detectors, embedded", lambda: emb(speed.heads_row)),
        ("head detectors, GPT-2-small shape",  # retrieval: measured on the embedded model
         lambda: gpt2(speed.heads_row, "previous_token,duplicate_token,induction")),
        ("neuron atlas, embedded", lambda: emb(speed.neurons_row)),
        ("neuron atlas, GPT-2-small shape", lambda: gpt2(speed.neurons_row, 0)),  # one layer:
        # all 12 are 2.8 TFLOP, about 30 s a run here, and the rate is what the row is about
        ("cache, embedded", lambda: store_reads.stored_result_rows("embedded", "default", ioi_pair(), "all")),
        ("cache, GPT-2-small shape",
         lambda: store_reads.stored_result_rows("GPT-2-small shape", gpt2_small_shape()[0], gpt2_16())),
        ("prompt set, embedded", speed.prompt_set_row),
        ("prompt set, attribution patching, embedded", lambda: speed.set_kind_row("attribution_patching")),
        ("prompt set, DLA, embedded", lambda: speed.set_kind_row("dla")),
        ("prompt set, logit lens, embedded", lambda: speed.set_kind_row("logit_lens")),
        ("ablation sweep, embedded", speed.ablation_sweep_row),
        ("attention, embedded", lambda: emb(speed.attention_row, ioi_pair()["clean"])),
        ("attention, GPT-2-small shape", lambda: gpt2(speed.attention_row, gpt2_16()["clean"])),
        ("steering, embedded", lambda: emb(speed.steering_row, "The capital of France is")),
        ("steering, GPT-2-small shape",
         lambda: gpt2(speed.steering_row, pair_of_length(gpt2_small_shape()[1].bridge, 64)["clean"], 32, 5)),
        ("circuit, embedded", lambda: emb(speed.circuit_rows, ioi_pair())),
        ("circuit, GPT-2-small shape", lambda: gpt2(speed.circuit_rows, gpt2_16())),
        ("knockout, embedded", lambda: emb(speed.knockout_row, "The capital of France is", "France")),
        ("knockout, GPT-2-small shape",
         lambda: gpt2(speed.knockout_row, "The capital of France is", "France")),
        ("dictionary training, embedded", lambda: emb(dictionaries.training_rows)),
        ("scaling, GPT-2-small shape", lambda: scaling.scaling_rows(gpt2_small_shape()[0])),
        ("model size, 64 tokens", model_size.model_size_rows),
        ("cli: fresh-process answers", app_rows.cli_rows),
        ("app: cold start", app_rows.cold_start_rows),
        ("app: cached share link", app_rows.cached_link_row),
        ("app: cached link in a fresh browser", app_rows.cached_link_browser_row),
        ("AtP over dictionary latents, embedded", lambda: emb(latent_rows.latent_attribution_rows, ioi_pair())),
        ("features, embedded", lambda: emb(dictionary_rows.features_row, ioi_pair()["clean"])),
        ("prompt set, features, embedded",
         lambda: speed.set_kind_row("features", dictionary="blocks.1.hook_resid_post")),
        ("latent index, embedded", lambda: emb(dictionary_rows.index_row)),
        ("sparsity, embedded", lambda: emb(sparsity_rows.sparsity_row)),
        ("graph, embedded", lambda: emb(graph_rows.graph_row)),
        ("probe, embedded", lambda: emb(probe_rows.probe_sweep_row)),
        ("probe, GPT-2-small shape", lambda: gpt2(probe_rows.probe_sweep_row)),
    ]


def main() -> int:
    from bench.common import row

    started = time.perf_counter()
    results = []
    only = os.environ.get("BENCH_ONLY", "")  # a substring of row names, for a quick check
    full = os.environ.get("BENCH_FULL") == "1"
    for name, thunk in rows():
        if not selected(name, only, full):
            continue
        t0 = time.perf_counter()
        try:
            out = thunk()
            results.extend(out if isinstance(out, list) else [out])
        except Exception as err:  # noqa: BLE001 - one failing row must not stop the run
            traceback.print_exc(file=sys.stderr)
            results.append({**row(name), "error": f"{type(err).__name__}: {err}"})
        print(f"[{time.perf_counter() - t0:6.1f} s] {name}", file=sys.stderr, flush=True)
    text = table(results)
    print(text)
    growth = growth_table(results)
    if growth:
        print("\n" + growth)
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s; torch {torch.__version__}, {torch.get_num_threads()} thread, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    if only:
        print(f"BENCH_ONLY={only!r}: {RESULTS.name} left as it was")
        return 0
    (RESULTS_FULL if full else RESULTS).write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "total_s": total, "full": full, "rows": results,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:  # the random GPT-2-small-shaped model takes 0.5 GB
        shutil.rmtree(TMP, ignore_errors=True)
