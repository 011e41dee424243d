"""Logit lens (nostalgebraist 2020): read each layer's residual stream through
the model's final norm and unembedding, and ask what it would predict there.

Built on TransformerLens's `tools.analysis.logit_lens`, which applies the
model's own final norm with recomputed statistics, so the last stack entry
(`final_post`) equals the model's output distribution. The stack holds every
block's input (`L_pre`) and the final output.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from transformer_lens.tools.analysis import logit_lens as tl_logit_lens

from .progress import Progress, silent
from .registry import Analysis
from .result import Result
from .spec import AnalysisSpec
from .tokens import prompt_tokens, single_token, token_decoder, token_strings

TOP_COLUMNS = ("layer", "layer_index", "position", "token", "rank", "token_id", "token_str",
               "prob", "logit")
TARGET_COLUMNS = ("layer", "layer_index", "position", "token_id", "token_str", "rank", "prob")


def _residual_hooks(name: str) -> bool:
    return "hook_resid" in name or name.startswith("ln_final") or name.endswith("hook_out")


@torch.no_grad()
def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec = spec.with_defaults()
    tokens = prompt_tokens(bridge, spec.prompt)  # [1, pos]
    targets = [(t, single_token(bridge, t, "token")) for t in spec.targets()]
    progress(0.1, "running the model")
    _, cache = bridge.run_with_cache(tokens, names_filter=_residual_hooks)
    progress(0.5, "reading every layer through the unembedding")
    lens = dict(cache=cache, positions=None, apply_ln=spec.final_norm)
    probs = tl_logit_lens(bridge, top_k=spec.top_k, return_type="probs", **lens)
    logits = tl_logit_lens(bridge, top_k=spec.top_k, return_type="logits", **lens)
    labels = probs.labels
    inputs = token_strings(bridge, tokens[0])
    tables = {"top": top_table(labels, inputs, probs.readout.top_ids[:, 0].cpu().numpy(),
                               probs.readout.values[:, 0].float().cpu().numpy(),
                               logits.readout.values[:, 0].float().cpu().numpy(), bridge)}
    if targets:
        ids = [i for _, i in targets]
        lensed = tl_logit_lens(bridge, targets=ids, return_type="probs", **lens)
        tables["targets"] = target_table(labels, ids, lensed.readout.target_ranks[:, 0].cpu().numpy(),
                                         lensed.readout.values[:, 0].float().cpu().numpy(), bridge)
    progress(1.0, "done")
    return Result(spec=spec, tables=tables, meta={"n_tokens": int(tokens.shape[1]),
                                                  "layers": labels, "final_norm": spec.final_norm})


def top_table(labels: list[str], inputs: list[str], top_ids: np.ndarray, probs: np.ndarray,
              logits: np.ndarray, bridge) -> pd.DataFrame:
    """top_ids, probs, logits: [layer, pos, k] → one row per (layer, position, rank)."""
    n_layer, n_pos, k = top_ids.shape
    layer_index, position, rank = np.meshgrid(np.arange(n_layer), np.arange(n_pos), np.arange(k),
                                              indexing="ij")
    vocab = token_decoder(bridge)
    return pd.DataFrame({
        "layer": np.array(labels)[layer_index.ravel()],
        "layer_index": layer_index.ravel(),
        "position": position.ravel(),
        "token": np.array(inputs, dtype=object)[position.ravel()],
        "rank": rank.ravel() + 1,  # 1 = the most likely token
        "token_id": top_ids.ravel(),
        "token_str": [vocab(i) for i in top_ids.ravel()],
        "prob": probs.ravel(),
        "logit": logits.ravel(),
    })


def target_table(labels: list[str], ids: list[int], ranks: np.ndarray, probs: np.ndarray,
                 bridge) -> pd.DataFrame:
    """ranks, probs: [layer, pos, target] → one row per (layer, position, target)."""
    n_layer, n_pos, n_target = ranks.shape
    layer_index, position, target = np.meshgrid(np.arange(n_layer), np.arange(n_pos),
                                                np.arange(n_target), indexing="ij")
    vocab = token_decoder(bridge)
    token_ids = np.array(ids)[target.ravel()]
    return pd.DataFrame({
        "layer": np.array(labels)[layer_index.ravel()],
        "layer_index": layer_index.ravel(),
        "position": position.ravel(),
        "token_id": token_ids,
        "token_str": [vocab(i) for i in token_ids],
        "rank": ranks.ravel() + 1,  # TransformerLens counts from 0
        "prob": probs.ravel(),
    })


ANALYSIS = Analysis(
    kind="logit_lens",
    summary="what each layer would predict: the residual stream read through the unembedding",
    version=1,
    run=run,
    required=("prompt",),
    optional=("top_k", "token", "final_norm"),
    tables={"top": TOP_COLUMNS, "targets": TARGET_COLUMNS},
    defaults={"top_k": 10, "final_norm": True},
)
