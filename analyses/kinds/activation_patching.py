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
from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent, span_of
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.patching import paths
from analyses.kinds.patching.engine import (
    ALL,
    BLOCK_GRANULARITIES,
    DIRECT_PATH,
    GRANULARITIES,
    PairBatch,
    Patcher,
    PromptPair,
    check_layer,
    normaliser,
    prompt_pair,
)
from analyses.kinds.tokens import token_strings

EFFECT_COLUMNS = CATALOGUE["activation_patching"].tables["effects"]
GROUP_EXAMPLES = 64  # prompt pairs one engine holds at most: their activations are cached together
GROUP_BUDGET_BYTES = 256 * 2**20  # the activations an engine caches for its pairs, roughly


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    started = time.perf_counter()
    bridge = model.bridge
    spec = spec.with_defaults()
    pair = prompt_pair(bridge, spec)
    layers = check_layer(bridge, spec.layer)
    progress(0.0, "running the clean and corrupted prompts")
    if spec.granularity == DIRECT_PATH:
        return _run_direct_path(bridge, spec, pair, layers, progress, started)
    (result,) = _patch_together(bridge, [spec], [pair], layers, progress, started)
    if isinstance(result, UserError):
        raise result
    return result


def run_examples(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list[Result | UserError]:
    """Each spec's `run` result (or the UserError it raises, in its place), with the
    examples of one token length patched together: up to `GROUP_EXAMPLES` pairs share one
    engine and its forward passes (a prompt set's rows, `kinds/sets.py`). Each example's
    numbers equal its own `run` to float rounding (the batch differs, not the arithmetic).
    Direct paths run one pair at a time."""
    started = time.perf_counter()
    bridge = model.bridge
    out: list[Result | UserError | None] = [None] * len(specs)
    groups: dict[tuple, list[tuple[int, AnalysisSpec, PromptPair]]] = {}
    for i, spec in enumerate(specs):
        spec = spec.with_defaults()
        try:
            pair = prompt_pair(bridge, spec)
            check_layer(bridge, spec.layer)
        except UserError as err:
            out[i] = err
            continue
        key = (spec.granularity, spec.layer, int(pair.clean.shape[1]))
        groups.setdefault(key, []).append((i, spec, pair))
    chunks = []
    for (granularity, _, n_tokens), members in groups.items():
        size = group_size(bridge, n_tokens, granularity)
        chunks += [members[j:j + size] for j in range(0, len(members), size)]
    done, total = 0, max(1, sum(len(chunk) for chunk in chunks))
    for chunk in chunks:
        span = (done / total, (done + len(chunk)) / total)
        indices, group_specs, pairs = zip(*chunk)
        first = group_specs[0]
        layers = check_layer(bridge, first.layer)
        part = _within(progress, span, f"{span_of(done, len(chunk), total)} "
                                       f"({int(pairs[0].clean.shape[1])} tokens)")
        if first.granularity == DIRECT_PATH:  # one pair at a time, each its share of the span
            results = [_run_or_error(_run_direct_path, bridge, s, p, layers,
                                     _within(part, (j / len(chunk), (j + 1) / len(chunk)),
                                             f"example {j + 1}"), started)
                       for j, (s, p) in enumerate(zip(group_specs, pairs))]
        else:
            results = _patch_together(bridge, list(group_specs), list(pairs), layers, part, started)
        for i, result in zip(indices, results):
            out[i] = result
        done += len(chunk)
    progress(1.0, "done")
    return out


def group_size(bridge, n_tokens: int, granularity: str) -> int:
    """How many pairs of `n_tokens` one engine holds: what it caches per pair (the corrupted
    residual entering each block, and each site's clean and corrupted activations) within
    `GROUP_BUDGET_BYTES`, at most `GROUP_EXAMPLES`."""
    cfg = bridge.cfg
    names = list(BLOCK_GRANULARITIES) if granularity == ALL else [granularity]
    if granularity == DIRECT_PATH:
        return GROUP_EXAMPLES  # run one by one: nothing is cached per group
    width = sum(int(cfg.n_heads) * n_tokens if "pattern" in name else int(cfg.d_model) for name in names)
    item = next(bridge.parameters()).element_size()
    per_pair = item * n_tokens * int(cfg.n_layers) * (int(cfg.d_model) + 2 * width)
    return int(max(1, min(GROUP_EXAMPLES, GROUP_BUDGET_BYTES // per_pair)))


def _within(progress: Progress, span: tuple[float, float], prefix: str) -> Progress:
    lo, hi = span
    return lambda fraction, message: progress(lo + (hi - lo) * fraction, f"{prefix}: {message}")


def _run_or_error(run_one, *args) -> Result | UserError:
    try:
        return run_one(*args)
    except UserError as err:
        return err


def _patch_together(bridge, specs: list[AnalysisSpec], pairs: list[PromptPair], layers: list[int],
                    progress: Progress, started: float) -> list[Result | UserError]:
    """One engine for `pairs` (one token length, one granularity): each pair's result, or
    the UserError of a pair with no logit gap."""
    granularity = specs[0].granularity
    names = list(BLOCK_GRANULARITIES) if granularity == ALL else [granularity]
    patcher = Patcher(bridge, PairBatch.of(pairs), sites=tuple(GRANULARITIES[name] for name in names))
    normalisers = [_run_or_error(normaliser, clean, corrupted) for clean, corrupted
                   in zip(patcher.clean_baselines, patcher.corrupted_baselines)]
    if all(isinstance(n, UserError) for n in normalisers):  # nothing to patch
        return normalisers
    names, skipped = _granularities(patcher, granularity)
    plan = [(name, patcher.cells(GRANULARITIES[name], layers)) for name in names]
    total = sum(len(cells) for _, cells in plan)
    raws, done = [], 0
    for name, cells in plan:
        span = (0.05 + 0.95 * done / total, 0.05 + 0.95 * (done + len(cells)) / total)
        raws.append(patcher.patch_examples(GRANULARITIES[name], cells, progress, span))  # [example, n]
        done += len(cells)
    progress(1.0, "done")
    results: list[Result | UserError] = []
    for e, (spec, pair, normalise) in enumerate(zip(specs, pairs, normalisers)):
        if isinstance(normalise, UserError):
            results.append(normalise)
            continue
        frames = [effects_table(name, cells, raw[e], normalise(raw[e]))
                  for (name, cells), raw in zip(plan, raws)]
        meta = _meta(bridge, pair, patcher, total, started, example=e)
        if skipped:
            meta["not_on_this_model"] = skipped
        results.append(Result(spec=spec, tables={"effects": _with_all_columns(frames)}, meta=meta))
    return results


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
    return table if tuple(table.columns) == EFFECT_COLUMNS else table[list(EFFECT_COLUMNS)]


def _meta(bridge, pair: PromptPair, patcher: Patcher, n_cells: int, started: float,
          example: int = 0) -> dict:
    """`pair`'s meta; it is `example` of the pairs `patcher` holds (whose forward passes,
    shared by those examples, `n_forwards` counts)."""
    return {
        "clean_baseline": float(patcher.clean_baselines[example]),
        "corrupted_baseline": float(patcher.corrupted_baselines[example]),
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
