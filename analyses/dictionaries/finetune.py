"""KL fine-tuning of a trained dictionary: the end-to-end objective (Braun et al. 2024,
"Identifying functionally important features with end-to-end sparse dictionary learning";
Karvonen's KL fine-tune of MSE-trained SAEs).

An MSE-trained dictionary spends its latents on what is large in the site's variance, which is
not always what the model downstream reads: on the embedded model the residual SAEs lose most
of their cross-entropy on the repeated-random-token documents, where the induction heads need
each random token's exact identity. Fine-tuning with

    loss = FVU + auxk_alpha * AuxK + kl_coeff * KL(clean logits || logits with the site spliced)

(the model frozen; KL per non-BOS token, in nats) trains the dictionary on what the model's
output needs, while the FVU term keeps it a reconstruction (so explained variance stays
meaningful). Each step runs the model twice on a batch of documents: clean (no grad; gives the
site's input and output and the clean logits) and with the dictionary's output spliced in at
every non-BOS position (grad flows back to the dictionary only).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from analyses.dictionaries import sites as st
from analyses.dictionaries import train as tr
from analyses.dictionaries.coder import SparseCoder
from analyses.dictionaries.metrics import kl_per_token


@dataclass(frozen=True)
class FinetuneSettings:
    tokens: int  # non-BOS tokens to fine-tune on
    kl_coeff: float = 1.0  # weight of the KL term against FVU (which is ~0.05 on a good dictionary)
    batch_docs: int = 8  # documents a step (8 x 255 tokens: about the MSE trainer's 2,048)
    # a tenth of the MSE trainer's rate: the fine-tune starts from a trained dictionary and
    # should move it, not retrain it
    lr: float = 2e-4
    warmup_steps: int = 20
    decay_share: float = 0.2
    # a latent silent this long gets AuxK's gradient (the MSE trainer's; 20k revived none and
    # let more die on the layer-2 transcoder: 6.4% dead on eval vs 4.7%)
    dead_after_tokens: int = 100_000
    # False: the encoder stays as trained and only the decoder (and skip) move, so the latents
    # that fire (and the dead share) stay the MSE training's (exactly so for a transcoder,
    # whose encoder does not read b_dec)
    train_encoder: bool = True

    def train_settings(self) -> tr.TrainSettings:
        return tr.TrainSettings(lr=self.lr, warmup_steps=self.warmup_steps, decay_share=self.decay_share,
                                dead_after_tokens=self.dead_after_tokens)


@contextmanager
def frozen(module: torch.nn.Module):
    """The module's parameters without grad for one `with` block (restored after): the
    backward pass then computes only the dictionary's gradients."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@dataclass
class CleanRun:
    """One batch of documents run clean (no grad): what a fine-tune step compares against."""
    logits: Float[Tensor, "batch pos vocab"]
    x: Float[Tensor, "batch pos d_in"]  # the site's input
    y: Float[Tensor, "batch pos d_in"]  # the site's output
    keep: Bool[Tensor, "batch pos"]  # the non-BOS positions (BOS stays clean, as in metrics)


@torch.no_grad()
def clean_run(bridge, site: st.Site, tokens: Int[Tensor, "batch pos"]) -> CleanRun:
    hooks = {site.input_hook, site.output_hook}
    logits, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in hooks)
    return CleanRun(logits, st.flat(cache[site.input_hook]), st.flat(cache[site.output_hook]),
                    tokens != bridge.tokenizer.bos_token_id)


def spliced_kl(bridge, site: st.Site, tokens: Int[Tensor, "batch pos"], clean: CleanRun,
               y_hat: Float[Tensor, "kept d_in"]) -> Tensor:
    """Mean KL(clean || spliced) per non-BOS token, the site's output replaced there by `y_hat`
    (the kept positions' rows, in order); differentiable in y_hat."""
    out = clean.y.clone()  # [batch, pos, d_in]
    out[clean.keep] = y_hat.to(out.dtype)
    with st.spliced(bridge, site, lambda _x: out, clean.keep):
        spliced = bridge(tokens)
    return kl_per_token(clean.logits, spliced)[clean.keep].mean()


def kl_step(trainer: tr.Trainer, bridge, site: st.Site, tokens: Int[Tensor, "batch pos"], kl_coeff: float) -> dict:
    """One fine-tune update on one batch of documents; returns the trainer's stats with "kl"."""
    clean = clean_run(bridge, site, tokens)
    kl_value = {}

    def kl_loss(terms: tr.LossTerms) -> Tensor:
        kl = spliced_kl(bridge, site, tokens, clean, terms.y_hat)
        kl_value["kl"] = kl.item()
        return kl_coeff * kl

    stats = trainer.step(clean.x[clean.keep], clean.y[clean.keep], extra_loss=kl_loss)
    return {**stats, **kl_value}


def steps_for(tokens: int, batch_docs: int, tokens_per_doc: int) -> int:
    """Fine-tune steps that cover `tokens` non-BOS tokens (the last batch may overshoot)."""
    return math.ceil(tokens / (batch_docs * tokens_per_doc))


def document_batches(chunks: Iterable[Tensor], batch_docs: int, steps: int) -> Iterator[Int[Tensor, "batch pos"]]:
    """`steps` batches of `batch_docs` documents from the chunks' [docs, n_ctx] token rows
    (a chunk's docs_per_chunk is a multiple of batch_docs in practice; a short tail batch is
    still a batch)."""
    given = 0
    for rows in chunks:
        for start in range(0, len(rows), batch_docs):
            if given >= steps:
                return
            given += 1
            yield rows[start:start + batch_docs]


def finetune(coder: SparseCoder, bridge, site: st.Site, batches: Iterable[Tensor], settings: FinetuneSettings,
             total_steps: int, log=None) -> SparseCoder:
    """KL fine-tune `coder` in place on the documents of `batches`; `log(step, total, stats)`
    every 10 steps. The model is frozen (its parameters untouched); training mode is not used
    (the embedded model has no dropout)."""
    trainer = tr.Trainer(coder, settings.train_settings(), total_steps)
    mse_tokens = coder.cfg.tokens_seen  # the trainer counts its tokens there: keep it the MSE count
    with frozen(bridge), (nullcontext() if settings.train_encoder else frozen(coder.encoder)):
        for tokens in batches:
            stats = kl_step(trainer, bridge, site, tokens, settings.kl_coeff)
            if log and (trainer.step_index % 10 == 0 or trainer.step_index == total_steps):
                log(trainer.step_index, total_steps, stats)
    coder.cfg.kl_finetune_tokens += coder.cfg.tokens_seen - mse_tokens
    coder.cfg.tokens_seen = mse_tokens
    coder.cfg.kl_coeff = settings.kl_coeff
    coder.cfg.kl_decoder_only = not settings.train_encoder
    return coder
