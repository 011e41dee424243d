"""The detection engine: one forward pass per chunk of a probe's rows, every detector that
reads the probe hooked on every layer's attention pattern, the scores pooled over rows."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from analyses.core.progress import Progress, silent
from analyses.kinds.heads.detectors import DETECTORS, Scored
from analyses.kinds.heads.probes import Probe, chunk_rows


def _pattern_hook(layer: int, store: dict, detector, probe: Probe, prepared):
    def hook(pattern, hook):  # hook.name is canonical, not ours: the layer comes from here
        store[layer] = detector.layer_stat(probe, prepared, pattern)
    return hook


@dataclass(frozen=True)
class Detected:
    """One detector's result: scores pooled over sequences, and how many events they rest on."""

    scores: Float[Tensor, "layer head 2"]  # COLUMNS; NaN when too few events to score
    events: int
    refused: str | None = None  # why no head is scored, when none is


@torch.no_grad()
def detect(bridge, names: list[str], probe: Probe, progress: Progress = silent) -> dict[str, Detected]:
    """Scores [layer, head, COLUMNS] (score, tl_score) of detectors `names`, which all read
    `probe`: each sequence's score weighted as its detector says, pooled over sequences."""
    detectors = [DETECTORS[n] for n in names]
    n_layers = bridge.cfg.n_layers
    totals: dict[str, list[Scored]] = {n: [] for n in names}  # per chunk of sequences
    step = chunk_rows(bridge, probe)
    for start in range(0, len(probe.tokens), step):
        part = probe.rows(start, start + step)
        prepared = [d.prepare(part) for d in detectors]
        stats: list[dict[int, Tensor]] = [{} for _ in detectors]
        hooks = [(f"blocks.{layer}.attn.hook_pattern", _pattern_hook(layer, store, d, part, t))
                 for layer in range(n_layers) for d, t, store in zip(detectors, prepared, stats)]
        logits = bridge.run_with_hooks(part.tokens, fwd_hooks=hooks)
        for name, detector, target, layer_stats in zip(names, detectors, prepared, stats):
            stacked = torch.stack([layer_stats[layer] for layer in range(n_layers)])
            totals[name].append(detector.score(part, target, stacked, logits))
        progress(min(1.0, (start + step) / len(probe.tokens)), f"{', '.join(names)}: rows {start}+")
    return {name: pool(DETECTORS[name], parts, len(probe.tokens)) for name, parts in totals.items()}


def pool(detector, parts: list[Scored], n_sequences: int) -> Detected:
    """The weighted mean over every chunk's sequences; NaN (and the reason) when the scores
    rest on fewer events than the detector needs."""
    weighted = sum((p.values * p.weights[None, :, None, None]).sum(1) for p in parts)  # [layer, head, 2]
    weight = sum(p.weights.sum() for p in parts)
    events = int(sum(p.events.sum() for p in parts))
    scores = (weighted / weight if weight > 0 else weighted * 0).float().cpu()
    needed = getattr(detector, "min_events", 1)
    if events >= needed:
        return Detected(scores, events)
    return Detected(torch.full_like(scores, torch.nan), events, detector.too_few(events, n_sequences))

