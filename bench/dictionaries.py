"""Dictionary training rows: training throughput (tokens/s) against a forward pass of the
model over the same tokens, and the minutes one shipped dictionary takes (its training
tokens at that rate, plus its share of the activation pass that caches every site at once),
against issue 27's target of 10 minutes on the 2-core machine."""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager

import torch

from bench.common import TMP, row, timed

CHUNKS = 4  # 4 x 8,160 tokens: enough steps of the shipped batch for a steady rate
# the shipped SAEs trained longer than Plan()'s 1M tokens (Makefile, train-dictionaries):
# (latents, training tokens, distinct tokens in the pool, Matryoshka prefixes, tokens trained
# on after releasing them (0: none), which dictionaries)
LONG_RUNS = ((2048, 8_400_000, 1_050_000, (), 0, "each 2,048-latent SAE"),
             (4096, 16_000_000, 1_050_000, (1024,), 4_000_000, "the layer-1 residual SAE"))
# the longest shipped recipe, the layer-0 residual SAE: the 2,048-latent MSE run above, then a
# KL fine-tune of (tokens, coefficient); the bench site is that SAE's own
KL_RECIPE = (2048, 8_400_000, 1_050_000, 3_200_000, 20.0)
KL_STEPS = 6  # fine-tune steps timed (8 documents each), after one warm-up step
RECIPE_THREADS = 2  # the Makefile's TRAIN_THREADS: its runs go one at a time, each on both cores
# the attention SAEs' recipes (Makefile): the MSE run of (latents) over LONG_RUNS' 8.4M tokens,
# a KL fine-tune of (tokens, coefficient), the decoder trained through matching pursuit on
# (tokens), then a KL fine-tune through the pursuit on (tokens; 0: none); the bench times each
# stage's steps on this site's chunks and reports the longest recipe
ATTENTION_RECIPES = (("blocks.0.attn.hook_z", 2048, 600_000, 5.0, 2_000_000, 600_000),
                     ("blocks.1.attn.hook_z", 4096, 600_000, 5.0, 2_000_000, 0),
                     ("blocks.2.attn.hook_z", 2048, 600_000, 5.0, 3_000_000, 0))
ATTENTION_SITE = "blocks.2.attn.hook_z"
PURSUIT_STEPS = 4  # pursuit steps timed (2,048 tokens each), after one warm-up step


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
    ]
    rates = {}  # (threads, latents, prefixes) -> tokens/s: the long runs as the Makefile runs them, and on one
    for n_threads in (1, RECIPE_THREADS):
        with threads(n_threads):
            rates |= {(n_threads, latents, prefixes):
                      _training_rate(chunks, site, cfg, settings, latents, plan.k, steps, prefixes)
                      for latents, _, _, nested, _, _ in LONG_RUNS for prefixes in {nested, ()}}
    rows += [_long_run_row(label, rates, activations_per_token, latents, tokens, pool, prefixes, released, who)
             for latents, tokens, pool, prefixes, released, who in LONG_RUNS]
    rate_at = {1: rates[1, KL_RECIPE[0], ()]}
    with threads(RECIPE_THREADS):
        rate_at[RECIPE_THREADS] = _training_rate(chunks, site, cfg, settings, KL_RECIPE[0], plan.k, steps)
    rows.append(_kl_recipe_row(label, model, site, tokens, rate_at, activations_per_token, plan.k))
    mse_rates = {KL_RECIPE[0]: rate_at[RECIPE_THREADS]}  # by latents, on RECIPE_THREADS threads
    with threads(RECIPE_THREADS):
        for latents in {r[1] for r in ATTENTION_RECIPES} - set(mse_rates):
            mse_rates[latents] = _training_rate(chunks, site, cfg, settings, latents, plan.k, steps)
    attn = st.parse(ATTENTION_SITE, cfg.n_layers)  # the sites' widths are the same: one site's rates
    rows.append(_pursuit_recipe_row(label, model, attn, chunks, tokens, mse_rates, activations_per_token, plan.k))
    shutil.rmtree(root, ignore_errors=True)
    return rows


def _training_rate(chunks, site, cfg, settings, num_latents: int, k: int, steps: int,
                   matryoshka_prefixes=()) -> float:
    """Training tokens/s of a fresh `num_latents` dictionary (Matryoshka where prefixes are given)
    over the cached chunks (after one warm-up pass of `steps` updates: Adam's state, the allocator)."""
    from analyses.dictionaries import sites as st
    from analyses.dictionaries import train as tr
    from analyses.dictionaries.coder import SparseCoder
    from analyses.dictionaries.config import CoderConfig

    coder = SparseCoder(CoderConfig(d_in=st.site_width(site, cfg), num_latents=num_latents, k=k,
                                    transcode=site.transcode, matryoshka_prefixes=list(matryoshka_prefixes)))
    x, y = chunks.load(0, site)
    tr.initialise(coder, x, y, seed=0)
    trainer = tr.Trainer(coder, settings, total_steps=steps * 2)

    def train():
        batches = tr.batches(lambda i: chunks.load(i, site), CHUNKS, chunks.stream.tokens_per_chunk(), settings,
                             0, trainer.step_index, trainer.step_index + steps)
        return tr.run(trainer, batches)

    train()
    return steps * settings.batch_size / train()


def _long_run_row(label, rates, activations_per_token, latents, tokens, pool, prefixes, released, who):
    """The projected minutes of one of the shipped long MSE runs (more latents, passes over a pool;
    a Matryoshka run at its own rate, then its release's tokens at the plain rate) on the
    RECIPE_THREADS threads `make train-dictionaries` gives it, and on one. `rates`: tokens/s by
    (threads, latents, prefixes)."""
    def minutes(n_threads):
        return (tokens / rates[n_threads, latents, prefixes] + released / rates[n_threads, latents, ()]
                + activations_per_token * pool) / 60

    made, rate = minutes(RECIPE_THREADS), rates[RECIPE_THREADS, latents, prefixes]
    shape = f"{tokens / 1e6:.1f}M" + (f" + {released / 1e6:.1f}M" if released else "")
    how = f"{tokens:,} tokens at {rate:,.0f} tokens/s"
    if prefixes:
        how = (f"{tokens:,} Matryoshka tokens (prefix {', '.join(f'{m:,}' for m in prefixes)}) at {rate:,.0f} "
               f"tokens/s, then {released:,} without the prefix term at {rates[RECIPE_THREADS, latents, ()]:,.0f}")
    return row(f"minutes per dictionary ({latents:,} latents, {shape} tokens, {RECIPE_THREADS} threads), {label}",
               made * 60, None, None, None, "<= 10 min", made <= 10,
               f"{made:.1f} min projected for {who}'s MSE training as make train-dictionaries runs it, on "
               f"{RECIPE_THREADS} threads: {how}, plus its share of the activation pass over the {pool:,}-token "
               f"pool; {minutes(1):.1f} min on 1 thread; its KL fine-tune and evaluation excluded")


@contextmanager
def threads(n: int):
    """torch's thread count set to `n` for one block (the bench's 1 restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _kl_rate(model, site, tokens, k, latents: int = KL_RECIPE[0], through_pursuit: bool = False) -> float:
    """KL fine-tune tokens/s of a fresh dictionary of `latents` over KL_STEPS steps of 8
    documents: finetune.py's for a TopK code, or through the pursuit (pursuit.pursuit_kl_finetune)."""
    from analyses.dictionaries import finetune as ft
    from analyses.dictionaries import pursuit
    from analyses.dictionaries import sites as st
    from analyses.dictionaries import train as tr
    from analyses.dictionaries.coder import SparseCoder
    from analyses.dictionaries.config import CoderConfig

    _, _, _, kl_tokens, coeff = KL_RECIPE
    coder = SparseCoder(CoderConfig(d_in=st.site_width(site, model.bridge.cfg), num_latents=latents, k=k))
    x = st.flat(model.bridge.run_with_cache(tokens[:8], names_filter=site.input_hook)[1][site.input_hook])
    tr.initialise(coder, x.reshape(-1, x.shape[-1]), x.reshape(-1, x.shape[-1]), seed=0)
    settings = ft.FinetuneSettings(tokens=kl_tokens, kl_coeff=coeff)
    batches = list(ft.document_batches([tokens], settings.batch_docs, KL_STEPS + 1))
    per_step = int((batches[0] != model.bridge.tokenizer.bos_token_id).sum())  # non-BOS tokens a step
    if through_pursuit:
        pursuit.to_pursuit(coder)
        tune = pursuit.pursuit_kl_finetune
    else:
        tune = ft.finetune
    tune(coder, model.bridge, site, batches[:1], settings, KL_STEPS + 1)  # warm-up
    start = time.perf_counter()
    tune(coder, model.bridge, site, batches[1:], settings, KL_STEPS + 1)
    return KL_STEPS * per_step / (time.perf_counter() - start)


def _kl_recipe_row(label, model, site, tokens, mse_rates: dict[int, float], activations_per_token, k):
    """The projected minutes of the layer-0 residual SAE's whole recipe as the Makefile runs it
    (RECIPE_THREADS threads): its MSE run at the 2,048-latent rate, plus its KL fine-tune at a
    rate measured here (each step runs the model clean and spliced, and back through it to the
    dictionary); the one-thread projection in the note."""
    _, mse_tokens, pool, kl_tokens, coeff = KL_RECIPE
    minutes = {}
    for n, mse_rate in mse_rates.items():
        with threads(n):
            kl_rate = _kl_rate(model, site, tokens, k)
        minutes[n] = ((mse_tokens / mse_rate + activations_per_token * pool + kl_tokens / kl_rate) / 60, kl_rate)
    (total, kl_rate), (one_thread, _) = minutes[RECIPE_THREADS], minutes[1]
    mse_rate = mse_rates[RECIPE_THREADS]  # (the activation pass's share: its 1-thread rate, as measured)
    return row(f"minutes for the longest recipe (MSE {mse_tokens / 1e6:.1f}M + KL fine-tune {kl_tokens / 1e6:.1f}M "
               f"tokens, {RECIPE_THREADS} threads), {label}", total * 60, None, None, None, "<= 10 min", total <= 10,
               f"{total:.1f} min projected for the layer-0 residual SAE ({site.name}) as make train-dictionaries "
               f"runs it, on {RECIPE_THREADS} threads: the MSE run at {mse_rate:,.0f} tokens/s, then {kl_tokens:,} "
               f"KL fine-tune tokens (coefficient {coeff:g}) at {kl_rate:,.0f} tokens/s measured over {KL_STEPS} "
               f"steps of 8 documents; {one_thread:.1f} min on 1 thread; evaluation excluded")


def _pursuit_rate(model, site, chunks, k, latents: int) -> float:
    """Matching-pursuit training tokens/s of a dictionary of `latents` over the cached chunks."""
    from analyses.dictionaries import pursuit
    from analyses.dictionaries import sites as st
    from analyses.dictionaries import train as tr
    from analyses.dictionaries.coder import SparseCoder
    from analyses.dictionaries.config import CoderConfig

    coder = SparseCoder(CoderConfig(d_in=st.site_width(site, model.bridge.cfg), num_latents=latents, k=k))
    x, _ = chunks.load(0, site)
    tr.initialise(coder, x, x, seed=0)
    settings = pursuit.PursuitSettings(tokens=(PURSUIT_STEPS + 1) * 2048)
    batches = [x[i * 2048:(i + 1) * 2048] for i in range(PURSUIT_STEPS + 1)]
    pursuit.pursuit_finetune(coder, batches[:1], pursuit.PursuitSettings(tokens=2048))  # warm-up
    start = time.perf_counter()
    pursuit.pursuit_finetune(coder, batches[1:], settings)
    return PURSUIT_STEPS * 2048 / (time.perf_counter() - start)


def _pursuit_recipe_row(label, model, site, chunks, tokens, mse_rates: dict[int, float], activations_per_token, k):
    """The projected minutes of each attention SAE's recipe (ATTENTION_RECIPES) on
    RECIPE_THREADS threads, each stage at a rate measured here for its width: the MSE run
    (`mse_rates`, by latents), the KL fine-tune, the pursuit training and the KL fine-tune
    through the pursuit; the row is the longest recipe, the note lists them all."""
    _, mse_tokens, pool, _, _ = KL_RECIPE
    widths = {r[1] for r in ATTENTION_RECIPES}
    with threads(RECIPE_THREADS):
        kl_rate = {n: _kl_rate(model, site, tokens, k, n) for n in widths}
        mp_rate = {n: _pursuit_rate(model, site, chunks, k, n) for n in widths}
        mp_kl_rate = {n: _kl_rate(model, site, tokens, k, n, through_pursuit=True)
                      for n in {r[1] for r in ATTENTION_RECIPES if r[5]}}
    minutes, parts = {}, []
    for name, n, kl_tokens, coeff, mp_tokens, mp_kl_tokens in ATTENTION_RECIPES:
        seconds = (mse_tokens / mse_rates[n] + activations_per_token * pool + kl_tokens / kl_rate[n]
                   + mp_tokens / mp_rate[n] + (mp_kl_tokens / mp_kl_rate[n] if mp_kl_tokens else 0.0))
        minutes[name] = seconds / 60
        stages = [f"MSE {mse_tokens / 1e6:.1f}M at {mse_rates[n]:,.0f}/s",
                  f"KL {kl_tokens / 1e6:.1f}M (x {coeff:g}) at {kl_rate[n]:,.0f}/s",
                  f"pursuit {mp_tokens / 1e6:.1f}M at {mp_rate[n]:,.0f}/s"]
        if mp_kl_tokens:
            stages.append(f"KL through the pursuit {mp_kl_tokens / 1e6:.1f}M at {mp_kl_rate[n]:,.0f}/s")
        parts.append(f"{name} ({n:,} latents: {', '.join(stages)} tokens/s): {seconds / 60:.1f} min")
    longest = max(minutes, key=minutes.get)
    total = minutes[longest]
    return row(f"minutes for the longest attention SAE recipe ({longest}, {RECIPE_THREADS} threads), {label}",
               total * 60, None, None, None, "<= 10 min", total <= 10,
               f"projected as make train-dictionaries runs each attention SAE: {'; '.join(parts)}; "
               f"stage rates timed here ({PURSUIT_STEPS} pursuit steps of 2,048 tokens, {KL_STEPS} KL steps of 8 "
               "documents); evaluation excluded")
