"""The heads analysis: build the probes the asked detectors read, score every head, and
with `ablate=1` ablate the top heads against random ones (`analyses.kinds.heads`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.heads.ablation import RANDOM_SETS, ablation_rows, heads_to_ablate, measure
from analyses.kinds.heads.behaviours import BEHAVIOURS
from analyses.kinds.heads.detection import Detected, detect
from analyses.kinds.heads.detectors import COLUMNS, DETECTORS
from analyses.kinds.heads.probes import build_probe

SCORE_COLUMNS = CATALOGUE["heads"].tables["scores"]
ABLATION_COLUMNS = CATALOGUE["heads"].tables["ablation"]


def _within(progress: Progress, start: float, width: float) -> Progress:
    """A progress callback for one stage, spanning [start, start + width] of the whole."""
    return lambda fraction, message: progress(start + width * fraction, message)


def selected(spec: AnalysisSpec) -> list[str]:
    """The spec's detectors in the order asked, without repeats (all when none is given)."""
    names = [n.strip() for n in (spec.detector or ",".join(DETECTORS)).split(",")]
    return list(dict.fromkeys(n for n in names if n))


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec = spec.with_defaults()
    names = selected(spec)
    if not names:
        raise SpecError("detector", "names no detector")
    if spec.prompt is not None and "previous_token" not in names:
        raise SpecError("prompt", "only the previous_token detector reads a prompt; the others "
                                  "read generated token sequences")
    probe_names = list(dict.fromkeys(DETECTORS[n].probe for n in names))
    if spec.ablate:
        probe_names += [BEHAVIOURS[DETECTORS[n].behaviour].probe for n in names]
    k = heads_to_ablate(spec, bridge.cfg.n_layers, bridge.cfg.n_heads) if spec.ablate else None
    probes = {p: build_probe(p, bridge, spec.seed, spec.prompt) for p in dict.fromkeys(probe_names)}
    detecting = 1.0 if not spec.ablate else 0.5  # share of the progress bar; ablation gets the rest
    found: dict[str, Detected] = {}
    for probe_name, probe in probes.items():
        group = [n for n in names if DETECTORS[n].probe == probe_name]
        if group:
            stage = _within(progress, detecting * len(found) / len(names),
                            detecting * len(group) / len(names))
            found.update(detect(bridge, group, probe, stage))
    tables = {"scores": score_table(names, found)}
    if spec.ablate:
        rows = ablation_rows(bridge, names, found, probes, k, spec.seed,
                             _within(progress, detecting, 1 - detecting))
        tables["ablation"] = pd.DataFrame(rows, columns=ABLATION_COLUMNS)
    progress(1.0, "done")
    meta = {"probe_tokens": {p: list(probe.tokens.shape) for p, probe in probes.items()},
            "exclude_bos": True, "events": {n: d.events for n, d in found.items()}}
    refused = {n: d.refused for n, d in found.items() if d.refused}
    if refused:
        meta["not_scored"] = refused
    if "retrieval" in names:
        meta["needle_recall"] = measure(bridge, BEHAVIOURS["needle_recall"], probes["needle"])
    if spec.ablate:
        meta["ablation_k"] = k
        meta["random_sets"] = RANDOM_SETS
    return Result(spec=spec, tables=tables, meta=meta)


def score_table(names: list[str], found: dict[str, Detected]) -> pd.DataFrame:
    """One row per (detector, layer, head): COLUMNS, and the events the scores rest on."""
    frames = []
    for name in names:
        values = found[name].scores.numpy().astype(float)
        layer, head = np.meshgrid(np.arange(values.shape[0]), np.arange(values.shape[1]), indexing="ij")
        frames.append(pd.DataFrame({"detector": name, "layer": layer.ravel(), "head": head.ravel(),
                                    **{column: values[..., i].ravel() for i, column in enumerate(COLUMNS)},
                                    "events": found[name].events}))
    return pd.concat(frames, ignore_index=True)
