"""Run the kind: the text, the dense run, the curve's grid, each p's search, the tables."""
from __future__ import annotations

import time

import pandas as pd

from analyses.core.datasets import PromptSet
from analyses.core.errors import SpecError
from analyses.core.listtext import positive_numbers
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.sparsity.forward import check_output_projection
from analyses.kinds.sparsity.measure import Sparsifier
from analyses.kinds.sparsity.search import TOLERANCE, search_cett
from analyses.kinds.sparsity.tables import TABLES, curve_table, layer_rows, neuron_rows, summary_rows, token_rows
from analyses.kinds.sparsity.text import TextBatch, corpus_sample, prompts_batch
from analyses.kinds.tokens import token_texts

# CETT values measured for the curve besides the searches' own (the trade-off the paper plots)
# (the searches start from the narrowest bracket among them)
CURVE_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def percentages(spec: AnalysisSpec) -> list[float]:
    return sorted(positive_numbers(spec.p))  # checked when the spec was made


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    spec = spec.with_defaults()
    bridge = model.bridge
    batch = (prompts_batch(bridge, [spec.prompt], "typed text") if spec.prompt is not None
             else corpus_sample(bridge, spec.seed))
    return measure(bridge, spec, batch, progress)


def run_set(model, spec: AnalysisSpec, prompt_set: PromptSet, progress: Progress = silent) -> Result:
    """A prompt set as one text: each row's prompt (or a pair's clean prompt) a document."""
    spec = spec.with_defaults()
    prompts = [row.get("prompt", row.get("clean")) for row in prompt_set.rows]
    if not prompts or any(not p for p in prompts):
        raise SpecError("dataset", "every row needs a prompt (or a pair's clean prompt)")
    batch = prompts_batch(model.bridge, prompts, f"prompt set {prompt_set.name} ({len(prompts)} prompts)")
    result = measure(model.bridge, spec, batch, progress)
    examples = pd.DataFrame({"example": range(len(prompts))})
    skipped = pd.DataFrame(columns=["example", "reason", "row"])
    return Result(spec=spec, tables={**result.tables, "examples": examples, "skipped": skipped},
                  meta=result.meta)


def measure(bridge, spec: AnalysisSpec, batch: TextBatch, progress: Progress) -> Result:
    ps = percentages(spec)
    progress(0.02, "checking the MLPs' output projection")
    check_output_projection(bridge, batch)
    started = time.perf_counter()
    progress(0.05, f"dense run over {batch.n_tokens} tokens")
    sparsifier = Sparsifier(bridge, batch)
    dense_seconds = time.perf_counter() - started
    for i, cett in enumerate(CURVE_GRID):
        progress(0.05 + 0.35 * i / len(CURVE_GRID), f"curve: CETT {cett:g}")
        sparsifier.at(cett)
    sources, summary, layers, neurons, tokens = {}, [], [], [], []
    strings = token_texts(bridge, batch.tokens.cpu().numpy())
    for i, p in enumerate(ps):
        progress(0.4 + 0.55 * i / len(ps), f"searching CETT for PPL-{p:g}%")
        found = search_cett(sparsifier.increase, p, **sparsifier.bracket(p))
        sources.update({cett: f"search p={p:g}" for cett, _ in found.tried if cett not in sources})
        point = sparsifier.at(found.cett)
        summary.append(summary_rows(p, found, point, batch))
        layers += layer_rows(p, point, batch)
        neurons.append(neuron_rows(p, point))
        tokens.append(token_rows(p, point, batch, strings))
    search_seconds = time.perf_counter() - started
    progress(1.0, "done")
    tables = {"summary": pd.DataFrame(summary, columns=TABLES["summary"]),
              "layers": pd.DataFrame(layers, columns=TABLES["layers"]),
              "curve": curve_table(list(sparsifier.points.values()), sources, batch),
              "neurons": pd.concat(neurons, ignore_index=True),
              "tokens": pd.concat(tokens, ignore_index=True)}
    return Result(spec=spec, tables=tables, meta={
        "text": batch.source, "n_tokens": batch.n_tokens, "n_documents": int(batch.tokens.shape[0]),
        "dense_loss": sparsifier.dense.loss, "tolerance": TOLERANCE, "forwards": sparsifier.forwards,
        "dense_seconds": round(dense_seconds, 4), "seconds": round(search_seconds, 4),
        "n_layers": int(bridge.cfg.n_layers), "d_mlp": int(bridge.cfg.d_mlp),
    })
