"""Probe rows: a probe sweep over every layer of a labelled set against one forward pass
over the same texts (the activations it reads), in the same run."""
from __future__ import annotations

import torch

from analyses import AnalysisSpec
from analyses.core import datasets as ds
from analyses.kinds import probe
from analyses.kinds.tokens import prompt_tokens
from bench.common import row, timed


def probe_sweep_row(label, model, ref, name: str = "capital_concept"):
    """`probe.run_set` (activations at every layer, a split, a scikit-learn fit per layer)
    against plain forwards of the set's texts, batched by token length as the probe batches
    them: the rest is the fits. max_diff: the best layer's accuracy, for the record."""
    bridge, prompt_set = model.bridge, ds.shipped(name)
    spec = AnalysisSpec(kind="probe", model=ref, dataset=name)
    tokens = [prompt_tokens(bridge, r["prompt"]) for r in prompt_set.rows]
    groups: dict[int, list] = {}
    for t in tokens:
        groups.setdefault(int(t.shape[1]), []).append(t)
    batches = [torch.cat(g) for g in groups.values()]  # [texts of one length, pos]

    @torch.no_grad()
    def forward():
        return [bridge(b, return_type="logits") for b in batches]

    t_probe, result = timed(lambda: probe.run_set(model, spec, prompt_set))
    t_forward, _ = timed(forward)
    ratio = t_probe / t_forward
    n_layers = int(bridge.cfg.n_layers)
    return row(f"probe: every layer's probe on {name} ({len(tokens)} texts) / one forward over them, {label}",
               t_probe, t_forward, ratio, None, "report", None,
               f"{n_layers} layers, {len(batches)} batches by token length; best layer "
               f"L{result.meta['best_layer']} at {result.meta['best_accuracy']:.3f} held-out accuracy")
