"""Activation patching (Meng et al. 2022, "ROME"; Wang et al. 2022, "IOI"): run the model on
the corrupted prompt, overwrite one activation with its value from the clean prompt, and see
how much of the clean answer comes back.

Metric: the logit difference `answer - wrong` at the last position. `raw` is that metric on
the patched run; `value = (raw - corrupted) / (clean - corrupted)`, so the clean run scores 1
and the corrupted run 0 (both baselines are in the result's `meta`). The numbers come from the
batched, resumed engine (`patching/engine.py`, whose docstring states its contract); the
`direct_path` granularity from the direct-path engine built on it (`patching/paths.py`).

Table `effects`: one row per patched cell: `granularity`, `layer`, `position`, `head`,
`value`, `raw` (and `sender_layer`, `sender_head`, `receiver_input` for direct paths; -1 / ""
on the other rows).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.patching import paths
from analyses.kinds.patching.engine import (
    ALL,
    BLOCK_GRANULARITIES,
    DIRECT_PATH,
    GRANULARITIES,
    Patcher,
    PromptPair,
    check_layer,
    normaliser,
    prompt_pair,
)
from analyses.kinds.tokens import token_strings

EFFECT_COLUMNS = CATALOGUE["activation_patching"].tables["effects"]


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    started = time.perf_counter()
    bridge = model.bridge
    spec = spec.with_defaults()
    pair = prompt_pair(bridge, spec)
    layers = check_layer(bridge, spec.layer)
    progress(0.0, "running the clean and corrupted prompts")
    if spec.granularity == DIRECT_PATH:
        return _run_direct_path(bridge, spec, pair, layers, progress, started)
    names = list(BLOCK_GRANULARITIES) if spec.granularity == ALL else [spec.granularity]
    patcher = Patcher(bridge, pair, sites=tuple(GRANULARITIES[name] for name in names))
    normalise = normaliser(patcher.clean_baseline, patcher.corrupted_baseline)
    names, skipped = _granularities(patcher, spec.granularity)
    plan = [(name, patcher.cells(GRANULARITIES[name], layers)) for name in names]
    total = sum(len(cells) for _, cells in plan)
    frames, done = [], 0
    for name, cells in plan:
        span = (0.05 + 0.95 * done / total, 0.05 + 0.95 * (done + len(cells)) / total)
        raw = patcher.patch(GRANULARITIES[name], cells, progress, span)
        done += len(cells)
        frames.append(effects_table(name, cells, raw, normalise(raw)))
    progress(1.0, "done")
    meta = _meta(bridge, pair, patcher, total, started)
    if skipped:
        meta["not_on_this_model"] = skipped
    return Result(spec=spec, tables={"effects": _with_all_columns(frames)}, meta=meta)


def _run_direct_path(bridge, spec: AnalysisSpec, pair: PromptPair, layers: list[int],
                     progress: Progress, started: float) -> Result:
    """Every sender head -> receiver head q/k/v edge into the receiver `layers`."""
    paths.require_support(bridge)  # before any forward pass
    patcher = Patcher(bridge, pair, sites=(GRANULARITIES["head_out"],))
    normalise = normaliser(patcher.clean_baseline, patcher.corrupted_baseline)
    cells = paths.path_cells(bridge, [layer for layer in layers if layer > 0])
    if len(cells) == 0:
        raise SpecError("layer", "layer 0 receives no paths: a receiver needs a sender head in an "
                                 "earlier layer; pick layer 1 or later, or leave layer empty")
    raw = paths.patch_paths(patcher, cells, progress, (0.05, 1.0))
    progress(1.0, "done")
    frame = paths.paths_table(cells, raw, normalise(raw))
    return Result(spec=spec, tables={"effects": _with_all_columns([frame])},
                  meta=_meta(bridge, pair, patcher, len(cells), started))


def _with_all_columns(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One `effects` table from per-granularity frames that each have every column."""
    table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return table[list(EFFECT_COLUMNS)]


def _meta(bridge, pair: PromptPair, patcher: Patcher, n_cells: int, started: float) -> dict:
    return {
        "clean_baseline": patcher.clean_baseline,
        "corrupted_baseline": patcher.corrupted_baseline,
        "metric": "logit difference answer - wrong at the last position",
        "n_tokens": patcher.n_tokens,
        "clean_tokens": token_strings(bridge, pair.clean[0]),
        "corrupted_tokens": token_strings(bridge, pair.corrupted[0]),
        "answer_id": pair.answer,
        "wrong_id": pair.wrong,
        "n_cells": n_cells,
        "n_forwards": patcher.n_forwards,
        "resumed": patcher.resumes,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _granularities(patcher: Patcher, granularity: str) -> tuple[list[str], list[str]]:
    if granularity == ALL:
        names = [g for g in BLOCK_GRANULARITIES if patcher.available(GRANULARITIES[g])]
        return names, [g for g in BLOCK_GRANULARITIES if g not in names]
    if not patcher.available(GRANULARITIES[granularity]):
        arch = getattr(patcher.bridge.cfg, "architecture", None) or "this model"
        raise SpecError("granularity", f"{granularity!r} is not available on {arch}: it has no "
                                       f"{GRANULARITIES[granularity].name(0)} hook (e.g. a "
                                       "parallel attention+MLP block has no resid_mid)")
    return [granularity], []


def effects_table(granularity: str, cells: np.ndarray, raw: np.ndarray,
                  value: np.ndarray) -> pd.DataFrame:
    """cells: int [n, 3] (layer, position, head); raw, value: [n] -> one row per cell (the
    path columns -1 / "": these cells are not paths)."""
    n = len(cells)
    return pd.DataFrame({
        "granularity": np.full(n, granularity, dtype=object),
        "layer": cells[:, 0],
        "position": cells[:, 1],
        "head": cells[:, 2],
        "value": np.asarray(value, dtype=np.float64),
        "raw": np.asarray(raw, dtype=np.float64),
        "sender_layer": np.full(n, -1),
        "sender_head": np.full(n, -1),
        "receiver_input": np.full(n, "", dtype=object),
    }, copy=False)
