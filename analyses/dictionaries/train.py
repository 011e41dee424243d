"""A TopK sparse-coder trainer on cached activations (Gao et al. 2024, "Scaling and evaluating
sparse autoencoders", as EleutherAI sparsify implements it):

- loss = FVU + auxk_alpha * AuxK. FVU = |y - y_hat|^2 / |y - mean(y)|^2 over the batch. A
  Matryoshka dictionary (`cfg.matryoshka_prefixes`, Bussmann et al. 2025) replaces FVU by the
  mean of FVU and each prefix's FVU: the reconstruction from the chosen latents below m alone
  (the TopK choice is the whole dictionary's, as at inference); once released
  (`cfg.matryoshka_release_tokens`), plain FVU again. AuxK:
  the top `d_in / 2` *dead* latents (not fired for `dead_after_tokens`) must predict the live
  latents' residual y - y_hat, scaled by min(dead / k_aux, 1): a dead latent gets gradient
  again as soon as it could help, which is what keeps latents alive.
- Adam; decoder rows at unit norm, the gradient's component along each row removed before
  a step and the rows renormalised after it.
- the TopK choice is made without gradient; only the k chosen pre-activations are
  differentiated, through their encoder rows alone (gathered.py), and AuxK's over the dead
  latents alone: the same gradient as autograd through the dense encoder, at about half the
  step time (a third of it at 4,096 latents with 2% dead).
- init: decoder = encoder's rows (normalised), b_dec = the targets' mean; a transcoder's
  encoder bias centres its pre-activations on the inputs' mean.

The loss terms are sparsify's `SparseCoder.forward` term for term (tests hold them equal); we
train from our cached activations, which sparsify's Trainer (it hooks a live HF model) cannot.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from analyses.dictionaries.coder import SparseCoder


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 2048  # tokens a step: small steps, many updates for a few million tokens
    lr: float = 2e-3  # Adam; ~2.5x sparsify's default for 1,024 latents: our runs are short
    warmup_steps: int = 50
    decay_share: float = 0.2  # the lr decays linearly to 0 over the last 20% of steps
    auxk_alpha: float = 1 / 32  # Gao et al.'s weight of the dead-latent loss
    dead_after_tokens: int = 100_000  # a latent silent this long is "dead" for AuxK
    group_chunks: int = 8  # tokens are shuffled within groups of this many chunks
    save_every_steps: int = 200  # a checkpoint (resume point) this often


@dataclass
class LossTerms:
    fvu: Tensor  # []: the whole dictionary's
    auxk: Tensor  # []
    top_indices: Tensor  # [batch, k]
    y_hat: Tensor  # [batch, d_in]: the reconstruction (prediction), with grad: a KL fine-tune splices it
    # []: the reconstruction term of the loss: fvu, or for a Matryoshka dictionary the mean of
    # fvu and its prefixes' FVUs
    reconstruction: Tensor


CHOOSE_ROWS = 256  # tokens a block when choosing latents: a [256, latent] block stays in cache


@torch.no_grad()
def choose(coder: SparseCoder, x: Float[Tensor, "batch d_in"]) -> tuple[Tensor, Tensor]:
    """The TopK choice, (top_values, top_indices) [batch, k], without gradient. The dense
    pre-activations are made and dropped a block of tokens at a time (1.5x faster at 4,096
    latents than one [batch, latent] pass)."""
    parts = [coder.pre_acts(x[start:start + CHOOSE_ROWS]).topk(coder.cfg.k, dim=-1, sorted=False)
             for start in range(0, max(1, x.shape[0]), CHOOSE_ROWS)]  # an empty batch still gives [0, k]
    return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


def auxk_prediction(coder: SparseCoder, x: Float[Tensor, "batch d_in"], dead: Bool[Tensor, " latent"],
                    k_aux: int) -> Float[Tensor, "batch d_in"]:
    """What each token's top `k_aux` dead latents decode to (no b_dec: AuxK predicts a residual).
    Computed over the dead latents alone, densely ([batch, dead]: a few percent of the latents,
    so cheaper than ranking and gathering from all of them), the rest of each row masked out."""
    dead_latents = dead.nonzero().squeeze(1)  # [dead]
    acts = coder.pre_acts_of(x, dead_latents)  # [batch, dead], with grad
    if len(dead_latents) > k_aux:
        with torch.no_grad():
            keep = torch.zeros_like(acts, dtype=torch.bool).scatter_(1, acts.topk(k_aux, dim=1).indices, True)
        acts = acts * keep
    return acts @ coder.W_dec[dead_latents]


def loss_terms(coder: SparseCoder, x: Float[Tensor, "batch d_in"], y: Float[Tensor, "batch d_in"],
               dead: Bool[Tensor, " latent"] | None) -> LossTerms:
    top_values, top_indices = choose(coder, x)
    top_acts = coder.chosen_acts(x, top_indices, top_values)  # [batch, k]: with grad
    y_hat = coder.decode(top_acts, top_indices) + coder.skip(x)
    error = y - y_hat
    total_variance = (y - y.mean(0)).pow(2).sum()
    fvu = error.pow(2).sum() / total_variance
    auxk = fvu.new_zeros(())
    n_dead = int(dead.sum()) if dead is not None else 0
    if n_dead:
        k_aux = y.shape[-1] // 2  # Gao et al. appendix B.1: each token's top d_in / 2 dead latents
        scale = min(n_dead / k_aux, 1.0)
        auxk = scale * (auxk_prediction(coder, x, dead, k_aux) - error.detach()).pow(2).sum() / total_variance
    prefixes = coder.cfg.prefixes_in_loss
    reconstruction = fvu
    if prefixes:
        nested = [prefix_fvu(coder, x, y, top_acts, top_indices, m, total_variance) for m in prefixes]
        reconstruction = (fvu + sum(nested)) / (1 + len(prefixes))
    return LossTerms(fvu, auxk, top_indices, y_hat, reconstruction)


def prefix_fvu(coder: SparseCoder, x: Float[Tensor, "batch d_in"], y: Float[Tensor, "batch d_in"],
               top_acts: Float[Tensor, "batch k"], top_indices: Tensor, prefix: int,
               total_variance: Tensor) -> Tensor:
    """The FVU of the reconstruction from each token's chosen latents below `prefix` alone
    (the rest of its code zeroed): the term a Matryoshka prefix adds to the loss."""
    y_hat = coder.decode(top_acts * (top_indices < prefix), top_indices) + coder.skip(x)
    return (y - y_hat).pow(2).sum() / total_variance


@torch.no_grad()
def initialise(coder: SparseCoder, x: Float[Tensor, "n d_in"], y: Float[Tensor, "n d_in"], seed: int) -> None:
    """Encoder from torch's default init under `seed`, decoder its transpose, biases centred."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(coder.cfg.d_in)  # nn.Linear's default (kaiming-uniform) range
    coder.encoder.weight.uniform_(-bound, bound, generator=gen)
    coder.encoder.bias.zero_()
    coder.W_dec.copy_(coder.encoder.weight)
    coder.normalize_decoder_()
    coder.b_dec.copy_(y.mean(0))
    if not coder.cfg.centers_input:  # transcoder: centre the pre-activations on the inputs' mean
        coder.encoder.bias.copy_(-x.mean(0) @ coder.encoder.weight.T)
    if coder.W_skip is not None:
        coder.W_skip.zero_()


class Trainer:
    """One dictionary's optimisation state; `step(x, y)` is one update."""

    def __init__(self, coder: SparseCoder, settings: TrainSettings, total_steps: int):
        self.coder, self.settings, self.total_steps = coder, settings, total_steps
        self.optimizer = torch.optim.Adam(coder.parameters(), lr=settings.lr)
        self.since_fired = torch.zeros(coder.num_latents, dtype=torch.long)  # tokens since each latent fired
        self.step_index = 0

    def lr_at(self, step: int) -> float:
        return lr_at(self.settings, self.total_steps, step)

    def step(self, x: Float[Tensor, "batch d_in"], y: Float[Tensor, "batch d_in"], extra_loss=None) -> dict:
        """One update on FVU + auxk_alpha * AuxK (+ `extra_loss(terms)`, a scalar tensor: the
        KL fine-tune's term, finetune.py); returns the terms' values."""
        coder, s = self.coder, self.settings
        dead = self.since_fired > s.dead_after_tokens
        terms = loss_terms(coder, x, y, dead)
        extra = extra_loss(terms) if extra_loss is not None else None
        loss = terms.reconstruction + s.auxk_alpha * terms.auxk + (extra if extra is not None else 0.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if coder.cfg.normalize_decoder:
            coder.remove_parallel_decoder_grad_()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_index)
        self.optimizer.step()
        if coder.cfg.normalize_decoder:
            coder.normalize_decoder_()
        fired = torch.zeros_like(dead)
        fired[terms.top_indices.flatten()] = True
        self.since_fired += x.shape[0]
        self.since_fired[fired] = 0
        self.step_index += 1
        coder.cfg.tokens_seen += x.shape[0]
        stats = {"fvu": terms.fvu.item(), "auxk": terms.auxk.item(), "dead": dead.float().mean().item()}
        if coder.cfg.prefixes_in_loss:
            stats["reconstruction"] = terms.reconstruction.item()
        if extra is not None:
            stats["extra"] = extra.item()
        return stats

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "since_fired": self.since_fired,
                "step": self.step_index, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.since_fired = state["since_fired"]
        self.step_index = state["step"]


def lr_at(settings: TrainSettings, total_steps: int, step: int) -> float:
    """The learning rate at `step`: a linear warm-up over warmup_steps, then flat, then a
    linear decay to 0 over the last decay_share of the steps."""
    warm = min(1.0, (step + 1) / settings.warmup_steps)
    decay_from = int(total_steps * (1 - settings.decay_share))
    left = (total_steps - step) / max(1, total_steps - decay_from)
    decay = 1.0 if step < decay_from else max(0.0, left)
    return settings.lr * warm * decay


def batch_plan(n_chunks: int, tokens_per_chunk: int, settings: TrainSettings) -> tuple[int, int]:
    """(groups, batches per group): the stream cycles over groups of chunks."""
    groups = max(1, n_chunks // settings.group_chunks)
    per_group = (min(settings.group_chunks, n_chunks) * tokens_per_chunk) // settings.batch_size
    if per_group == 0:
        raise ValueError(f"a batch of {settings.batch_size} tokens is more than a group of chunks holds")
    return groups, per_group


def distinct_tokens(n_chunks: int, tokens_per_chunk: int, settings: TrainSettings) -> int:
    """The tokens `batches` draws from: whole groups of chunks (a last partial group is left out)."""
    groups, _ = batch_plan(n_chunks, tokens_per_chunk, settings)
    return groups * min(settings.group_chunks, n_chunks) * tokens_per_chunk


def batches(load_chunk, n_chunks: int, tokens_per_chunk: int, settings: TrainSettings, seed: int,
            start_step: int, total_steps: int):
    """Yield (x, y) [batch, d] for steps start_step..total_steps-1; step s's batch is a pure
    function of (seed, s), so a resumed run sees the batches an unbroken one would have."""
    groups, per_group = batch_plan(n_chunks, tokens_per_chunk, settings)
    group_size = min(settings.group_chunks, n_chunks)
    step = start_step
    while step < total_steps:
        group, offset = divmod(step, per_group)
        epoch, g = divmod(group, groups)
        parts = [load_chunk(g * group_size + i) for i in range(group_size)]
        x = torch.cat([p[0] for p in parts])
        y = torch.cat([p[1] for p in parts])
        order = torch.from_numpy(np.random.default_rng([seed, epoch, g]).permutation(len(x)))
        for b in range(offset, per_group):
            if step >= total_steps:
                return
            take = order[b * settings.batch_size:(b + 1) * settings.batch_size]
            yield x[take], y[take]
            step += 1


def run(trainer: Trainer, stream, log=None, checkpoint=None) -> float:
    """Train over `stream` ((x, y) batches); returns seconds spent. `log(step, total, stats)`
    every 50 steps; `checkpoint()` every settings.save_every_steps and at the end."""
    start = time.perf_counter()
    for x, y in stream:
        stats = trainer.step(x, y)
        if log and (trainer.step_index % 50 == 0 or trainer.step_index == trainer.total_steps):
            log(trainer.step_index, trainer.total_steps, stats)
        if checkpoint and trainer.step_index % trainer.settings.save_every_steps == 0:
            checkpoint()
    if checkpoint:
        checkpoint()
    return time.perf_counter() - start
