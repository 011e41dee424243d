"""The one visible list of analysis kinds.

Each entry says what a kind needs (spec fields), what it returns (tables and
their columns) and which function runs it; the spec, CLI, store and app all read
this list, so a new analysis is one module plus one line here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .errors import SpecError


@dataclass(frozen=True)
class Analysis:
    kind: str
    summary: str
    version: int  # bump when the numbers a kind returns change: old cache entries go stale
    run: Callable  # (LoadedModel, AnalysisSpec, Progress) -> Result
    required: tuple[str, ...]
    optional: tuple[str, ...]
    tables: dict[str, tuple[str, ...]]  # table name -> its columns
    defaults: dict = field(default_factory=dict)
    # allowed values of text fields, checked when the spec is made (a comma list is
    # checked item by item for fields in `list_fields`)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    list_fields: tuple[str, ...] = ()


def _entries() -> tuple[Analysis, ...]:
    from . import activation_patching, attribution_patching, dla, heads, logit_lens, neurons

    return (logit_lens.ANALYSIS, heads.ANALYSIS, activation_patching.ANALYSIS, neurons.ANALYSIS,
            dla.ANALYSIS, attribution_patching.ANALYSIS)


_ANALYSES: dict[str, Analysis] | None = None


def analyses() -> dict[str, Analysis]:
    global _ANALYSES
    if _ANALYSES is None:
        _ANALYSES = {a.kind: a for a in _entries()}
    return _ANALYSES


def analysis_for(kind: str) -> Analysis:
    known = analyses()
    if kind not in known:
        raise SpecError("kind", f"unknown kind {kind[:40]!r}; choose one of: {', '.join(known)}")
    return known[kind]
