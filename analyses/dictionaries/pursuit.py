"""Turning a trained TopK SAE into a matching-pursuit one (MP-SAE, Costa et al. 2025, "From
Flat to Hierarchical: Extracting Sparse Representations with Matching Pursuit").

A TopK encoder picks a token's k latents in one projection; matching pursuit picks them one at
a time, each against what the latents before it left unexplained (`coder.pursuit_steps`), so
latents that overlap are not chosen for the same part twice. On the embedded model's attention
outputs, where a TopK SAE explains 0.88-0.92 of the variance at k 16, the same decoders pursued
explain 0.93-0.95 (NOTES.md), and a decoder trained through the pursuit more. This module
starts from the trained TopK dictionary (its rows are a good dictionary already) and trains the
decoder and b_dec through the k pursuit steps on FVU (Adam; unit-norm rows, the gradient along
each row removed, as train.py does), the choices not differentiated (so training chooses by the
Gram matrix and replays only the chosen rows: `coder.replayed_pursuit_steps`), and optionally
then on FVU + KL of the model with the pursuit spliced in, as finetune.py does for a TopK code
(`pursuit_kl_finetune`: the layer-0 attention SAE's CE recovered needs it). The encoder's weights then
become the decoder's rows (bias 0), so sparsify, which knows only TopK, reads the dictionary as
the pursuit's first step taken k times at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from analyses.dictionaries import train as tr
from analyses.dictionaries.coder import SparseCoder, pursuit_reconstruction


@dataclass(frozen=True)
class PursuitSettings:
    tokens: int  # training tokens through the pursuit
    lr: float = 1e-3  # half the TopK trainer's: it starts from a trained dictionary
    batch_size: int = 2048
    decay_share: float = 0.2  # linear decay to 0 over the last 20% of steps

    def steps(self) -> int:
        return max(1, self.tokens // self.batch_size)


def fvu(x: Float[Tensor, "batch d_in"], x_hat: Float[Tensor, "batch d_in"]) -> Tensor:
    """The batch's fraction of variance unexplained by `x_hat`."""
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


def pursuit_fvu(coder: SparseCoder, x: Float[Tensor, "batch d_in"]) -> Tensor:
    """The batch's FVU with the pursuit's reconstruction (differentiable in W_dec and b_dec)."""
    return fvu(x, pursuit_reconstruction(coder, x))


def decoder_step(coder: SparseCoder, optimizer: torch.optim.Optimizer, loss: Tensor, lr: float) -> None:
    """One update of the decoder and b_dec on `loss` at rate `lr`, as train.py updates a
    decoder: the gradient along each row removed, the rows back to unit norm after."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    coder.remove_parallel_decoder_grad_()
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    coder.normalize_decoder_()


def to_pursuit(coder: SparseCoder) -> None:
    """Mark `coder` a matching-pursuit dictionary, its encoder set to the decoder's rows."""
    if coder.cfg.transcode:
        raise ValueError("matching pursuit reconstructs its own input: a transcoder cannot use it")
    coder.cfg.encoding = "matching_pursuit"
    sync_encoder(coder)


@torch.no_grad()
def sync_encoder(coder: SparseCoder) -> None:
    """The encoder as the pursuit's first step: W_enc = W_dec, b_enc = 0 (what sparsify reads)."""
    coder.encoder.weight.copy_(coder.W_dec)
    coder.encoder.bias.zero_()


def pursuit_finetune(coder: SparseCoder, batches, settings: PursuitSettings, log=None) -> SparseCoder:
    """Train `coder`'s decoder through its pursuit on `batches` (x [batch, d_in] each, or (x, y)
    pairs whose y is x); `log(step, total, stats)` every 10 steps. In place; returns it."""
    to_pursuit(coder)
    total = settings.steps()
    params = [coder.W_dec, coder.b_dec]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    decay_from = int(total * (1 - settings.decay_share))
    for step, batch in enumerate(batches):
        if step >= total:
            break
        x = batch[0] if isinstance(batch, tuple | list) else batch
        loss = pursuit_fvu(coder, x)
        scale = 1.0 if step < decay_from else (total - step) / max(1, total - decay_from)
        decoder_step(coder, optimizer, loss, settings.lr * scale)
        if log is not None and ((step + 1) % 10 == 0 or step + 1 == total):
            log(step + 1, total, {"fvu": loss.item()})
    coder.zero_grad(set_to_none=True)
    coder.cfg.mp_finetune_tokens += total * settings.batch_size
    sync_encoder(coder)
    return coder


def stream(load_chunk, n_chunks: int, tokens_per_chunk: int, settings: PursuitSettings, seed: int):
    """The TopK trainer's resumable batch stream (train.batches), at this batch size."""
    plan = tr.TrainSettings(batch_size=settings.batch_size)
    return tr.batches(load_chunk, n_chunks, tokens_per_chunk, plan, seed, 0, settings.steps())


def pursuit_kl_finetune(coder: SparseCoder, bridge, site, batches, settings, total_steps: int,
                        log=None) -> SparseCoder:
    """KL fine-tune a pursuit dictionary's decoder and b_dec through its pursuit on the documents
    of `batches` ([docs, pos] token rows each): loss = FVU + kl_coeff * KL(clean || spliced), as
    finetune.py's for a TopK code (the model frozen; BOS kept clean), with the pursuit's
    reconstruction spliced in. `settings` is a finetune.FinetuneSettings (its lr, warm-up and
    decay; the encoder is the decoder here, so train_encoder does not apply); `log(step, total,
    stats)` every 10 steps. In place; returns it."""
    from analyses.dictionaries import finetune as ft

    if coder.cfg.encoding != "matching_pursuit":
        raise ValueError("a pursuit KL fine-tune needs a pursuit dictionary: train through the pursuit first")
    schedule = settings.train_settings()  # the TopK fine-tune's learning-rate schedule
    optimizer = torch.optim.Adam([coder.W_dec, coder.b_dec], lr=settings.lr)
    seen = 0
    with ft.frozen(bridge):
        for step, tokens in enumerate(batches):
            if step >= total_steps:
                break
            clean = ft.clean_run(bridge, site, tokens)
            x = clean.x[clean.keep]  # [kept, d_in]
            y_hat = pursuit_reconstruction(coder, x)
            unexplained = fvu(x, y_hat)
            kl = ft.spliced_kl(bridge, site, tokens, clean, y_hat)
            decoder_step(coder, optimizer, unexplained + settings.kl_coeff * kl,
                         tr.lr_at(schedule, total_steps, step))
            seen += x.shape[0]
            if log is not None and ((step + 1) % 10 == 0 or step + 1 == total_steps):
                log(step + 1, total_steps, {"fvu": unexplained.item(), "kl": kl.item()})
    coder.zero_grad(set_to_none=True)
    coder.cfg.mp_kl_finetune_tokens += seen
    coder.cfg.mp_kl_coeff = settings.kl_coeff
    sync_encoder(coder)
    return coder
