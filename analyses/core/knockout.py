"""The knock-out behind each cell of an ablation sweep: the steering kind's spec that knocks
out that one component on the same prompt or set, the same way (its page shows the intact
and the ablated model side by side). Torch-free: pages and figures build links from it."""
from __future__ import annotations

from analyses.core.spec import AnalysisSpec

SET_NEW_TOKENS = 1  # a set's knock-out reads the prompts' last position: no continuations


def knockout_spec(sweep: AnalysisSpec, component: str) -> AnalysisSpec:
    """The steering spec that knocks out `component` (`L1H3`, `L0.mlp`) as `sweep` did."""
    full = sweep.with_defaults()
    inputs = (dict(dataset=full.dataset, max_new_tokens=SET_NEW_TOKENS) if full.dataset else
              dict(prompt=full.prompt, answer=full.answer, wrong=full.wrong))
    return AnalysisSpec(kind="steering", model=full.model, ablate=component, ablation=full.ablation, **inputs)
