"""Dictionary training rows: training throughput (tokens/s) against a forward pass of the
model over the same tokens, and the minutes one shipped dictionary takes (its training
tokens at that rate, plus its share of the activation pass that caches every site at once),
against issue 27's target of 10 minutes on the 2-core machine."""
from __future__ import annotations

import shutil
import time

import torch

from bench.common import TMP, row, timed

CHUNKS = 4  # 4 x 8,160 tokens: enough steps of the shipped batch for a steady rate
# the shipped SAEs trained longer than Plan()'s 1M tokens (Makefile, train-dictionaries):
# (latents, training tokens, distinct tokens in the pool, which dictionaries)
LONG_RUNS = ((2048, 8_400_000, 1_050_000, "each 2,048-latent SAE"),
             (4096, 10_500_000, 1_050_000, "the layer-1 residual SAE"))


def training_rows(label: str, model, ref: str, site_name: str = "blocks.0.hook_resid_post") -> list[dict]:
    from analyses.dictionaries import sites as st
    from analyses.dictionaries.activations import ActivationChunks
    from analyses.dictionaries.pipeline import Plan
    from analyses.dictionaries.tokens import TokenStream

    plan = Plan()  # the shipped set's configuration (make train-dictionaries)
    cfg = model.bridge.cfg
    every = st.every_site(cfg.n_layers)
    site = st.parse(site_name, cfg.n_layers)
    stream = TokenStream(n_ctx=min(plan.n_ctx, cfg.n_ctx), seed=0)
    root = TMP / "dictionary-activations"
    shutil.rmtree(root, ignore_errors=True)
    chunks = ActivationChunks(model, every, stream, "train", root)
    start = time.perf_counter()
    chunks.ensure(CHUNKS)  # one forward per chunk caches all sites' hooks
    t_activations = time.perf_counter() - start
    tokens = torch.cat([torch.from_numpy(chunks.tokens(i)).long() for i in range(CHUNKS)])  # [docs, n_ctx]
    n_tokens = CHUNKS * stream.tokens_per_chunk()

    def forward():
        with torch.no_grad():
            for batch in tokens.split(stream.docs_per_chunk):
                model.bridge(batch)

    t_forward, _ = timed(forward, repeats=3, warmup=1)
    settings = plan.settings
    steps = n_tokens // settings.batch_size
    rate = _training_rate(chunks, site, cfg, settings, plan.num_latents, plan.k, steps)
    t_train = steps * settings.batch_size / rate
    trained = steps * settings.batch_size
    activations_per_token = t_activations / n_tokens / len(every)  # one site's share of the pass
    minutes = (plan.tokens / rate + activations_per_token * plan.tokens) / 60
    shape = f"{plan.num_latents} latents, k {plan.k}, batch {settings.batch_size}"
    t_reference = t_forward * trained / n_tokens  # the forward over the tokens trained on
    rows = [
        row(f"dictionary training, {label}", t_train, t_reference, t_train / t_reference, None, "report", None,
            f"{rate:,.0f} training tokens/s ({site.name}, {shape}) vs the model's forward over the same "
            f"{trained:,} tokens at {n_tokens / t_forward:,.0f} tokens/s; ratio: training s / forward s"),
        row(f"minutes per dictionary, {label}", minutes * 60, None, None, None, "<= 10 min", minutes <= 10,
            f"{minutes:.1f} min projected for a 1,024-latent shipped dictionary (the transcoders, the layer-2 "
            f"residual SAE): {plan.tokens:,} tokens at {rate:,.0f} "
            f"tokens/s plus 1/{len(every)} of the activation pass ({n_tokens / t_activations:,.0f} tokens/s, "
            "all sites cached at once); evaluation excluded"),
    ] + [_long_run_row(label, chunks, site, cfg, settings, plan.k, steps, activations_per_token, latents, tokens,
                       pool, who) for latents, tokens, pool, who in LONG_RUNS]
    shutil.rmtree(root, ignore_errors=True)
    return rows


def _training_rate(chunks, site, cfg, settings, num_latents: int, k: int, steps: int) -> float:
    """Training tokens/s of a fresh `num_latents` dictionary over the cached chunks (after one
    warm-up pass of `steps` updates: Adam's state, the allocator)."""
    from analyses.dictionaries import sites as st
    from analyses.dictionaries import train as tr
    from analyses.dictionaries.coder import SparseCoder
    from analyses.dictionaries.config import CoderConfig

    coder = SparseCoder(CoderConfig(d_in=st.site_width(site, cfg), num_latents=num_latents, k=k,
                                    transcode=site.transcode))
    x, y = chunks.load(0, site)
    tr.initialise(coder, x, y, seed=0)
    trainer = tr.Trainer(coder, settings, total_steps=steps * 2)

    def train():
        batches = tr.batches(lambda i: chunks.load(i, site), CHUNKS, chunks.stream.tokens_per_chunk(), settings,
                             0, trainer.step_index, trainer.step_index + steps)
        return tr.run(trainer, batches)

    train()
    return steps * settings.batch_size / train()


def _long_run_row(label, chunks, site, cfg, settings, k, steps, activations_per_token, latents, tokens, pool, who):
    """The projected minutes of one of the shipped long MSE runs (more latents, passes over a pool)."""
    rate = _training_rate(chunks, site, cfg, settings, latents, k, steps)
    minutes = (tokens / rate + activations_per_token * pool) / 60
    return row(f"minutes per dictionary ({latents:,} latents, {tokens / 1e6:.1f}M tokens), {label}", minutes * 60,
               None, None, None, "<= 10 min", minutes <= 10,
               f"{minutes:.1f} min projected for {who}'s MSE training: {tokens:,} tokens at {rate:,.0f} tokens/s "
               f"plus its share of the activation pass over the {pool:,}-token pool; its KL fine-tune and "
               "evaluation excluded")
