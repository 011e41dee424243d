"""Direct-path patching (the path patching of Wang et al. 2022, one edge at a time): how much
of the clean answer comes back when only the *direct* path from one sender head to one
receiver head's query, key or value input carries the clean signal.

For a sender head s (layer l_s) and a receiver head r (layer l_r > l_s), the corrupted run is
changed in one place: receiver r's `q` (or `k`, or `v`) input, before its layer norm, becomes

    resid_pre[l_r] (corrupted) + (z_s(clean) - z_s(corrupted)) @ W_O[s]

— exactly the input it would get if s alone were patched and every other component between
them were frozen at its corrupted value (Wang et al.'s "freeze everything else"); the
receiver's other inputs and every other head are untouched, and everything downstream of the
receiver runs normally. The metric and its normalisation are those of `activation_patching`.

This uses TransformerLens's split-QKV-input hooks (`hook_q_input`/`hook_k_input`/
`hook_v_input`, [batch, pos, head, d_model] before the layer norm), so it is available where
the bridge supports `set_use_split_qkv_input` for the architecture; the engine is the same
batched, resumed `Patcher` (`engine.py`) (a batch starts at its lowest receiver layer: the senders' deltas
come from cached activations, so nothing below a receiver is recomputed: each row joins the pass
at its receiver's layer).

Cells: int [n, 5] of (sender_layer, sender_head, receiver_layer, receiver_head, input), with
input indexing `INPUTS`; for grouped-query models, `k`/`v` receivers count key/value heads.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from analyses.core.errors import SpecError
from analyses.core.progress import Progress, counted, silent
from analyses.kinds.patching.engine import GRANULARITIES

INPUTS = ("q", "k", "v")
_Z = "blocks.{layer}.attn.hook_z"


def supported(bridge) -> bool:
    """Whether this architecture has split-QKV-input hooks (TransformerLens decides)."""
    try:
        bridge._validate_attention_fork_supported("use_split_qkv_input")
    except Exception:  # noqa: BLE001 - any refusal means "not on this model"
        return False
    return hasattr(bridge, "set_use_split_qkv_input")


def non_additive_heads(bridge) -> str | None:
    """Why a head's `z @ W_O` is not what it adds to the residual stream on this model, or
    None where it is. Direct paths and circuit edges carry exactly that write, so they mean
    nothing where a norm (Gemma-2's post-attention norm), a scale (Granite's
    `residual_multiplier`) or a parallel mixer (Falcon-H1's Mamba) sits between the head
    sum and the residual add. TransformerLens refuses the same blocks for its own edge
    attribution and faithfulness; this asks its check. Parallel attention and MLP (GPT-J,
    NeoX) pass: the heads still add their writes, only the MLP reads the layer's input."""
    from transformer_lens.tools.analysis.attribution_patching import _attention_write_obstruction

    return _attention_write_obstruction(bridge)


def require_additive_heads(bridge, field: str, what: str) -> None:
    """Refuse, saying why, where a head's write does not reach the residual stream as is."""
    detail = non_additive_heads(bridge)
    if detail is not None:
        arch = getattr(bridge.cfg, "architecture", None) or "this model"
        raise SpecError(field, f"{what} is not available on {arch}: {detail}, so a head's z @ W_O is "
                               "not what it adds to the residual stream and there is no such path to patch")


def require_support(bridge) -> None:
    """Refuse, naming the architecture, where TransformerLens has no split q/k/v inputs or
    a head's write is not additive."""
    if not supported(bridge):
        arch = getattr(bridge.cfg, "architecture", None) or "this model"
        raise SpecError("granularity", f"'direct_path' is not available on {arch}: "
                                       "TransformerLens has no split q/k/v input hooks for it")
    require_additive_heads(bridge, "granularity", "'direct_path'")


@contextmanager
def split_qkv_inputs(bridge):
    """The bridge with per-head q/k/v inputs for the duration (a flag on shared modules:
    hold the model's lock)."""
    before = bool(getattr(bridge.cfg, "use_split_qkv_input", False))
    bridge.set_use_split_qkv_input(True)
    try:
        yield bridge
    finally:
        bridge.set_use_split_qkv_input(before)


def input_heads(bridge) -> dict[str, int]:
    n_heads = int(bridge.cfg.n_heads)
    n_kv = int(getattr(bridge.cfg, "n_key_value_heads", None) or n_heads)
    return {"q": n_heads, "k": n_kv, "v": n_kv}


def path_cells(bridge, receiver_layers: list[int]) -> np.ndarray:
    """Every (sender head -> receiver head input) edge whose receiver lies in
    `receiver_layers`: int [n, 5], ordered by receiver layer, sender, receiver head, input."""
    n_heads, heads = int(bridge.cfg.n_heads), input_heads(bridge)
    rows = [(sl, sh, rl, rh, i)
            for rl in receiver_layers for sl in range(rl) for sh in range(n_heads)
            for i, name in enumerate(INPUTS) for rh in range(heads[name])]
    return np.array(rows, dtype=np.int64).reshape(-1, 5)


def sender_deltas(patcher) -> Float[Tensor, "layer head pos d_model"]:
    """Each head's clean-minus-corrupted output written into the residual stream."""
    z_site = GRANULARITIES["head_out"]
    w_o = patcher.bridge.W_O  # [layer, head, d_head, d_model]
    deltas = []
    for layer in range(patcher.n_layers):
        dz = patcher.clean_activation(z_site, layer) - patcher.corrupted_activation(z_site, layer)
        deltas.append(torch.einsum("bphd,hdm->bhpm", dz.float(), w_o[layer].float())[0])
    return torch.stack(deltas)


def _add_deltas(activation: Tensor, hook, rows: Tensor, heads: Tensor, deltas: Tensor) -> Tensor:
    """activation [batch, pos, head, d_model]: row rows[i] of head heads[i] gets deltas[i]."""
    if int(heads.max()) >= activation.shape[2]:
        raise SpecError("granularity", f"{hook.name} has {activation.shape[2]} heads")
    patched = activation.clone()
    patched[rows, :, heads] = activation[rows, :, heads] + deltas.to(activation.dtype)
    return patched


def patch_paths(patcher, cells: np.ndarray, progress: Progress = silent,
                span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """The metric with each edge of `cells` (int [n, 5]) patched alone: float [n]."""
    bridge = patcher.bridge
    require_support(bridge)
    if patcher.n_examples != 1:
        raise ValueError("direct paths are patched one prompt pair at a time")
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 5)
    deltas = sender_deltas(patcher)

    def hooks_for(batch: np.ndarray, offset: int, examples: np.ndarray):  # one example: row 0
        hooks = []
        for layer in sorted({int(x) for x in batch[:, 2] if x >= 0}):
            for i, name in enumerate(INPUTS):
                rows = np.flatnonzero((batch[:, 2] == layer) & (batch[:, 4] == i))
                if len(rows) == 0:
                    continue
                picked = batch[rows]
                hooks.append((f"blocks.{layer}.hook_{name}_input", partial(
                    _add_deltas, rows=torch.from_numpy(rows), heads=torch.from_numpy(picked[:, 3]),
                    deltas=deltas[picked[:, 0], picked[:, 1], offset:])))
        return hooks

    out = np.empty(len(cells))
    lo, hi, finished = span[0], span[1], 0
    with split_qkv_inputs(bridge):
        order = np.argsort(cells[:, 2], kind="stable")
        cap = patcher.rows_per_batch(split_qkv_inputs=True)
        for batch in [order[i:i + cap] for i in range(0, len(order), cap)]:
            out[batch] = patcher.measure(cells[batch], int(cells[batch, 2].min()), hooks_for,
                                         entries=cells[batch, 2])  # a row joins at its receiver
            finished += len(batch)
            progress(lo + (hi - lo) * finished / len(cells),
                     f"patched {finished} of {counted(len(cells), 'path')}")
    return out


def paths_table(cells: np.ndarray, raw: np.ndarray, value: np.ndarray) -> pd.DataFrame:
    """cells: int [n, 5]; raw, value: [n] -> rows of the `effects` table (position -1: every
    position of the sender's output is patched)."""
    return pd.DataFrame({
        "granularity": "direct_path",
        "layer": cells[:, 2],
        "position": -1,
        "head": cells[:, 3],
        "value": np.asarray(value, dtype=np.float64),
        "raw": np.asarray(raw, dtype=np.float64),
        "sender_layer": cells[:, 0],
        "sender_head": cells[:, 1],
        "receiver_input": np.array(INPUTS)[cells[:, 4]],
    })
