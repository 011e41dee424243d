"""Growth with model size: each analysis at 64 tokens on randomly initialised models of real
shapes (GPT-2 small, GPT-2 medium, a Llama-family shape of about 1B parameters), each
(shape, analysis) in a fresh subprocess, so that its peak memory is its own and not what an
earlier row left in the allocator.

The worker (`python -m bench.model_size <model dir> <analysis>:<tokens> ...`) loads the
model, runs each analysis once on a 16-token pair (one-time setup: lazy imports, first
allocations), then measures each job in a process forked from that state: seconds, the
call's own peak resident memory above its start, and the process's peak (weights included),
printed as one JSON line. The parent fits
time and memory against parameter count on log-log axes and extrapolates the process peak to
this machine's memory: the largest model each analysis fits in fp32 (bf16 halves the weights).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.common import REPO_ROOT, TMP, gpt2_small_shape, pair_of_length, peak_memory, row, status_kib
from bench.fitting import fit, largest_fitting
from bench.forked import in_a_fork

LENGTH = 64
# name -> (architecture, config): real shapes with random weights. The Llama shape is
# TinyLlama's width with 16 layers and one key/value head per query head (0.95B parameters);
# grouped-query attention would shut out the circuit row (TransformerLens's edge graph too).
SHAPES = {
    "GPT-2 small": ("gpt2", dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257,
                                 n_positions=1024)),
    "GPT-2 medium": ("gpt2", dict(n_layer=24, n_embd=1024, n_head=16, vocab_size=50257,
                                  n_positions=1024)),
    "Llama 1B": ("llama", dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
                               num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                               max_position_embeddings=2048)),
}
ANALYSES = ("logit_lens", "activation_patching", "attribution_patching", "dla", "attention",
            "steering", "circuit")
# What each row runs, for the notes and the README.
WHAT = {
    "logit_lens": "logit lens, top-10 at every layer and position",
    "activation_patching": "activation patching, head_out of the last layer",
    "attribution_patching": "attribution patching, AtP on every node",
    "dla": "direct logit attribution",
    "attention": "attention patterns of the last layer",
    "steering": "steering: a mean_diff vector at the middle layer, coefficients 0 and 1, "
                "8 new tokens each",
    "circuit": "circuit: EAP edge scores (one faithfulness point costs 2-3 forwards more)",
}


# --------------------------------------------------------------------------- the worker

def _spec(kind: str, ref: str, pair: dict, n_layers: int, warm_up: bool = False):
    from analyses import AnalysisSpec

    last = n_layers - 1
    if kind == "logit_lens":
        return AnalysisSpec(kind=kind, model=ref, prompt=pair["clean"], top_k=10)
    if kind == "activation_patching":
        return AnalysisSpec(kind=kind, model=ref, granularity="head_out", layer=last, **pair)
    if kind == "attribution_patching":
        return AnalysisSpec(kind=kind, model=ref, exact=False, **pair)
    if kind == "dla":
        return AnalysisSpec(kind=kind, model=ref, prompt=pair["clean"], answer=pair["answer"],
                            wrong=pair["wrong"])
    if kind == "attention":
        return AnalysisSpec(kind=kind, model=ref, prompt=pair["clean"], layer=last)
    if kind == "steering":
        return AnalysisSpec(kind=kind, model=ref, prompt=pair["clean"], positive="Love",
                            negative="Hate", layer=str(n_layers // 2), coeff="0,1",
                            max_new_tokens=2 if warm_up else 8)
    raise KeyError(kind)


def _runner(kind: str, model, ref: str, n_layers: int):
    """(pair, warm_up) -> one run of `kind` at that pair's length."""
    if kind == "circuit":
        from analyses import AnalysisSpec
        from analyses.kinds.circuits import scores
        from analyses.kinds.circuits.graph import edge_hooks, graph_of
        from analyses.kinds.patching.engine import logit_diff, prompt_pair

        graph = graph_of(model.bridge)

        def eap(pair, warm_up=False):
            tokens = prompt_pair(model.bridge, AnalysisSpec(kind="circuit", model=ref, **pair))
            with edge_hooks(model.bridge):
                return scores.eap(model.bridge, graph, tokens.clean, tokens.corrupted,
                                  lambda logits: logit_diff(logits, tokens.answer, tokens.wrong))
        return eap
    import importlib

    run = importlib.import_module(f"analyses.kinds.{kind}").run
    return lambda pair, warm_up=False: run(model, _spec(kind, ref, pair, n_layers, warm_up))


def measure_jobs(model_dir: str, jobs: list[tuple[str, int]]) -> list[dict]:
    """Each (analysis, length) of `jobs` measured in a process of its own, forked from this
    one once it has loaded the model and run each analysis on 16 tokens (one-time setup:
    lazy imports, first allocations): seconds, the call's own peak and the process's peak in
    MiB. A fork starts from the same warmed state, so no measurement sees another's
    leftovers, and the model loads once for all of them."""
    from analyses.runtime import models

    model = models.load(model_dir)
    _make_resident(model.bridge)
    n_layers = int(model.bridge.cfg.n_layers)
    runners = {kind: _runner(kind, model, model_dir, n_layers) for kind, _ in jobs}
    warm = pair_of_length(model.bridge, 16)
    for run in runners.values():
        run(warm, warm_up=True)
    pairs = {length: pair_of_length(model.bridge, length) for _, length in jobs}
    return [in_a_fork(lambda kind=kind, length=length: _measure(runners[kind], pairs[length]))
            for kind, length in jobs]


def _make_resident(module) -> None:
    """Copy the weights into anonymous memory. Loaded from safetensors they are mapped from
    the file, and a forked child's page tables leave such pages out: the child would count
    the weights as its own when it first reads them. Copied, a child starts with them
    resident, as a server that has run once has them."""
    import torch

    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            tensor.data = tensor.data.clone()


def _measure(run, pair) -> dict:
    loaded = status_kib("VmRSS") / 1024
    seconds, peak, _ = peak_memory(lambda: run(pair))
    return dict(seconds=seconds, peak_mib=peak, loaded_mib=loaded, process_peak_mib=loaded + peak)


# --------------------------------------------------------------------------- the parent

def _config(name: str):
    import transformers as tf

    arch, config = SHAPES[name]
    if arch == "gpt2":
        return tf.GPT2LMHeadModel, tf.GPT2Config(bos_token_id=0, eos_token_id=0, **config)
    return tf.LlamaForCausalLM, tf.LlamaConfig(bos_token_id=0, eos_token_id=0,
                                                tie_word_embeddings=False, **config)


def parameter_count(name: str) -> int:
    """The shape's parameters, tied ones once (counted on the meta device: no memory)."""
    import torch

    cls, cfg = _config(name)
    with torch.device("meta"):
        return int(cls(cfg).num_parameters())


def build(name: str) -> tuple[str, int]:
    """(the saved model's folder, its parameter count): random weights, seed 0, with the
    embedded model's tokenizer (its ids all lie inside each shape's vocabulary)."""
    import torch
    import transformers as tf

    from analyses.runtime import models

    if name == "GPT-2 small":  # the scaling rows' model (the same shape and seed)
        return gpt2_small_shape()[0], parameter_count(name)
    folder = TMP / ("size-" + name.lower().replace(" ", "-"))
    cls, cfg = _config(name)
    torch.manual_seed(0)
    model = cls(cfg)
    model.save_pretrained(folder)
    del model
    tf.AutoTokenizer.from_pretrained(str(models.resolve("default").path)).save_pretrained(folder)
    return str(folder), parameter_count(name)


_MEASURED: dict[tuple[str, str, int], dict] = {}


def fresh_processes(model_dir: str, jobs: list[tuple[str, int]], timeout_s: float = 600) -> list[dict]:
    """`measure_jobs` in a new Python process, memoised (the scaling rows and these share
    the GPT-2-small shape at 64 tokens)."""
    todo = [job for job in jobs if (model_dir, *job) not in _MEASURED]
    if todo:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        done = subprocess.run([sys.executable, "-m", "bench.model_size", model_dir,
                               *(f"{kind}:{length}" for kind, length in todo)],
                              capture_output=True, text=True, timeout=timeout_s, env=env,
                              cwd=REPO_ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{todo} on {model_dir}: {done.stderr.strip().splitlines()[-1:]}")
        for job, value in zip(todo, json.loads(done.stdout.strip().splitlines()[-1])):
            _MEASURED[(model_dir, *job)] = value
    return [_MEASURED[(model_dir, *job)] for job in jobs]


def machine_memory_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    raise KeyError("MemTotal")


def model_size_rows() -> list[dict]:
    built = {name: build(name) for name in SHAPES}
    measured = {name: dict(zip(ANALYSES, fresh_processes(folder, [(k, LENGTH) for k in ANALYSES])))
                for name, (folder, _) in built.items()}
    memory = machine_memory_mib()
    rows = []
    for kind in ANALYSES:
        points = {name: measured[name][kind] for name in SHAPES}
        params = [built[name][1] for name in SHAPES]
        times = [points[name]["seconds"] for name in SHAPES]
        peaks = [points[name]["peak_mib"] for name in SHAPES]
        time_exp, _ = fit(params, times)
        mem_exp, _ = fit(params, peaks)
        base = float(np.median([points[name]["loaded_mib"] - 4 * built[name][1] / 2**20
                                for name in SHAPES]))  # interpreter, libraries, tokenizer
        fits = largest_fitting(params, peaks, base, memory)
        fits_bf16 = largest_fitting(params, peaks, base, memory, bytes_per_param=2)
        per_shape = "; ".join(
            f"{name} ({built[name][1] / 1e6:.0f}M) {points[name]['seconds']:.2f} s, "
            f"+{points[name]['peak_mib']:.0f} MiB (process {points[name]['process_peak_mib'] / 1024:.1f} GiB)"
            for name in SHAPES)
        rows.append({**row(
            f"model size: {kind}, {LENGTH} tokens", times[-1], times[0], time_exp, None, "report",
            None, f"{WHAT[kind]}; ratio = time exponent in parameters; {per_shape}; memory exponent "
            f"{mem_exp:.2f}; fits this machine's {memory / 1024:.0f} GiB up to about "
            f"{fits / 1e9:.1f}B parameters in fp32, {fits_bf16 / 1e9:.1f}B in bf16 (extrapolated: "
            f"{base / 1024:.1f} GiB of libraries, the weights, the analysis's own peak as fitted)"),
            "kind": kind, "memory_exponent": mem_exp, "fits_fp32": fits, "fits_bf16": fits_bf16,
            "shapes": {name: {**points[name], "params": built[name][1]} for name in SHAPES}})
    for name, (folder, _) in built.items():
        if name != "GPT-2 small":  # 1.4 and 3.8 GB on disk
            subprocess.run(["rm", "-rf", folder], check=False)
    return rows


if __name__ == "__main__":
    print(json.dumps(measure_jobs(sys.argv[1], [(job.split(":")[0], int(job.split(":")[1]))
                                                for job in sys.argv[2:]])))
