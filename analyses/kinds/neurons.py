"""Neuron atlas: what each MLP neuron writes, read directly through the unembedding.

A neuron's output weight row W_out[layer][neuron] (d_model) is the direction it
adds to the residual stream, scaled by its activation. Read through the
unembedding W_U it says which next tokens the neuron promotes (top) and
suppresses (bottom) when it fires positively — the direct path only, as in
Geva et al. 2022 ("Transformer Feed-Forward Layers Build Predictions by
Promoting Concepts in the Vocabulary Space") and Gurnee et al. 2024 ("Universal
Neurons in GPT2"). With `final_norm` (the default) the row first goes through
the final norm as far as a single direction can: centred for LayerNorm, then
multiplied by the norm's scale weight (the per-position division by the
residual's norm changes every neuron alike and is left out).

Plain (GPT-2, NeoX) and gated (Llama, Gemma, Qwen2) MLPs read the same way: the
bridge's `blocks[l].mlp.W_out` is [d_mlp, d_model] for both, and `hook_post` is
the activation that multiplies it. Rows are read in chunks of neurons with
`torch.topk` per chunk, so memory stays bounded (`chunk_size`) however many
neurons the model has; matmuls run in the model's dtype.

Tables:
- `atlas`: every neuron in scope (all, one layer, or one neuron) with its
  `top_k` promoted and `top_k` suppressed tokens (`rank` 1 = strongest).
- `promoters` (with `token=`): the reverse question — for each target token, the
  `top_k` neurons in scope whose row most promotes it, ranked over all layers.
- `activations` (with `prompt=`): for each layer in scope, the `top_k` neurons
  with the largest |activation| at any position of the prompt after BOS (or the
  one `neuron=`), with their activation at every position. BOS is never ranked
  (`analyses.kinds.bos`): its activations are the attention sink's outliers.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.bos import first_after_bos, past_bos
from analyses.kinds.final_norm import FinalNorm
from analyses.kinds.ranges import check_index, check_layer
from analyses.kinds.tokens import prompt_tokens, single_token, token_decoder, token_strings, token_texts

ATLAS_COLUMNS = CATALOGUE["neurons"].tables["atlas"]
PROMOTER_COLUMNS = CATALOGUE["neurons"].tables["promoters"]
ACTIVATION_COLUMNS = CATALOGUE["neurons"].tables["activations"]  # token: the input there

MAX_CHUNK = 4096  # neurons per matmul at most
LOGIT_BUDGET = 1 << 28  # bytes of one chunk's [chunk, d_vocab] scores (256 MiB)


def chunk_size(d_vocab: int) -> int:
    """Neurons per chunk: MAX_CHUNK, fewer when the vocabulary is big (GPT-2: 1304)."""
    return max(1, min(MAX_CHUNK, LOGIT_BUDGET // (4 * d_vocab)))


def final_norm_reader(bridge, final_norm: bool) -> Callable[[Tensor], Tensor]:
    """rows [n, d_model] -> what the unembedding reads of them, through the final norm's
    centring (LayerNorm) and scale weight when `final_norm`, else unchanged."""
    return FinalNorm(bridge).linear if final_norm else (lambda rows: rows)


def scope(bridge, spec: AnalysisSpec) -> list[tuple[int, Tensor]]:
    """(layer, neuron ids) to read: every neuron, one layer's, or one neuron."""
    n_layers, d_mlp = bridge.cfg.n_layers, bridge.cfg.d_mlp
    if spec.layer is not None:
        check_layer(bridge, spec.layer)
    if spec.neuron is not None and spec.layer is None:
        raise SpecError("neuron", "needs `layer` too: neuron indices count within one layer")
    if spec.neuron is not None:
        check_index("neuron", spec.neuron, d_mlp, f"each MLP has {d_mlp} neurons")
    layers = range(n_layers) if spec.layer is None else [spec.layer]
    neurons = torch.arange(d_mlp) if spec.neuron is None else torch.tensor([spec.neuron])
    return [(layer, neurons) for layer in layers]


def chunks(bridge, where: list[tuple[int, Tensor]], read: Callable[[Tensor], Tensor]
           ) -> Iterator[tuple[int, Tensor, Float[Tensor, "chunk d_model"]]]:
    """(layer, neuron ids [chunk], read-out rows [chunk, d_model]) in bounded chunks."""
    step = chunk_size(bridge.W_U.shape[1])
    for layer, neurons in where:
        w_out = bridge.blocks[layer].mlp.W_out  # [d_mlp, d_model], a view of the weights
        for start in range(0, len(neurons), step):
            ids = neurons[start:start + step]
            yield layer, ids, read(w_out[ids.to(w_out.device)])


@dataclass(frozen=True)
class AtlasReadout:
    """What one pass over the neurons' output rows read."""

    columns: dict[str, np.ndarray]  # the atlas table's columns (token_str aside), 2k rows a neuron
    target_scores: Float[Tensor, "neuron target"] | None  # each neuron's score per target token
    neuron_ids: np.ndarray  # int [neuron, 2]: (layer, neuron), aligned with target_scores' rows


@torch.no_grad()
def atlas(bridge, where: list[tuple[int, Tensor]], top_k: int, final_norm: bool,
          token_ids: list[int] = (), progress: Progress = silent) -> AtlasReadout:
    """Top and bottom `top_k` tokens of every neuron in `where`, and (with `token_ids`)
    every such neuron's score for each target token."""
    w_u = bridge.W_U  # [d_model, d_vocab]
    k = min(top_k, w_u.shape[1])
    read = final_norm_reader(bridge, final_norm)
    targets = w_u[:, list(token_ids)] if token_ids else None  # [d_model, target]
    parts: dict[str, list] = {n: [] for n in ("layer", "neuron", "rank", "token_id", "score", "direction")}
    target_scores, seen = [], []
    total = sum(len(n) for _, n in where)
    done = 0
    for layer, ids, rows in chunks(bridge, where, read):
        scores = rows.to(w_u.dtype) @ w_u  # [chunk, d_vocab]
        top, bottom = scores.topk(k, dim=-1), scores.topk(k, dim=-1, largest=False)  # [chunk, k]
        values = torch.cat([top.values, bottom.values], -1)  # [chunk, 2k]: promoted, then suppressed
        tokens = torch.cat([top.indices, bottom.indices], -1)
        parts["layer"].append(np.full(values.numel(), layer))
        parts["neuron"].append(ids.repeat_interleave(2 * k).numpy())
        parts["rank"].append(np.tile(np.arange(1, k + 1), 2 * len(ids)))
        parts["token_id"].append(tokens.flatten().cpu().numpy())
        parts["score"].append(values.flatten().float().cpu().numpy())
        parts["direction"].append(np.tile(np.repeat(np.array(["promote", "suppress"], dtype=object), k),
                                          len(ids)))
        if targets is not None:
            target_scores.append((rows.to(w_u.dtype) @ targets).float().cpu())
        seen.append(np.stack([np.full(len(ids), layer), ids.numpy()], axis=1))
        done += len(ids)
        progress(done / total, f"layer {layer}: {done}/{total} neurons read")
    columns = {n: np.concatenate(v) for n, v in parts.items()}
    return AtlasReadout(columns, torch.cat(target_scores) if targets is not None else None,
                        np.concatenate(seen))


def promoters_table(scores: Float[Tensor, "neuron target"], neuron_ids: np.ndarray,
                    token_ids: list[int], top_k: int, decode) -> pd.DataFrame:
    """For each target token, the `top_k` neurons whose row scores it highest."""
    k = min(top_k, scores.shape[0])
    values, rows = scores.topk(k, dim=0)  # [k, target]
    frames = []
    for j, token_id in enumerate(token_ids):
        picked = neuron_ids[rows[:, j].numpy()]
        frames.append(pd.DataFrame({
            "token_id": token_id, "token_str": decode(token_id), "layer": picked[:, 0],
            "neuron": picked[:, 1], "score": values[:, j].numpy().astype(float),
            "rank": np.arange(1, k + 1),
        }))
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def activations_table(bridge, prompt: str, where: list[tuple[int, Tensor]], top_k: int
                      ) -> pd.DataFrame:
    """Each layer's `top_k` neurons by max |activation| over the prompt's positions after
    BOS (or the one neuron asked for), with their `hook_post` activation at every position,
    BOS's included: shown, never ranked (`analyses.kinds.bos`)."""
    tokens = prompt_tokens(bridge, prompt)
    first = first_after_bos(bridge)
    names = {f"blocks.{layer}.mlp.hook_post": layer for layer, _ in where}
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    inputs = np.array(token_strings(bridge, tokens[0]), dtype=object)
    frames = []
    for name, (layer, neurons) in zip(names, where):
        acts = cache[name][0][:, neurons.to(cache[name].device)].float().cpu()  # [pos, neuron]
        k = min(top_k, acts.shape[1])
        chosen = past_bos(acts, first, pos_dim=0).abs().max(0).values.topk(k).indices  # strongest first
        values = acts[:, chosen]  # [pos, k]
        position, column = np.meshgrid(np.arange(values.shape[0]), np.arange(k), indexing="ij")
        frames.append(pd.DataFrame({
            "layer": layer, "neuron": neurons[chosen].numpy()[column.ravel()],
            "position": position.ravel(), "token": inputs[position.ravel()],
            "activation": values.numpy().ravel(),
        }))
    return pd.concat(frames, ignore_index=True)


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec = spec.with_defaults()
    where = scope(bridge, spec)
    token_ids = list(dict.fromkeys(single_token(bridge, t, "token") for t in spec.targets()))
    decode = token_decoder(bridge)
    readout = atlas(bridge, where, spec.top_k, spec.final_norm, token_ids,
                    lambda f, m: progress(0.9 * f, m))
    neuron_ids = readout.neuron_ids
    frame = pd.DataFrame(readout.columns)
    frame.insert(4, "token_str", token_texts(bridge, frame.token_id.to_numpy()))
    tables = {"atlas": frame.loc[:, list(ATLAS_COLUMNS)]}
    if token_ids:
        tables["promoters"] = promoters_table(readout.target_scores, neuron_ids, token_ids, spec.top_k, decode)
    if spec.prompt is not None:
        progress(0.9, "running the prompt")
        tables["activations"] = activations_table(bridge, spec.prompt, where, spec.top_k)
    progress(1.0, "done")
    return Result(spec=spec, tables=tables, meta={
        "neurons": int(len(neuron_ids)), "d_mlp": bridge.cfg.d_mlp, "final_norm": spec.final_norm,
        "chunk_size": chunk_size(bridge.W_U.shape[1]),
    })
