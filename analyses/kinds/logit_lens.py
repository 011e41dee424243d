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
from analyses.kinds.tokens import prompt_tokens, single_token, token_strings, token_texts

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
    result = _lens_result(bridge, spec, tokens, targets, cache)
    progress(1.0, "done")
    return result


MAX_SET_TOKENS = 4096  # batch rows x positions one forward of a set's rows may take


@torch.no_grad()
def run_examples(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list[Result | UserError]:
    """A prompt set's rows (`kinds/sets.py`): each row's `run` result, or the UserError it
    raises, in its place. Rows of one token length (and one ablation) share a forward pass;
    each row's readout is its own (the unembedding is per row either way), so its numbers
    equal its `run` to float rounding."""
    bridge = model.bridge
    outcomes, read = row_batches.read_rows(specs, lambda spec: _read_inputs(bridge, spec))
    batches = row_batches.batches(
        {i: (int(tokens.shape[1]), spec.ablate, spec.ablation, spec.final_norm, spec.top_k, spec.positions)
         for i, (spec, tokens, _) in read.items()}, MAX_SET_TOKENS)
    for n, batch in enumerate(batches):
        progress(n / len(batches), f"reading every layer: batch {n + 1} of {len(batches)}")
        first = read[batch[0]][0]
        tokens = torch.cat([read[i][1] for i in batch])  # [batch, pos]
        cache = _residual_cache(bridge, first, tokens)
        for row, i in enumerate(batch):
            spec, own_tokens, targets = read[i]
            mine = cache.apply_slice_to_batch_dim(slice(row, row + 1))  # [1, pos, ...] per hook
            outcomes[i] = _lens_result(bridge, spec, own_tokens, targets, mine)
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


def _lens_result(bridge, spec: AnalysisSpec, tokens: Tensor, targets: list[tuple[str, int]], cache) -> Result:
    """One prompt's tables from its residual stream `cache` (batch of one)."""
    ids = [i for _, i in targets]
    positions = read_positions(spec, int(tokens.shape[1]))
    readout = read_all_layers(bridge, cache, positions, spec.top_k, ids, spec.final_norm)
    inputs = token_strings(bridge, tokens[0])
    tables = {"top": top_table(readout.labels, inputs, positions, readout.top_ids, readout.top_probs,
                               readout.top_logits, bridge)}
    if targets:
        tables["targets"] = target_table(readout.labels, positions, ids, readout.target_ranks,
                                         readout.target_probs, bridge)
    return Result(spec=spec, tables=tables, meta={"n_tokens": int(tokens.shape[1]),
                                                  "layers": readout.labels, "final_norm": spec.final_norm,
                                                  "ablated": spec.ablate, "positions_read": len(positions)})


def knockout_hooks(bridge, spec: AnalysisSpec) -> list:
    """The ablation's hooks (none without `ablate`), counting positions from 0."""
    if not spec.ablate:
        return []
    ablation = ablating.prepare(bridge, listtext.components(spec.ablate), spec.ablation or "mean")
    counter = Positions.of(bridge, cached=False)
    return [counter.fwd_hook(), *ablating.ablation_hooks(ablation, counter)]


@dataclass(frozen=True)
class Readout:
    """Every layer's prediction at every position: arrays [layer, pos, k] / [layer, pos, target]."""

    labels: list[str]
    top_ids: np.ndarray
    top_probs: np.ndarray
    top_logits: np.ndarray
    target_ranks: np.ndarray  # 0 = the argmax; only strictly larger logits count
    target_probs: np.ndarray


READOUT_BYTES = 64 * 2**20  # full-vocabulary logits one chunk of positions may take


def read_all_layers(bridge, cache, positions: list[int], top_k: int, targets: list[int],
                    final_norm: bool) -> Readout:
    """Every stack entry's full-vocabulary logits at `positions`, a chunk of them at a time
    (bounded memory on long prompts), from which the top-k, their probabilities and the
    targets' ranks all come: one unembedding instead of one per quantity; positions not
    asked for are never unembedded. Probabilities are exp(logit - logsumexp): no
    log-softmax of the whole vocabulary is kept. Arrays [entry, len(positions), ...]."""
    n_pos = len(positions)
    n_entries = int(bridge.cfg.n_layers) + 1  # every block's input and the final output
    d_vocab = int(bridge.cfg.d_vocab)
    chunk = max(1, READOUT_BYTES // (4 * n_entries * d_vocab))
    ids = torch.tensor(targets, dtype=torch.long)
    parts, labels = [], None
    for start in range(0, n_pos, chunk):
        logits, labels = lensed_logits(bridge, cache, _as_index(positions[start:start + chunk]),
                                       final_norm)  # [entry, chunk, vocab]
        normaliser = logits.logsumexp(-1, keepdim=True)  # [entry, chunk, 1]
        top_logits, top_ids = logits.topk(top_k, dim=-1)
        part = [top_ids, (top_logits - normaliser).exp(), top_logits]
        if targets:
            target_logits = logits[..., ids.to(logits.device)]  # [entry, chunk, target]
            ranks = target_ranks(logits, target_logits)
            part += [ranks, (target_logits - normaliser).exp()]
        parts.append(part)
    joined = [torch.cat(column, dim=1).cpu().numpy() for column in zip(*parts)]
    empty = np.zeros((len(labels), n_pos, 0))
    return Readout(labels=labels, top_ids=joined[0], top_probs=joined[1], top_logits=joined[2],
                   target_ranks=joined[3] if targets else empty,
                   target_probs=joined[4] if targets else empty)


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


def lensed_logits(bridge, cache, positions: slice | list[int], final_norm: bool
                  ) -> tuple[Float[Tensor, "entry pos d_vocab"], list[str]]:
    """The logits TransformerLens's `logit_lens` reads at `positions` (its stack of every
    block's input and the final output, its final norm with recomputed statistics, then
    W_U, b_U and the model's output transform) without the log-softmax and entropy it also
    computes over the whole vocabulary: those took as long as the unembedding itself."""
    where = Slice(positions)
    stack, labels = cache.accumulated_resid(layer=None, incl_mid=False, apply_ln=False,
                                            pos_slice=where, return_labels=True)  # [entry, 1, pos, d]
    if final_norm and bridge.cfg.normalization_type is not None:
        stack = cache.apply_ln_to_stack(stack, layer=None, pos_slice=where, has_batch_dim=True,
                                        recompute_ln=True)
    logits = (stack[:, 0].to(bridge.W_U.dtype) @ bridge.W_U + bridge.b_U).float()
    transform = getattr(getattr(bridge, "adapter", None), "apply_output_logits_transform", None)
    return (transform(logits) if callable(transform) else logits), labels


def top_table(labels: list[str], inputs: list[str], positions: list[int], top_ids: np.ndarray,
              probs: np.ndarray, logits: np.ndarray, bridge) -> pd.DataFrame:
    """top_ids, probs, logits: [layer, len(positions), k] → one row per (layer, position, rank)."""
    n_layer, n_pos, k = top_ids.shape
    layer_index, column, rank = np.meshgrid(np.arange(n_layer), np.arange(n_pos), np.arange(k),
                                            indexing="ij")
    position = np.asarray(positions)[column.ravel()]
    return pd.DataFrame({
        "layer": np.array(labels)[layer_index.ravel()],
        "layer_index": layer_index.ravel(),
        "position": position,
        "token": np.array(inputs, dtype=object)[position],
        "rank": rank.ravel() + 1,  # 1 = the most likely token
        "token_id": top_ids.ravel(),
        "token_str": token_texts(bridge, top_ids.ravel()),
        "prob": probs.ravel(),
        "logit": logits.ravel(),
    })


def target_table(labels: list[str], positions: list[int], ids: list[int], ranks: np.ndarray,
                 probs: np.ndarray, bridge) -> pd.DataFrame:
    """ranks, probs: [layer, len(positions), target] → one row per (layer, position, target)."""
    n_layer, n_pos, n_target = ranks.shape
    layer_index, column, target = np.meshgrid(np.arange(n_layer), np.arange(n_pos),
                                              np.arange(n_target), indexing="ij")
    token_ids = np.array(ids)[target.ravel()]
    return pd.DataFrame({
        "layer": np.array(labels)[layer_index.ravel()],
        "layer_index": layer_index.ravel(),
        "position": np.asarray(positions)[column.ravel()],
        "token_id": token_ids,
        "token_str": token_texts(bridge, token_ids),
        "rank": ranks.ravel() + 1,  # TransformerLens counts from 0
        "prob": probs.ravel(),
    })
