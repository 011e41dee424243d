"""Which run a gradient-based estimate (AtP, EAP) takes its gradient on, said in words.

The choice changes the answer, so every result names it (`meta.gradient`):
- "corrupted": TransformerLens's `attribution_patch` convention, a first-order estimate of
  restoring a unit's clean value into the corrupted run;
- "clean": the convention of Syed et al. 2023's reference code, a first-order estimate of
  corrupting the unit in the clean run.
"""
from __future__ import annotations

from analyses.core.catalogue import GRADIENTS

_SOURCES = {"corrupted": "TransformerLens attribution_patch", "clean": "Syed et al. 2023's EAP code"}
assert set(_SOURCES) == set(GRADIENTS)


def gradient_run(gradient: str, unit: str, what: str) -> str:
    """What `gradient`'s estimate measures for each `unit` ("node", "edge") and its `what`
    ("value", "write")."""
    if gradient == "corrupted":
        return (f"corrupted run ({_SOURCES[gradient]}): the effect of restoring each {unit}'s clean "
                f"{what} into the corrupted run")
    return (f"clean run ({_SOURCES[gradient]}): the effect of corrupting each {unit}'s {what} "
            "in the clean run")
