"""The `graph` kind: attribution graphs on a local replacement model (Ameisen et al. 2025).

Modules: `replacement` (the frozen replacement model of a prompt), `attribution` (edges by
backward passes), `pruning` (influence, pruning, replacement and completeness scores),
`interventions` (predicted vs actual logit changes), `tables`, `run` (the kind's entry
points). circuit-tracer's graph JSON is `analyses.core.graph_json` (torch-free: the page uses it).
"""
from analyses.kinds.graph.run import run, run_set

__all__ = ["run", "run_set"]
