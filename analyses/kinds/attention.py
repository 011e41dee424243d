"""Attention patterns: the model's own attention probabilities, head by head, on a prompt.

For each head, query position q and key position k <= q, `weight` is the probability the
head's softmax gives key k at query q (TransformerLens's `hook_pattern`, which is the
model's own attention: the tests hold it to Hugging Face's eager attention with
`output_attentions=True`). Keys after the query are masked (causal) and not listed, so each
(layer, head, query_pos) row set sums to 1 over `key_pos`. `layer=` and `head=` narrow the
table; a table over `MAX_ROWS` rows is refused before the forward pass, naming the narrowing
that would fit.

From the prompt's last position, the query that predicts the answer:
- `last`: each head's weight on every key `position` (the last row of `patterns`);
- `answers` (with `answer`, and `wrong` if given): each head's total weight on the prompt
  positions after BOS that hold the answer token (`target` "answer") or the wrong one
  ("wrong"): in IOI, the indirect object's name and the subject's (twice). `n_positions`
  says how many positions hold it; none: weight NaN (not 0: there is nothing to attend to).
Over a prompt set (`dataset=`, `analyses.kinds.sets`) the rows of one token length run as one
batch and only these two tables are kept (a set's full patterns would be millions of rows);
their summaries give each head's mean with Student's t interval, `last` per token length.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.bos import first_after_bos
from analyses.kinds.ranges import check_index, check_layer
from analyses.kinds.tokens import prompt_tokens, single_token, token_strings

TABLES = CATALOGUE["attention"].tables
COLUMNS = TABLES["patterns"]
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


def last_table(layers: list[int], heads: list[int], last: np.ndarray) -> pd.DataFrame:
    """last: float [layer, head, key] weights of the last query -> the `last` table."""
    n_layers, n_heads, n_pos = last.shape
    return pd.DataFrame({
        "layer": np.repeat(np.asarray(layers, dtype=np.int64), n_heads * n_pos),
        "head": np.tile(np.repeat(np.asarray(heads, dtype=np.int64), n_pos), n_layers),
        "position": np.tile(np.arange(n_pos, dtype=np.int64), n_layers * n_heads),
        "weight": last.reshape(-1).astype(np.float64),
    }, columns=list(TABLES["last"]))


def target_ids(bridge, spec: AnalysisSpec) -> dict[str, int]:
    """{"answer": id, "wrong": id} for the tokens the spec names (each must be one token)."""
    found = {}
    for name in ("answer", "wrong"):
        text = getattr(spec, name)
        if text:
            found[name] = single_token(bridge, text, name)
    if "wrong" in found and "answer" not in found:
        raise SpecError("answer", "missing: wrong is measured against an answer")
    return found


def answers_table(layers: list[int], heads: list[int], last: np.ndarray, tokens: np.ndarray,
                  targets: dict[str, int], first: int) -> pd.DataFrame:
    """last [layer, head, key], tokens [pos] -> the `answers` table: per head and target, the
    summed weight on the positions from `first` (after BOS) holding the target's token."""
    rows = []
    for target, token_id in targets.items():
        where = np.flatnonzero(tokens[first:] == token_id) + first  # [positions holding it]
        weight = last[:, :, where].sum(-1) if len(where) else np.full(last.shape[:2], np.nan)
        for i, layer in enumerate(layers):
            for j, head in enumerate(heads):
                rows.append({"layer": layer, "head": head, "target": target,
                             "weight": float(weight[i, j]), "n_positions": len(where)})
    return pd.DataFrame(rows, columns=list(TABLES["answers"]))


def last_query_tables(bridge, layers, heads, last: np.ndarray, tokens: np.ndarray,
                      targets: dict[str, int]) -> dict[str, pd.DataFrame]:
    tables = {"last": last_table(layers, heads, last)}
    if targets:
        tables["answers"] = answers_table(layers, heads, last, tokens, targets, first_after_bos(bridge))
    return tables


def _meta(bridge, tokens, layers, heads) -> dict:
    return {"n_tokens": int(tokens.shape[-1]), "tokens": token_strings(bridge, tokens),
            "layers": layers, "heads": heads, "n_heads": int(bridge.cfg.n_heads)}


def pattern_names(layers: list[int]) -> list[str]:
    return [f"blocks.{layer}.attn.hook_pattern" for layer in layers]


@torch.no_grad()
def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec = spec.with_defaults()
    tokens = prompt_tokens(bridge, spec.prompt)  # [1, pos]
    layers, heads = scope(bridge, spec)
    targets = target_ids(bridge, spec)
    check_size(len(layers), len(heads), int(tokens.shape[1]), spec.layer is not None)
    names = pattern_names(layers)
    progress(0.1, "running the model")
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name in names)
    frames, last = [], []
    for i, (layer, name) in enumerate(zip(layers, names)):
        pattern = cache[name][0, heads].float().cpu().numpy()  # [head, query, key]
        frames.append(patterns_table(layer, heads, pattern))
        last.append(pattern[:, -1])  # [head, key]
        progress(0.1 + 0.9 * (i + 1) / len(layers), f"layer {layer}: {len(heads)} heads read")
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    tables = {"patterns": table[list(COLUMNS)],
              **last_query_tables(bridge, layers, heads, np.stack(last), tokens[0].cpu().numpy(), targets)}
    return Result(spec=spec, tables=tables, meta=_meta(bridge, tokens[0], layers, heads))


MAX_BATCH = 64  # a set's prompts of one token length per forward pass


@torch.no_grad()
def run_examples(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list:
    """A prompt set's rows (module docstring): each row's `last` and `answers` tables (a
    Result), or its UserError; the rows of one token length share forward passes."""
    if not specs:
        return []
    bridge = model.bridge
    layers, heads = scope(bridge, specs[0].with_defaults())
    names = pattern_names(layers)
    outcomes: list = [None] * len(specs)
    read: dict[int, tuple] = {}
    for i, spec in enumerate(specs):
        try:
            read[i] = (prompt_tokens(bridge, spec.prompt)[0], target_ids(bridge, spec))
        except UserError as err:
            outcomes[i] = err
    by_length: dict[int, list[int]] = {}
    for i, (tokens, _) in read.items():
        by_length.setdefault(int(tokens.shape[0]), []).append(i)
    groups = [g[s:s + MAX_BATCH] for g in by_length.values() for s in range(0, len(g), MAX_BATCH)]
    for n, group in enumerate(groups):
        progress(n / len(groups), f"reading attention: batch {n + 1} of {len(groups)}")
        batch = torch.stack([read[i][0] for i in group])  # [batch, pos]
        _, cache = bridge.run_with_cache(batch, names_filter=lambda name: name in names)
        last = np.stack([cache[name][:, heads, -1].float().cpu().numpy()  # [batch, head, key] a layer
                         for name in names], axis=1)  # [batch, layer, head, key]
        for row, i in enumerate(group):
            tokens, targets = read[i]
            outcomes[i] = Result(spec=specs[i].with_defaults(), meta=_meta(bridge, tokens, layers, heads),
                                 tables=last_query_tables(bridge, layers, heads, last[row],
                                                          tokens.cpu().numpy(), targets))
    progress(1.0, "done")
    return outcomes
