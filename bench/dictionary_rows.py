"""Rows for reading a model through a dictionary (issue 27): a `features` run against one
plain forward pass on the same prompt, and the latent index of every latent of one shipped
dictionary against the forward passes over its corpus alone, in the same run."""
from __future__ import annotations

import time

import torch

from analyses import AnalysisSpec
from analyses.dictionaries import density, readout, scan
from analyses.kinds import features, latent_index
from analyses.runtime.store import Store
from bench.common import TMP, row, timed, timed_alternating

DICTIONARY = "blocks.1.attn.hook_z"  # the costliest read-out: its rows go through W_O first


def features_row(label, model, ref, prompt):
    """A warm `features` run (the dictionary's densities measured once before: they are per
    dictionary, kept on disk) against `bridge(tokens)` alone."""
    bridge = model.bridge
    spec = AnalysisSpec(kind="features", model=ref, prompt=prompt, dictionary=DICTIONARY)
    t0 = time.perf_counter()
    density.firing_rates(model, readout.load_for(model, ref, DICTIONARY))
    first = time.perf_counter() - t0
    tokens = bridge.to_tokens(prompt)

    def forward():
        with torch.no_grad():
            return bridge(tokens)

    t_ours, t_fwd, result, _ = timed_alternating(lambda: features.run(model, spec), forward)
    ratio = t_ours / t_fwd
    n_latents = result.tables["latents"]["latent"].nunique()
    return row(f"features (prompt through {DICTIONARY}) / forward, {label}", t_ours, t_fwd, ratio, None,
               "<= 2x a forward", ratio <= 2.0,
               f"{int(tokens.shape[1])} tokens, {n_latents} latents read out; reference = one plain forward "
               f"(ours stops after the site's block, layer 1 of 3); "
               f"the densities ({density.DENSITY_TOKENS:,} held-out tokens, once per dictionary, then on disk) "
               f"took {first:.1f} s the first time")


def index_row(label, model, ref):
    """The whole index (every latent, the default 100k-token corpus, contexts, histograms,
    logit effects, promoters, head shares) against the corpus's forward passes alone."""
    spec = AnalysisSpec(kind="latent_index", model=ref, dictionary=DICTIONARY)
    t_ours, result = timed(lambda: latent_index.run(model, spec), repeats=1, warmup=0)
    bridge = model.bridge
    site = readout.load_for(model, ref, DICTIONARY).site
    tokens_read = int(result.meta["tokens"])

    def forwards():  # the index's own reads (stopped after the site's block), nothing else
        for _, _, tokens in scan.chunk_tokens(model, tokens_read, 0):
            scan.read_site(bridge, tokens, site)

    t_fwd = timed(forwards, repeats=1, warmup=0)[0]
    store = Store(TMP / "latent_index.duckdb")
    t_store = timed(lambda: store.put("bench", result, model.fingerprint, 1), repeats=1, warmup=0)[0]
    store.close()
    rows = sum(len(frame) for frame in result.tables.values())
    n = int(result.meta["num_latents"])
    return row(f"latent index ({n:,} latents of {DICTIONARY}), {label}", t_ours, t_fwd, t_ours / t_fwd, None,
               "<= 5 min for every latent", t_ours + t_store <= 300,
               f"{tokens_read:,} held-out tokens, top {spec.with_defaults().top_k} contexts a latent; reference = "
               f"the forward passes over that corpus alone, stopped after the site's block as the index's are "
               f"(ratio = index / forwards); storing its {rows:,} rows in DuckDB took {t_store:.1f} s more "
               f"(the target counts both)")
