"""Logit lens (nostalgebraist 2020): read each layer's residual stream through
the model's final norm and unembedding, and ask what it would predict there.

Reads what TransformerLens's `tools.analysis.logit_lens` reads (its stack, and the
model's own final norm with recomputed statistics, so the last stack entry
(`final_post`) equals the model's output distribution), with a leaner readout
(`lensed_logits`); a test holds the two equal. The stack holds every
block's input (`L_pre`) and the final output.

With `ablate=` (heads `L1H7`, `L0.mlp`, `L0.attn`; `ablation=zero|mean`) the model is read
with those components knocked out (`analyses.kinds.interventions.ablation`), the hooks
scoped to this one forward pass: what each layer predicts once they are gone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.utilities import Slice

from analyses.core import listtext
from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds import row_batches
from analyses.kinds.interventions import ablation as ablating
from analyses.kinds.interventions.positions import Positions
from analyses.kinds.tokens import prompt_tokens, single_token, token_texts

MAX_TARGETS = 64  # target tokens one run may follow: each adds a row per layer and position
SORT_FROM = 8  # from here one sort per row (0.7 s) beats counting each target (0.09 s) on a GPT-2 chunk
TOP_COLUMNS = CATALOGUE["logit_lens"].tables["top"]
TARGET_COLUMNS = CATALOGUE["logit_lens"].tables["targets"]


def residual_stream_hooks(n_layers: int) -> list[str]:
    """The hooks the lens's stack is built from: every block's input and the last block's
    output. Exactly these: caching every component's output as well made the forward 1.5x
    slower on the embedded model (52 hooks instead of 4)."""
    return [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)] + [
        f"blocks.{n_layers - 1}.hook_resid_post"]


@torch.no_grad()
def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec, tokens, targets = _read_inputs(bridge, spec)
    progress(0.1, "running the model")
    cache = _residual_cache(bridge, spec, tokens)
    progress(0.5, "reading every layer through the unembedding")
    result, = _lens_results(bridge, [spec], tokens, [targets], cache)
    progress(1.0, "done")
    return result


MAX_SET_TOKENS = 4096  # batch rows x positions one forward of a set's rows may take


@torch.no_grad()
def run_examples(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list[Result | UserError]:
    """A prompt set's rows (`kinds/sets.py`): each row's `run` result, or the UserError it
    raises, in its place. Rows of one token length (and one ablation, readout and number of
    targets) share a forward pass and are read out together: one unembedding, one top-k and
    one frame per table for the batch, cut per row. Each row's numbers are its own (the lens
    reads each position alone), so they equal its `run` to float rounding."""
    bridge = model.bridge
    outcomes, read = row_batches.read_rows(specs, lambda spec: _read_inputs(bridge, spec))
    batches = row_batches.batches(
        {i: (int(tokens.shape[1]), spec.ablate, spec.ablation, spec.final_norm, spec.top_k, spec.positions,
             len(targets)) for i, (spec, tokens, targets) in read.items()}, MAX_SET_TOKENS)
    for n, batch in enumerate(batches):
        progress(n / len(batches), f"reading every layer: batch {n + 1} of {len(batches)}")
        specs, row_tokens, targets = zip(*(read[i] for i in batch))
        tokens = torch.cat(row_tokens)  # [batch, pos]
        cache = _residual_cache(bridge, specs[0], tokens)
        for i, result in zip(batch, _lens_results(bridge, list(specs), tokens, list(targets), cache)):
            outcomes[i] = result
    progress(1.0, "done")
    return outcomes


def _read_inputs(bridge, spec: AnalysisSpec) -> tuple[AnalysisSpec, Tensor, list[tuple[str, int]]]:
    """The spec with its defaults, its prompt's tokens [1, pos] and its (target, id) pairs;
    a UserError names what is wrong (a position window past the prompt's end too)."""
    spec = spec.with_defaults()
    tokens = prompt_tokens(bridge, spec.prompt)  # [1, pos]
    if len(spec.targets()) > MAX_TARGETS:
        raise SpecError("token", f"{len(spec.targets())} target tokens; at most {MAX_TARGETS} "
                                 "are followed in one run")
    targets = [(t, single_token(bridge, t, "token")) for t in spec.targets()]
    if spec.ablation not in (None, "mean") and spec.ablate is None:
        raise SpecError("ablation", "says how to ablate; name what to ablate in ablate= as well")
    read_positions(spec, int(tokens.shape[1]))
    return spec, tokens, targets


def read_positions(spec: AnalysisSpec, n_tokens: int) -> list[int]:
    """The input positions read out: the spec's window, or every position."""
    if spec.positions is None:
        return list(range(n_tokens))
    chosen = listtext.spans(spec.positions)
    if chosen[-1] >= n_tokens:
        raise SpecError("positions", f"position {chosen[-1]} is past the prompt's end: it has {n_tokens} "
                                     f"tokens (with BOS), positions 0-{n_tokens - 1}")
    return chosen


def _residual_cache(bridge, spec: AnalysisSpec, tokens: Tensor):
    """The residual stream the lens reads, for every row of `tokens` [batch, pos], with the
    spec's components knocked out."""
    with bridge.hooks(fwd_hooks=knockout_hooks(bridge, spec)):
        _, cache = bridge.run_with_cache(
            tokens, names_filter=residual_stream_hooks(int(bridge.cfg.n_layers)))
    return cache


def _lens_results(bridge, specs: list[AnalysisSpec], tokens: Tensor, targets: list[list[tuple[str, int]]],
                  cache) -> list[Result]:
    """Each row's tables from a batch's residual stream `cache` (tokens [batch, pos]); the rows
    share their positions, top_k, final_norm and number of targets (`specs[0]` says which).
    Each table is built once for the batch and cut per row."""
    spec = specs[0]
    ids = torch.tensor([[i for _, i in row] for row in targets], dtype=torch.long)  # [batch, target]
    positions = read_positions(spec, int(tokens.shape[1]))
    readout = read_all_layers(bridge, cache, positions, spec.top_k, ids, spec.final_norm)
    inputs = token_texts(bridge, tokens)  # [batch, pos]
    per_row = len(readout.labels) * len(positions)  # table rows per row of the batch, per k / target
    tables = [{"top": top} for top in row_batches.split_rows(
        top_table(readout.labels, inputs, positions, readout.top_ids, readout.top_probs, readout.top_logits,
                  bridge), [per_row * spec.top_k] * len(specs))]
    if ids.shape[1]:
        for mine, part in zip(tables, row_batches.split_rows(
                target_table(readout.labels, positions, ids.numpy(), readout.target_ranks, readout.target_probs,
                             bridge), [per_row * ids.shape[1]] * len(specs))):
            mine["targets"] = part
    return [Result(spec=own, tables=mine, meta={"n_tokens": int(tokens.shape[1]), "layers": readout.labels,
                                                "final_norm": own.final_norm, "ablated": own.ablate,
                                                "positions_read": len(positions)})
            for own, mine in zip(specs, tables)]


def knockout_hooks(bridge, spec: AnalysisSpec) -> list:
    """The ablation's hooks (none without `ablate`), counting positions from 0."""
    if not spec.ablate:
        return []
    ablation = ablating.prepare(bridge, listtext.components(spec.ablate), spec.ablation or "mean")
    counter = Positions.of(bridge, cached=False)
    return [counter.fwd_hook(), *ablating.ablation_hooks(ablation, counter)]


@dataclass(frozen=True)
class Readout:
    """Every layer's prediction at every position of every row of a batch: arrays
    [layer, batch, pos, k] / [layer, batch, pos, target]."""

    labels: list[str]
    top_ids: np.ndarray
    top_probs: np.ndarray
    top_logits: np.ndarray
    target_ranks: np.ndarray  # 0 = the argmax; only strictly larger logits count
    target_probs: np.ndarray


READOUT_BYTES = 64 * 2**20  # full-vocabulary logits one chunk of positions may take (memory)
# Each chunk's logits are read four times after the unembedding writes them (logsumexp, top-k,
# each target's rank): from cache rather than memory that is ~3x faster (the ioi set on the
# embedded model: 64 MB chunks 1.7 s, 2 MB 0.6 s). Chunks aim at CACHE_BYTES, but keep at least
# MIN_ROWS (entry, position) rows per unembedding where READOUT_BYTES allows: below that, reading
# a big W_U (GPT-2's is 154 MB) for every chunk costs more than the logits' cache misses.
CACHE_BYTES = 2 * 2**20
MIN_ROWS = 256


def chunk_positions(n_entries: int, d_vocab: int) -> int:
    """How many (row, position) pairs one readout chunk unembeds."""
    per_position = 4 * n_entries * d_vocab  # bytes of float32 logits
    wanted = max(CACHE_BYTES // per_position, -(-MIN_ROWS // n_entries))
    return max(1, min(wanted, READOUT_BYTES // per_position))


def read_all_layers(bridge, cache, positions: list[int], top_k: int, targets: Tensor,
                    final_norm: bool) -> Readout:
    """Every stack entry's full-vocabulary logits at `positions` of every row of the batch
    (targets: each row's target ids [batch, target]), a chunk of (row, position) pairs at a
    time (bounded memory on long prompts and big batches), from which the top-k, their
    probabilities and the targets' ranks all come: one unembedding instead of one per
    quantity; positions not asked for are never unembedded. Probabilities are
    exp(logit - logsumexp): no log-softmax of the whole vocabulary is kept. Arrays
    [entry, batch, len(positions), ...]."""
    stack, labels = lensed_stack(bridge, cache, _as_index(positions), final_norm)  # [entry, batch, pos, d]
    n_entries, n_rows, n_pos = stack.shape[:3]
    flat = stack.flatten(1, 2)  # [entry, batch * pos, d_model]: row-major, as the tables run
    ids = targets.repeat_interleave(n_pos, dim=0)  # [batch * pos, target]
    chunk = chunk_positions(n_entries, int(bridge.cfg.d_vocab))
    parts = []
    for start in range(0, flat.shape[1], chunk):
        logits = unembed(bridge, flat[:, start:start + chunk])  # [entry, chunk, vocab]
        normaliser = logits.logsumexp(-1, keepdim=True)  # [entry, chunk, 1]
        top_logits, top_ids = logits.topk(top_k, dim=-1)
        part = [top_ids, (top_logits - normaliser).exp(), top_logits]
        if ids.shape[1]:
            mine = ids[start:start + chunk].to(logits.device)  # [chunk, target]
            target_logits = logits.gather(-1, mine.expand(n_entries, -1, -1))  # [entry, chunk, target]
            part += [target_ranks(logits, target_logits), (target_logits - normaliser).exp()]
        parts.append(part)
    joined = [torch.cat(column, dim=1).cpu().numpy().reshape(n_entries, n_rows, n_pos, -1)
              for column in zip(*parts)]
    empty = np.zeros((n_entries, n_rows, n_pos, 0))
    return Readout(labels=labels, top_ids=joined[0], top_probs=joined[1], top_logits=joined[2],
                   target_ranks=joined[3] if ids.shape[1] else empty,
                   target_probs=joined[4] if ids.shape[1] else empty)


def _as_index(positions: list[int]) -> slice | list[int]:
    """A run of consecutive positions as a slice (a view, no copy), others as a list."""
    if positions[-1] - positions[0] + 1 == len(positions):
        return slice(positions[0], positions[-1] + 1)
    return positions


def target_ranks(logits: Float[Tensor, "entry pos d_vocab"],
                 target_logits: Float[Tensor, "entry pos target"]) -> Tensor:
    """[entry, pos, target] (long): how many of the row's logits are strictly larger than
    each target's — 0 for the argmax, and a tie never pushes a target down.

    Memory stays that of the logits whatever the number of targets: few targets are
    counted one at a time against the row (a bool the row's size each); from `SORT_FROM`
    on, each row is sorted once and every target's logit is placed by binary search
    (vocab − its insertion point after equal values) — comparing all targets at once
    took [entry, pos, target, vocab] bytes, 16 GB per chunk for 1,000 targets on GPT-2."""
    if target_logits.shape[-1] < SORT_FROM:
        return torch.stack([(logits > target_logits[..., i, None]).sum(-1)
                            for i in range(target_logits.shape[-1])], dim=-1)
    ascending = logits.sort(dim=-1).values  # [entry, pos, vocab]
    at_or_below = torch.searchsorted(ascending, target_logits.contiguous(), right=True)
    return logits.shape[-1] - at_or_below


def lensed_stack(bridge, cache, positions: slice | list[int], final_norm: bool
                 ) -> tuple[Float[Tensor, "entry batch pos d_model"], list[str]]:
    """The residual stack TransformerLens's `logit_lens` reads at `positions` (every block's
    input and the final output, through its final norm with recomputed statistics), for
    every row of the cache's batch."""
    where = Slice(positions)
    stack, labels = cache.accumulated_resid(layer=None, incl_mid=False, apply_ln=False,
                                            pos_slice=where, return_labels=True)  # [entry, batch, pos, d]
    if final_norm and bridge.cfg.normalization_type is not None:
        stack = cache.apply_ln_to_stack(stack, layer=None, pos_slice=where, has_batch_dim=True,
                                        recompute_ln=True)
    return stack, labels


def unembed(bridge, stack: Float[Tensor, "entry n d_model"]) -> Float[Tensor, "entry n d_vocab"]:
    """The logits `logit_lens` reads from a stack (W_U, b_U and the model's output transform)
    without the log-softmax and entropy it also computes over the whole vocabulary: those
    took as long as the unembedding itself."""
    logits = (stack.to(bridge.W_U.dtype) @ bridge.W_U + bridge.b_U).float()
    transform = getattr(getattr(bridge, "adapter", None), "apply_output_logits_transform", None)
    return transform(logits) if callable(transform) else logits


def top_table(labels: list[str], inputs: np.ndarray, positions: list[int], top_ids: np.ndarray,
              probs: np.ndarray, logits: np.ndarray, bridge) -> pd.DataFrame:
    """top_ids, probs, logits: [layer, batch, len(positions), k]; inputs: each row's token
    texts [batch, pos] → one row per (row, layer, position, rank), each row's lines together."""
    n_layer, n_rows, n_pos, k = top_ids.shape
    row, layer_index, column, rank = np.meshgrid(np.arange(n_rows), np.arange(n_layer), np.arange(n_pos),
                                                 np.arange(k), indexing="ij")
    position = np.asarray(positions)[column.ravel()]
    ids = top_ids.transpose(1, 0, 2, 3).ravel()  # row-major per row of the batch
    return pd.DataFrame({
        "layer": np.array(labels)[layer_index.ravel()],
        "layer_index": layer_index.ravel(),
        "position": position,
        "token": inputs[row.ravel(), position],
        "rank": rank.ravel() + 1,  # 1 = the most likely token
        "token_id": ids,
        "token_str": token_texts(bridge, ids),
        "prob": probs.transpose(1, 0, 2, 3).ravel(),
        "logit": logits.transpose(1, 0, 2, 3).ravel(),
    })


def target_table(labels: list[str], positions: list[int], ids: np.ndarray, ranks: np.ndarray,
                 probs: np.ndarray, bridge) -> pd.DataFrame:
    """ids: each row's targets [batch, target]; ranks, probs: [layer, batch, len(positions),
    target] → one row per (row, layer, position, target), each row's lines together."""
    n_layer, n_rows, n_pos, n_target = ranks.shape
    row, layer_index, column, target = np.meshgrid(np.arange(n_rows), np.arange(n_layer), np.arange(n_pos),
                                                   np.arange(n_target), indexing="ij")
    token_ids = ids[row.ravel(), target.ravel()]
    return pd.DataFrame({
        "layer": np.array(labels)[layer_index.ravel()],
        "layer_index": layer_index.ravel(),
        "position": np.asarray(positions)[column.ravel()],
        "token_id": token_ids,
        "token_str": token_texts(bridge, token_ids),
        "rank": ranks.transpose(1, 0, 2, 3).ravel() + 1,  # TransformerLens counts from 0
        "prob": probs.transpose(1, 0, 2, 3).ravel(),
    })
