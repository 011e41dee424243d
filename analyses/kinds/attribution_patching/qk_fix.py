"""AtP*'s query/key fix (Kramár et al. 2024): a query or key acts only through its head's
attention softmax, where the linear approximation fails when attention saturates. For `q` /
`k` nodes the patched attention pattern is recomputed exactly (softmax of the scores with that
one query, or that one key, taken from the clean run; read from one batched forward that
patches every query, or every key, of a layer, since score row t depends on query t alone and
column s on key s alone), and only the rest is linearised: atp = sum over the pattern of
dmetric/dA * (A' - A)."""
from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from analyses.core.errors import UserError
from analyses.kinds.attribution_patching.nodes import NODE_KINDS, PATTERN, SCORES


def qk_fixed_scores(bridge, pair, attribution, layers: list[int]) -> dict:
    """For `q` and `k` nodes: [rows, pos, head] estimates with the softmax recomputed exactly.

    Needs the corrupted scores S and pattern A and the pattern's gradient G (in
    `attribution`), and the scores with every query (or every key) of a layer taken from the
    clean run: row 2i patches the queries of layers[i], row 2i + 1 its keys, one forward."""
    n_heads = int(bridge.cfg.n_heads)
    q_names = [NODE_KINDS["q"].hook.format(layer=layer) for layer in layers]
    k_names = [NODE_KINDS["k"].hook.format(layer=layer) for layer in layers]
    with torch.no_grad():
        _, clean = bridge.run_with_cache(pair.clean, names_filter=q_names + k_names)
    patched_scores: dict[int, Tensor] = {}

    def patch_all(activation: Tensor, hook, row: int, clean_act: Tensor) -> Tensor:
        activation = activation.clone()
        activation[row] = clean_act[0]
        return activation

    def capture(scores: Tensor, hook, layer: int) -> None:
        patched_scores[layer] = scores.detach().clone()

    fwd_hooks = []
    for i, layer in enumerate(layers):
        for row, name in ((2 * i, q_names[i]), (2 * i + 1, k_names[i])):
            fwd_hooks.append((name, partial(patch_all, row=row, clean_act=clean[name])))
        fwd_hooks.append((SCORES.format(layer=layer), partial(capture, layer=layer)))
    with torch.no_grad():
        bridge.run_with_hooks(pair.corrupted.expand(2 * len(layers), -1), fwd_hooks=fwd_hooks)

    out = {}
    for i, layer in enumerate(layers):
        scores = attribution.corrupted[SCORES.format(layer=layer)].float()  # [head, q, k]
        pattern = attribution.corrupted[PATTERN.format(layer=layer)].float()
        grad = attribution.grads[PATTERN.format(layer=layer)].float()  # [rows, head, q, k]
        if (scores.softmax(-1) - pattern).abs().max() > 1e-4:
            raise UserError("qk_fix: on this model the attention pattern is not the softmax of "
                            "hook_attn_scores, so the exact recomputation does not apply; run "
                            "without qk_fix")
        with_q = patched_scores[layer][2 * i].float()  # row t: clean query t, corrupted keys
        with_k = patched_scores[layer][2 * i + 1].float()  # column s: clean key s
        d_pattern_q = with_q.softmax(-1) - pattern  # [head, q, k]: query t patched -> row t
        q_est = torch.einsum("hts,rhts->rth", d_pattern_q, grad)  # [rows, pos, head]
        per_head = key_patch_effects(scores, pattern, with_k, grad)  # [rows, pos, head]
        n_kv = attribution.delta[k_names[i]].shape[1]
        group = n_heads // n_kv  # query heads h*group .. h*group + group - 1 share kv head h
        k_est = per_head.reshape(*per_head.shape[:2], n_kv, group).sum(-1)
        out[("q", layer)] = q_est
        out[("k", layer)] = k_est
    return out


def key_patch_effects(scores: Tensor, pattern: Tensor, with_k: Tensor, grad: Tensor) -> Tensor:
    """[rows, key pos, head]: sum of G * (A' - A) when key s alone is patched, per query head.

    scores, pattern, with_k: [head, q, k]; grad: [rows, head, q, k]. Column s of the scores
    takes `with_k`'s column s; every query row is renormalised exactly."""
    n_heads, n_pos, _ = scores.shape
    out = torch.empty(grad.shape[0], n_pos, n_heads, dtype=grad.dtype, device=grad.device)
    chunk = max(1, (1 << 24) // max(n_heads * n_pos * n_pos, 1))  # bounded memory
    for lo in range(0, n_pos, chunk):
        keys = torch.arange(lo, min(lo + chunk, n_pos), device=scores.device)
        patched = scores.unsqueeze(0).repeat(len(keys), 1, 1, 1)  # [s, head, q, k]
        rows = torch.arange(len(keys), device=scores.device)
        patched[rows, :, :, keys] = with_k[:, :, keys].permute(2, 0, 1)
        d_pattern = patched.softmax(-1) - pattern  # [s, head, q, k]
        out[:, lo:lo + len(keys)] = torch.einsum("shqk,rhqk->rsh", d_pattern, grad)
    return out
