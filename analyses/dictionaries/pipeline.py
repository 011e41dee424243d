"""Train and evaluate dictionaries for a model: cached activations -> trainer -> metrics.json.

`train(...)` is what `python -m analyses dictionaries train` and `make train-dictionaries`
run. Every step resumes: activation chunks already on disk are reused, a dictionary with a
`train_state.pt` continues from its last checkpoint, one whose tokens are all seen is only
(re-)evaluated when it has no metrics.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from analyses.core.errors import UserError
from analyses.dictionaries import formats, registry
from analyses.dictionaries import sites as st
from analyses.dictionaries import train as tr
from analyses.dictionaries.activations import ActivationChunks
from analyses.dictionaries.coder import SparseCoder
from analyses.dictionaries.config import CoderConfig
from analyses.dictionaries.tokens import TokenStream

log = logging.getLogger("analyses.dictionaries")
STATE = "train_state.pt"


@dataclass(frozen=True)
class Plan:
    model: str = "default"
    sites: tuple[str, ...] = ("blocks.1.hook_resid_post",)  # or ("all",): every layer's three
    num_latents: int = 1024
    k: int = 16
    # transcoders get a linear skip (MLP input -> output, trained with the rest): on the layer-0
    # MLP it lifts CE recovered from 0.970 to 0.988 at the same L0 (measured, 96 documents)
    transcoder_skip: bool = False
    tokens: int = 1_000_000  # training tokens per dictionary (updates x batch size)
    # the distinct tokens they are drawn from (activations cached on disk); when tokens is
    # larger the trainer cycles over them in epochs. None: as many as tokens (one pass). The
    # cache holds every site's hooks (25 MB per 8k tokens), so epochs are how a long run fits
    distinct_tokens: int | None = None
    # after the MSE training, this many tokens of KL fine-tuning (finetune.py; 0: none), the
    # KL term weighted kl_coeff against FVU
    kl_finetune_tokens: int = 0
    kl_coeff: float = 1.0
    kl_decoder_only: bool = False  # fine-tune only the decoder: the latents that fire stay the MSE ones
    # Matryoshka prefix sizes (config.py): each m's first latents must also reconstruct alone,
    # in the MSE training and the KL fine-tune both. (): plain TopK
    matryoshka_prefixes: tuple[int, ...] = ()
    # then this many tokens on the whole dictionary's loss alone (release_site; 0: none)
    matryoshka_release_tokens: int = 0
    # after the MSE training (and any KL fine-tune), this many tokens training the decoder
    # through matching pursuit (pursuit.py; 0: none): the dictionary then encodes by pursuit
    mp_finetune_tokens: int = 0
    # then this many tokens of KL fine-tuning through the pursuit (pursuit.pursuit_kl_finetune;
    # 0: none), the KL term weighted kl_coeff as in the TopK fine-tune
    mp_kl_finetune_tokens: int = 0
    eval_tokens: int = 100_000  # held-out tokens for the metrics
    ce_tokens: int = 100_000  # of those, the ones spliced back into the model for CE and KL
    seed: int = 0
    n_ctx: int = 256  # document length (capped at the model's context)
    out: Path | None = None  # the folder holding one directory per site; default data/dictionaries/<model>
    cache: Path | None = None  # activation cache root; default $ANALYSES_ACTIVATIONS or ~/.cache
    # torch threads: one where several runs share the cores (and the default); a machine
    # running only this training gains from its cores (2 threads: 1.4x the MSE steps at 2,048
    # latents, 1.6x a KL fine-tune step, on the 2-core machine). None leaves the process's
    # setting alone (the app's training jobs: other analyses share the process)
    threads: int | None = 1
    settings: tr.TrainSettings = field(default_factory=tr.TrainSettings)


def resolve_sites(names, n_layers: int) -> list[st.Site]:
    if list(names) == ["all"]:
        return st.every_site(n_layers)
    return [st.parse(n, n_layers) for n in names]


# shares of a run's progress bar: activations, training (all sites), evaluation (all sites)
ACTIVATIONS_SHARE, TRAIN_SHARE = 0.15, 0.7


def train(plan: Plan, progress=None) -> list[Path]:
    """Train (or resume) every site of the plan, then evaluate each; returns their folders.
    `progress(fraction, message)` (analyses.core.progress's contract) hears each step."""
    from analyses.runtime import models

    if plan.threads is not None:
        torch.set_num_threads(plan.threads)
    loaded = models.load(plan.model, device="cpu")
    cfg = loaded.bridge.cfg
    sites = resolve_sites(plan.sites, cfg.n_layers)
    stream = TokenStream(n_ctx=min(plan.n_ctx, cfg.n_ctx), seed=plan.seed)
    out_root = Path(plan.out) if plan.out else registry.ROOT / registry.model_slug(plan.model)
    chunks = ActivationChunks(loaded, sites, stream, "train", plan.cache)
    n_chunks = math.ceil(min(plan.tokens, plan.distinct_tokens or plan.tokens) / stream.tokens_per_chunk())
    report = progress or (lambda fraction, message: log.info(message))
    t0 = time.perf_counter()
    chunks.ensure(n_chunks, lambda done, total: report(
        ACTIVATIONS_SHARE * done / total, f"activations: chunk {done}/{total} ({time.perf_counter() - t0:.0f} s)"))
    coders = {}
    for i, site in enumerate(sites):
        def say(message, within=0.0, i=i):  # within: this site's share of training done
            report(ACTIVATIONS_SHARE + TRAIN_SHARE * (i + within) / len(sites), message)

        coders[site] = train_site(loaded, site, chunks, n_chunks, out_root / site.directory, plan, say)
        if plan.matryoshka_release_tokens:
            release_site(site, coders[site], chunks, n_chunks, out_root / site.directory, plan, say)
        if plan.kl_finetune_tokens:
            finetune_site(loaded, site, coders[site], chunks, out_root / site.directory, plan, say)
        if plan.mp_finetune_tokens and not site.transcode:  # pursuit reconstructs its own input: SAEs only
            pursuit_site(site, coders[site], chunks, n_chunks, out_root / site.directory, plan, say)
            if plan.mp_kl_finetune_tokens:
                pursuit_kl_site(loaded, site, coders[site], chunks, out_root / site.directory, plan, say)
    from analyses.dictionaries import metrics

    folders = []
    for i, (site, coder) in enumerate(coders.items()):
        folder = out_root / site.directory
        if formats.read_metrics(folder) is None or (folder / STATE).exists():
            report(ACTIVATIONS_SHARE + TRAIN_SHARE + (1 - ACTIVATIONS_SHARE - TRAIN_SHARE) * i / len(sites),
                   f"{site.name}: evaluating on {plan.eval_tokens:,} held-out tokens")
            result = metrics.evaluate(loaded, site, coder, plan.eval_tokens, plan.ce_tokens,
                                      seed=plan.seed, n_ctx=stream.n_ctx, cache=plan.cache)
            result["train_seconds"] = _train_seconds(folder)
            formats.write_metrics(folder, result)
            (folder / STATE).unlink(missing_ok=True)  # done: nothing to resume
        folders.append(folder)
    return folders


def _train_seconds(folder: Path) -> float | None:
    path = folder / "train_seconds.txt"
    return float(path.read_text()) if path.is_file() else None


def train_site(loaded, site: st.Site, chunks: ActivationChunks, n_chunks: int, folder: Path,
               plan: Plan, say) -> SparseCoder:
    settings = plan.settings
    total_steps = plan.tokens // settings.batch_size
    d_in = st.site_width(site, loaded.bridge.cfg)
    wanted = CoderConfig(d_in=d_in, num_latents=plan.num_latents, k=plan.k, transcode=site.transcode,
                         site=site.name, model=plan.model, model_fingerprint=loaded.fingerprint, seed=plan.seed,
                         skip_connection=site.transcode and plan.transcoder_skip,
                         matryoshka_prefixes=list(plan.matryoshka_prefixes),
                         distinct_tokens=tr.distinct_tokens(n_chunks, chunks.stream.tokens_per_chunk(), settings))
    coder, trainer = None, None
    if (folder / formats.SPARSIFY_WEIGHTS).is_file():
        coder = formats.load(folder)
        if not _same_dictionary(coder.cfg, wanted):
            raise UserError(f"{folder} holds another dictionary ({coder.cfg.num_latents} latents, k "
                            f"{coder.cfg.k}, site {coder.cfg.site}, Matryoshka prefixes "
                            f"{coder.cfg.matryoshka_prefixes or 'none'}): pass another --out or remove it")
        if not (folder / STATE).is_file():
            return coder  # finished earlier
        trainer = tr.Trainer(coder, settings, total_steps)
        trainer.load_state_dict(torch.load(folder / STATE, weights_only=False))
        say(f"{site.name}: resuming at step {trainer.step_index}/{total_steps}")
    else:
        coder = SparseCoder(wanted)
        x, y = chunks.load(0, site)
        tr.initialise(coder, x, y, plan.seed)
        trainer = tr.Trainer(coder, settings, total_steps)

    earlier = _train_seconds(folder) or 0.0  # a resumed run's seconds before this one
    started = time.perf_counter()

    def checkpoint():
        formats.save(coder, folder)
        torch.save(trainer.state_dict(), folder / STATE)
        # with every checkpoint, so a run cut off and resumed still counts all its time
        (folder / "train_seconds.txt").write_text(f"{earlier + time.perf_counter() - started:.1f}\n")

    def report(step, total, stats):
        say(f"{site.name}: step {step}/{total} fvu {stats['fvu']:.4f} auxk {stats['auxk']:.4f} "
            f"dead {stats['dead']:.1%}", step / total)

    stream = tr.batches(lambda i: chunks.load(i, site), n_chunks, chunks.stream.tokens_per_chunk(),
                        settings, plan.seed, trainer.step_index, total_steps)
    tr.run(trainer, stream, report, checkpoint)
    seconds = _train_seconds(folder) or 0.0
    say(f"{site.name}: trained {coder.cfg.tokens_seen:,} tokens in {seconds:.0f} s "
        f"({coder.cfg.tokens_seen / max(seconds, 1e-9):,.0f} tokens/s)", 1.0)
    return coder


# the release's learning rate against the MSE run's (a fresh Adam from trained weights). On the
# layer-1 residual's 16M-token Matryoshka SAE, 4M tokens at half the rate and at the full rate
# both reach 0.9513 explained variance, half with fewer dead latents (0.2% against 0.4%)
RELEASE_LR_SHARE = 0.5


def release_site(site: st.Site, coder: SparseCoder, chunks: ActivationChunks, n_chunks: int, folder: Path,
                 plan: Plan, say) -> None:
    """Train a Matryoshka dictionary on, over the MSE run's token pool, with its prefix terms
    dropped (the whole dictionary's FVU + AuxK alone), save it, and drop its metrics. Done once,
    as the KL fine-tune; an interrupted release starts again from the saved Matryoshka weights."""
    have = coder.cfg.matryoshka_release_tokens
    settings = replace(plan.settings, lr=plan.settings.lr * RELEASE_LR_SHARE)
    steps = plan.matryoshka_release_tokens // settings.batch_size
    if have:
        if have < steps * settings.batch_size:
            raise UserError(f"{folder} was released from its Matryoshka prefixes after fewer tokens "
                            f"({have:,}): pass another --out or remove it")
        return
    if coder.cfg.kl_finetune_tokens or coder.cfg.encoding == "matching_pursuit":
        raise UserError(f"{folder} is already fine-tuned: releasing its Matryoshka prefixes comes right after "
                        "the MSE training (pass another --out or remove it)")
    started = time.perf_counter()
    coder.cfg.matryoshka_release_tokens = steps * settings.batch_size  # the loss drops the prefix terms now
    trainer = tr.Trainer(coder, settings, steps)

    def report(step, total, stats):
        say(f"{site.name}: Matryoshka release step {step}/{total} fvu {stats['fvu']:.4f} "
            f"dead {stats['dead']:.1%}", 1.0)

    # another seed than the MSE run's, so its batches are not the first epoch's again
    stream = tr.batches(lambda i: chunks.load(i, site), n_chunks, chunks.stream.tokens_per_chunk(),
                        settings, plan.seed + 1, 0, steps)
    mse_tokens = coder.cfg.tokens_seen  # the trainer counts its tokens there: keep it the MSE count
    tr.run(trainer, stream, report)
    coder.cfg.tokens_seen = mse_tokens
    _saved_after(coder, folder, started)


def finetune_site(loaded, site: st.Site, coder: SparseCoder, chunks: ActivationChunks, folder: Path,
                  plan: Plan, say) -> None:
    """KL fine-tune the MSE-trained `coder` on the training split's documents, save it, and
    drop its metrics so they are measured again. Done once: a dictionary already fine-tuned
    as planned is left alone; one fine-tuned otherwise is another dictionary (an error). An
    interrupted fine-tune (a few minutes) starts again from the saved MSE weights."""
    from analyses.dictionaries import finetune as ft

    have = (coder.cfg.kl_finetune_tokens, coder.cfg.kl_coeff, coder.cfg.kl_decoder_only)
    if not have[0] and coder.cfg.encoding == "matching_pursuit":
        raise UserError(f"{folder} already encodes by matching pursuit: a KL fine-tune trains a TopK code, "
                        "so it comes before the pursuit (pass another --out or remove it)")
    if have[0]:
        if have[0] < plan.kl_finetune_tokens or have[1:] != (plan.kl_coeff, plan.kl_decoder_only):
            raise UserError(f"{folder} is KL fine-tuned otherwise ({have[0]:,} tokens, coefficient {have[1]}, "
                            f"decoder only: {have[2]}): pass another --out or remove it")
        return
    settings = ft.FinetuneSettings(tokens=plan.kl_finetune_tokens, kl_coeff=plan.kl_coeff,
                                   train_encoder=not plan.kl_decoder_only)
    steps, batches = _document_batches(chunks, settings)
    started = time.perf_counter()

    def report(step, total, stats):
        say(f"{site.name}: KL fine-tune step {step}/{total} kl {stats['kl']:.4f} fvu {stats['fvu']:.4f}", 1.0)

    ft.finetune(coder, loaded.bridge, site, batches, settings, steps, report)
    _saved_after(coder, folder, started)


def _document_batches(chunks: ActivationChunks, settings) -> tuple[int, Iterator[Tensor]]:
    """A KL fine-tune's steps and its batches of [batch_docs, n_ctx] training documents, from
    the first chunks of the training split (made where missing)."""
    from analyses.dictionaries import finetune as ft

    steps = ft.steps_for(settings.tokens, settings.batch_docs, chunks.stream.n_ctx - 1)
    n_chunks = math.ceil(steps * settings.batch_docs / chunks.stream.docs_per_chunk)
    chunks.ensure(n_chunks)
    rows = (torch.from_numpy(chunks.tokens(i)).long() for i in range(n_chunks))  # [docs, n_ctx] each
    return steps, ft.document_batches(rows, settings.batch_docs, steps)


def _saved_after(coder: SparseCoder, folder: Path, started: float) -> None:
    """Save a dictionary after a training stage, count the stage's seconds, and drop its
    metrics so they are measured again."""
    formats.save(coder, folder)
    seconds = (_train_seconds(folder) or 0.0) + time.perf_counter() - started
    (folder / "train_seconds.txt").write_text(f"{seconds:.1f}\n")
    (folder / formats.METRICS).unlink(missing_ok=True)  # measured again below


def pursuit_site(site: st.Site, coder: SparseCoder, chunks: ActivationChunks, n_chunks: int, folder: Path,
                 plan: Plan, say) -> None:
    """Train the decoder through matching pursuit (pursuit.py) over the MSE run's token pool,
    save it, and drop its metrics so they are measured again. Done once, as the KL fine-tune."""
    from analyses.dictionaries import pursuit

    settings = pursuit.PursuitSettings(tokens=plan.mp_finetune_tokens)
    if coder.cfg.encoding == "matching_pursuit":
        # whole batches: the plan's tokens rounded down to them are what a finished run recorded
        if coder.cfg.mp_finetune_tokens < settings.steps() * settings.batch_size:
            raise UserError(f"{folder} was trained through matching pursuit on fewer tokens "
                            f"({coder.cfg.mp_finetune_tokens:,}): pass another --out or remove it")
        return
    started = time.perf_counter()

    def report(step, total, stats):
        say(f"{site.name}: matching-pursuit step {step}/{total} fvu {stats['fvu']:.4f}", 1.0)

    batches = pursuit.stream(lambda i: chunks.load(i, site), n_chunks, chunks.stream.tokens_per_chunk(),
                             settings, plan.seed)
    pursuit.pursuit_finetune(coder, batches, settings, report)
    _saved_after(coder, folder, started)


def pursuit_kl_site(loaded, site: st.Site, coder: SparseCoder, chunks: ActivationChunks, folder: Path,
                    plan: Plan, say) -> None:
    """KL fine-tune a pursuit dictionary through its pursuit (pursuit.pursuit_kl_finetune) on the
    training split's documents, save it, and drop its metrics. Done once, as the others."""
    from analyses.dictionaries import finetune as ft
    from analyses.dictionaries import pursuit

    have = (coder.cfg.mp_kl_finetune_tokens, coder.cfg.mp_kl_coeff)
    if have[0]:
        if have[0] < plan.mp_kl_finetune_tokens or have[1] != plan.kl_coeff:
            raise UserError(f"{folder} is KL fine-tuned through the pursuit otherwise ({have[0]:,} tokens, "
                            f"coefficient {have[1]}): pass another --out or remove it")
        return
    settings = ft.FinetuneSettings(tokens=plan.mp_kl_finetune_tokens, kl_coeff=plan.kl_coeff)
    steps, batches = _document_batches(chunks, settings)
    started = time.perf_counter()

    def report(step, total, stats):
        say(f"{site.name}: pursuit KL fine-tune step {step}/{total} kl {stats['kl']:.4f} fvu {stats['fvu']:.4f}",
            1.0)

    pursuit.pursuit_kl_finetune(coder, loaded.bridge, site, batches, settings, steps, report)
    _saved_after(coder, folder, started)


def _same_dictionary(have: CoderConfig, want: CoderConfig) -> bool:
    keys = ("d_in", "num_latents", "k", "transcode", "skip_connection", "site", "model_fingerprint", "seed",
            "matryoshka_prefixes")
    # a dictionary written before distinct_tokens was recorded (0) matches any pool
    same_pool = not have.distinct_tokens or have.distinct_tokens == want.distinct_tokens
    return same_pool and all(getattr(have, key) == getattr(want, key) for key in keys)


def evaluate_folder(folder: Path, model: str | None = None, eval_tokens: int = 100_000,
                    ce_tokens: int = 100_000, cache: Path | None = None) -> dict:
    """Measure the dictionary in `folder` (ours, sparsify's or SAELens's) on the model it names
    (or `model`) and write its metrics.json; returns the metrics."""
    from analyses.dictionaries import metrics
    from analyses.runtime import models

    coder = formats.load(folder)
    ref = model or coder.cfg.model
    if not ref:
        raise UserError(f"{folder}: its cfg.json names no model: pass --model")
    loaded = models.load(ref, device="cpu")
    if not coder.cfg.site:
        raise UserError(f"{folder}: its cfg.json names no site")
    site = st.parse(coder.cfg.site, loaded.bridge.cfg.n_layers)
    if st.site_width(site, loaded.bridge.cfg) != coder.cfg.d_in:
        raise UserError(f"{folder}: d_in {coder.cfg.d_in} does not fit {site.name} of {ref}")
    if coder.cfg.model_fingerprint and coder.cfg.model_fingerprint != loaded.fingerprint:
        log.warning("%s was trained on other weights (fingerprint %s, this model %s)", folder,
                    coder.cfg.model_fingerprint[:12], loaded.fingerprint[:12])
    result = metrics.evaluate(loaded, site, coder, eval_tokens, ce_tokens, seed=coder.cfg.seed,
                              n_ctx=min(256, loaded.bridge.cfg.n_ctx), cache=cache)
    result["train_seconds"] = _train_seconds(folder)
    formats.write_metrics(folder, result)
    return result
