"""Attention patterns: the model's own attention probabilities, head by head, on a prompt.

For each head, query position q and key position k <= q, `weight` is the probability the
head's softmax gives key k at query q (TransformerLens's `hook_pattern`, which is the
model's own attention: the tests hold it to Hugging Face's eager attention with
`output_attentions=True`). Keys after the query are masked (causal) and not listed, so each
(layer, head, query_pos) row set sums to 1 over `key_pos`. `layer=` and `head=` narrow the
table; a table over `MAX_ROWS` rows is refused before the forward pass, naming the narrowing
that would fit.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.ranges import check_index, check_layer
from analyses.kinds.tokens import prompt_tokens, token_strings

COLUMNS = CATALOGUE["attention"].tables["patterns"]
MAX_ROWS = 1_000_000  # the embedded model at its full 256-token context: 789,504 rows


def scope(bridge, spec: AnalysisSpec) -> tuple[list[int], list[int]]:
    """The layers and heads to read: all, or the ones `layer` / `head` name."""
    n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
    if spec.layer is not None:
        check_layer(bridge, spec.layer)
    if spec.head is not None:
        check_index("head", spec.head, n_heads, f"the model has {n_heads} heads a layer")
    layers = [spec.layer] if spec.layer is not None else list(range(n_layers))
    heads = [spec.head] if spec.head is not None else list(range(n_heads))
    return layers, heads


def check_size(n_layers: int, n_heads: int, n_tokens: int, narrowed: bool) -> None:
    """Refuse a table over MAX_ROWS rows, saying what would fit."""
    per_head = n_tokens * (n_tokens + 1) // 2  # causal: keys at or before each query
    rows = n_layers * n_heads * per_head
    if rows <= MAX_ROWS:
        return
    hint = ("a shorter prompt" if narrowed else
            "set layer= (one layer) or head= as well, or a shorter prompt")
    raise SpecError("prompt", f"{n_tokens} tokens give {rows:,} pattern rows "
                              f"({n_layers} layers × {n_heads} heads × {per_head:,} query-key pairs), "
                              f"over the {MAX_ROWS:,} this analysis returns: {hint}")


def patterns_table(layer: int, heads: list[int], pattern: np.ndarray) -> pd.DataFrame:
    """pattern: float [head, query, key] of one layer -> its rows with key <= query."""
    n_pos = pattern.shape[-1]
    query, key = np.tril_indices(n_pos)  # row-major: query, then key
    per_head = len(query)
    return pd.DataFrame({
        "layer": np.full(len(heads) * per_head, layer, dtype=np.int64),
        "head": np.repeat(np.asarray(heads, dtype=np.int64), per_head),
        "query_pos": np.tile(query, len(heads)),
        "key_pos": np.tile(key, len(heads)),
        "weight": pattern[:, query, key].reshape(-1).astype(np.float64),
    }, copy=False)


@torch.no_grad()
def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec = spec.with_defaults()
    tokens = prompt_tokens(bridge, spec.prompt)  # [1, pos]
    layers, heads = scope(bridge, spec)
    check_size(len(layers), len(heads), int(tokens.shape[1]), spec.layer is not None)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in layers]
    progress(0.1, "running the model")
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name in names)
    frames = []
    for i, (layer, name) in enumerate(zip(layers, names)):
        pattern = cache[name][0, heads].float().cpu().numpy()  # [head, query, key]
        frames.append(patterns_table(layer, heads, pattern))
        progress(0.1 + 0.9 * (i + 1) / len(layers), f"layer {layer}: {len(heads)} heads read")
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return Result(spec=spec, tables={"patterns": table[list(COLUMNS)]}, meta={
        "n_tokens": int(tokens.shape[1]), "tokens": token_strings(bridge, tokens[0]),
        "layers": layers, "heads": heads, "n_heads": int(bridge.cfg.n_heads),
    })
