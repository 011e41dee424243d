"""The `graph` kind's entry points: one prompt (`run`), a prompt set (`run_set`).

Transcoders: one per layer, `blocks.L.mlp/` directories (sparsify or SAELens format) under
`transcoders=` (a folder) or, by default, under the model's dictionary folder
(`data/dictionaries/<model>/`, where `python -m analyses dictionaries train` writes them).
They are read when the job runs, so a retrained set is picked up; the result's meta names
each one's weights hash.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.graph import interventions, pruning, tables
from analyses.kinds.graph.attribution import attribute
from analyses.kinds.graph.replacement import capture, load_transcoders, run_frozen
from analyses.kinds.tokens import prompt_tokens, token_strings

TOP_INTERVENTIONS = 3  # without `intervene`: the most influential latents, each zeroed


def transcoder_folders(spec: AnalysisSpec, n_layers: int) -> list[Path]:
    from analyses.dictionaries import registry

    if spec.transcoders:
        root = Path(spec.transcoders).expanduser().resolve()
        _check_allowed(root)
    else:
        root = registry.default_folder(spec.model, "blocks.0.mlp").parent
    folders = [root / f"blocks.{layer}.mlp" for layer in range(n_layers)]
    missing = [f.name for f in folders if not f.is_dir()]
    if missing:
        raise SpecError("transcoders", f"no transcoder for {', '.join(missing)} under {root}; train them "
                                       f"with `python -m analyses dictionaries train --model {spec.model} "
                                       f"--site {missing[0]}` (one per layer)")
    return folders


def _check_allowed(root: Path) -> None:
    """A folder named in a link is read only under the dictionaries' or the models' roots."""
    from analyses.dictionaries import registry
    from analyses.runtime import models

    allowed = [registry.ROOT.resolve(), *(Path(r).resolve() for r in models.allowed_roots())]
    if not any(root == a or a in root.parents for a in allowed):
        raise SpecError("transcoders", f"{root} is outside the folders dictionaries are read from "
                                       f"({', '.join(str(a) for a in allowed)})")


def weights_hash(folder: Path) -> str:
    weights = next((folder / name for name in ("sae.safetensors", "sae_weights.safetensors")
                    if (folder / name).is_file()), None)
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights else ""


def _coders(model, spec: AnalysisSpec):
    bridge = model.bridge
    folders = transcoder_folders(spec, bridge.cfg.n_layers)
    coders = load_transcoders(folders, bridge.cfg.n_layers, bridge.cfg.d_model)
    for folder, coder in zip(folders, coders):
        trained_on = coder.cfg.model_fingerprint
        if trained_on and trained_on != model.fingerprint:
            raise UserError(f"{folder}: trained on another model (fingerprint {trained_on[:12]}, this model's "
                            f"is {model.fingerprint[:12]})")
    return folders, coders


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    spec = spec.with_defaults()
    bridge = model.bridge
    tokens = prompt_tokens(bridge, spec.prompt)
    folders, coders = _coders(model, spec)
    progress(0.05, "running the model and its transcoders")
    prompt = capture(bridge, tokens, coders)
    replacement_error = float((run_frozen(bridge, prompt, coders)[0] - prompt.logits).abs().max())
    graph = attribute(bridge, prompt, coders, progress=progress)
    progress(0.9, "pruning and scoring")
    layout = pruning.Layout(graph.n_features, graph.n_layers * graph.n_pos, graph.n_pos, graph.n_logits)
    pruned = pruning.prune(graph.adjacency, layout, graph.logit_probs, float(spec.node_threshold),
                           float(spec.edge_threshold), spec.max_features)
    features = prompt.features.numpy()
    token_ids = tokens[0].cpu().numpy()
    token_texts = token_strings(bridge, tokens[0])
    logit_texts = [bridge.tokenizer.decode([int(t)]) for t in graph.logit_ids]
    nodes = tables.nodes_table(features, graph, pruned, token_ids, token_texts, logit_texts)
    ids = list(nodes["node"])
    kept_features = pruned.node_mask[:graph.n_features]
    pruned_adjacency = pruning.folded(graph.adjacency, layout, features[:, :2], graph.n_pos, kept_features)
    score_rows = []
    for name, matrix, n_kept in (("full", graph.adjacency, graph.n_features),
                                 ("pruned", pruned_adjacency, int(kept_features.sum()))):
        replacement, completeness = pruning.scores(matrix, layout, graph.logit_probs)
        score_rows.append({"graph": name, "replacement": replacement, "completeness": completeness,
                           "n_latents": n_kept, "n_nodes": graph.adjacency.shape[0] if name == "full"
                           else int(pruned.node_mask.sum()),
                           "n_edges": int((graph.adjacency != 0).sum()) if name == "full"
                           else int(pruned.edge_mask.sum())})
    result_tables = {
        "nodes": nodes,
        "edges": tables.edges_table(ids, graph, pruned),
        "logits": tables.logits_table(graph, logit_texts, prompt.logits[-1].numpy()),
        "scores": pd.DataFrame(score_rows),
        "interventions": intervention_rows(bridge, tokens, coders, prompt, graph, pruned, ids, logit_texts,
                                           spec.intervene),
    }
    progress(1.0, "done")
    forwards = 1 + 1 + graph.passes * 2  # capture, exactness check, each pass's forward + backward
    return Result(spec=spec, tables=result_tables, meta={
        "n_tokens": int(tokens.shape[1]), "tokens": token_texts, "replacement_error": replacement_error,
        "passes": graph.passes, "forwards": forwards, "targets": graph.n_features + graph.n_logits,
        "transcoders": {f.name: weights_hash(f) for f in folders},
        "transcoder_folder": str(folders[0].parent),
        "n_layers": graph.n_layers,
    })


def intervention_rows(bridge, tokens, coders, prompt, graph, pruned, ids, logit_texts,
                      intervene: str | None) -> pd.DataFrame:
    """Predicted (graph) beside actual (model) logit changes for each asked intervention;
    without `intervene`, the most influential kept latents zeroed."""
    index = {node: i for i, node in enumerate(ids)}
    if intervene:
        asked = interventions.parse(intervene)
        for node, _ in asked:
            if node not in index or index[node] >= graph.n_features:
                raise SpecError("intervene", f"{node[:40]!r} is not an active latent of this graph (ids "
                                             "look like 1.517@13: layer.latent@position)")
        asked = [(index[node], op) for node, op in asked]
    else:
        influence = np.where(pruned.node_mask[:graph.n_features], pruned.node_influence[:graph.n_features], -1)
        top = [i for i in np.argsort(-influence, kind="stable")[:TOP_INTERVENTIONS] if influence[i] >= 0]
        asked = [(int(i), "x0") for i in top]
    rows = []
    for node, op in asked:
        old = float(graph.values[node])
        new = interventions.new_value(old, op)
        predicted = interventions.predicted_change(graph, node, new - old)[graph.logit_start:]
        layer, pos, latent = prompt.features[node].tolist()
        actual = interventions.actual_change(bridge, tokens, layer, pos, coders[layer].W_dec[latent].detach(),
                                             new - old, graph.logit_ids)
        for j, token_id in enumerate(graph.logit_ids):
            rows.append({"node": ids[node], "op": op, "old_value": old, "new_value": new,
                         "token_id": int(token_id), "token": logit_texts[j],
                         "predicted": float(predicted[j]), "actual": float(actual[j]),
                         "gap": float(actual[j] - predicted[j])})
    return pd.DataFrame(rows, columns=INTERVENTION_COLUMNS)


INTERVENTION_COLUMNS = ("node", "op", "old_value", "new_value", "token_id", "token", "predicted",
                        "actual", "gap")


def run_set(model, spec: AnalysisSpec, prompt_set, progress: Progress = silent) -> Result:
    """Each row's graph (tables with `example`), the scores' summary over the set, and the
    latents that recur across the examples' pruned graphs with their mean influence."""
    from analyses.kinds import sets

    result = sets.run(run, model, spec, prompt_set, progress)
    found = dict(result.tables)
    if "nodes" in found:
        found["recurring"] = tables.recurring_table(found["nodes"], int(result.meta["n_examples"]))
    return Result(spec=result.spec, tables=found, meta=result.meta)
