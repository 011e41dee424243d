"""Circuit discovery: score every edge between components, then run the top-k edges as a
circuit and ask how much of the behaviour it keeps.

On one prompt pair or a prompt set (`dataset=`; each row a pair): the metric is the logit
difference answer − wrong at the last position. Edges (`circuits.graph`) are scored by EAP
or EAP-IG (`circuits.scores`), averaged over the examples, and ranked by |score|. EAP takes
its gradient on the corrupted run (`gradient` unset or "corrupted": the effect of restoring
an edge's clean write into the corrupted run) or on the clean run ("clean": the effect of
corrupting it in the clean run); `meta["gradient"]` says which ran.

Faithfulness at k: the clean prompt runs with every edge outside the top k carrying its
corrupted-run value (`circuits.runs`), and the circuit's share of the clean − corrupted
logit difference is (mean circuit metric − mean corrupted) / (mean clean − mean corrupted)
over the examples: 1 with every edge kept, 0 with none, exactly. The same for `RANDOM_SETS`
seeded random sets of k edges is the baseline. k runs over 0, every half power of two
(1, 2, 3, 4, 6, 8, 11, 16, …) and every edge.

`exact=1` also patches each edge alone, in the direction its score estimates (gradient on
the corrupted run: the corrupted prompt with that one edge carrying the clean write, minus
the corrupted metric; on the clean run: the clean metric minus the clean prompt with that
edge carrying the corrupted write), on a seeded random sample of at most `EXACT_EXAMPLES`
examples (`meta["exact_examples"]`, the set's rows): the `exact` column, in the scores'
units; `sample_score`, the scores averaged over those same examples; and the correlations
of the two in `meta`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from analyses.core.catalogue import CATALOGUE
from analyses.core.datasets import PromptSet
from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent, span_of
from analyses.core.restored import has_gap, share_restored
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.circuits import activations, runs, scores
from analyses.kinds.circuits.graph import Graph, edge_hooks, graph_of
from analyses.kinds.correlation import pearson, spearman
from analyses.kinds.gradient_runs import gradient_run
from analyses.kinds.patching.engine import PromptPair, logit_diff, prompt_pair
from analyses.kinds.patching.paths import require_additive_heads, supported
from analyses.kinds.sets import SKIPPED_COLUMNS, skipped_row

TABLES = CATALOGUE["circuit"].tables
RANDOM_SETS = 10  # random edge sets per k, the faithfulness baseline (3 wobbled: 0.28 at k = 362, 0.13 at 512)
EXACT_EXAMPLES = 16  # at most this many examples, drawn at random, for exact single-edge patching
BUDGET_BYTES = 256 * 2**20  # per batch: the writes and shifts of a circuit run, or the gradients


@dataclass
class Examples:
    """The pairs that run, grouped by token length (a group's rows stack)."""

    indices: list[int]  # each pair's row in the set
    pairs: list[PromptPair]

    def groups(self, rows_per_pair: int, bytes_per_row: int) -> list[list[int]]:
        """Positions into `pairs`, by length, in chunks that fit the budget."""
        by_length: dict[int, list[int]] = {}
        for i, pair in enumerate(self.pairs):
            by_length.setdefault(int(pair.clean.shape[1]), []).append(i)
        chunks = []
        for length, members in by_length.items():
            per_row = bytes_per_row * length
            if per_row * rows_per_pair > BUDGET_BYTES and rows_per_pair == 1:
                raise SpecError("clean", f"{length} tokens need {per_row / 2**20:.0f} MiB per row of the "
                                         f"edge graph; the limit is {BUDGET_BYTES / 2**20:.0f} MiB")
            size = max(1, BUDGET_BYTES // (per_row * rows_per_pair))
            chunks += [members[i:i + size] for i in range(0, len(members), size)]
        return chunks


def stacked(pairs: list[PromptPair]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (torch.cat([p.clean for p in pairs]), torch.cat([p.corrupted for p in pairs]),
            torch.tensor([p.answer for p in pairs]), torch.tensor([p.wrong for p in pairs]))


def row_metric(answer: Tensor, wrong: Tensor, repeat: int = 1):
    """logits [rows, pos, vocab] -> logit difference per row, rows example-major × `repeat`."""
    answer, wrong = answer.repeat_interleave(repeat), wrong.repeat_interleave(repeat)
    return lambda logits: logit_diff(logits, answer.to(logits.device), wrong.to(logits.device))


def k_grid(n_edges: int) -> list[int]:
    """0, then k at every half power of two (1, 2, 3, 4, 6, 8, 11, 16, 23, …), then every edge."""
    steps = int(2 * math.log2(max(2, n_edges))) + 1
    ks = sorted({round(2 ** (i / 2)) for i in range(steps)} - {n_edges})
    return [0, *[k for k in ks if k < n_edges], n_edges]


def edge_sets(graph: Graph, ranking: np.ndarray, ks: list[int], seed: int) -> tuple[Tensor, list[tuple[int, str]]]:
    """[set, writer, reader] kept-edge masks: the top k of `ranking` and `RANDOM_SETS` random
    sets of k for each k (none for 0 and all), and each set's (k, "circuit" | "random")."""
    rng = np.random.default_rng(seed)
    masks, labels = [], []
    for k in ks:
        choices = [("circuit", ranking[:k])]
        if 0 < k < graph.n_edges:
            choices += [("random", rng.choice(graph.n_edges, size=k, replace=False)) for _ in range(RANDOM_SETS)]
        for label, chosen in choices:
            mask = np.zeros(graph.valid.shape, dtype=bool)
            mask[graph.edges[chosen, 0], graph.edges[chosen, 1]] = True
            masks.append(mask)
            labels.append((k, label))
    return torch.as_tensor(np.stack(masks)), labels


def score_edges(bridge, graph: Graph, examples: Examples, method: str, steps: int, gradient: str,
                sample: list[int], progress: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean edge scores [writer, reader] over the examples and over `sample` (positions into
    `examples.pairs`), and each example's clean and corrupted metric."""
    total = torch.zeros(graph.valid.shape, dtype=torch.float64)
    sample_total = torch.zeros(graph.valid.shape, dtype=torch.float64)
    in_sample = set(sample)
    clean_metric = np.zeros(len(examples.pairs))
    corrupted_metric = np.zeros(len(examples.pairs))
    d_model = int(bridge.cfg.d_model)
    rows = steps if method == "eap_ig" else 1
    groups = examples.groups(rows, 4 * d_model * (graph.n_readers + 2 * graph.n_writers) * 2)
    done = 0  # examples scored so far: progress counts up through the set
    for g, members in enumerate(groups):
        progress(0.05 + 0.35 * g / len(groups),
                 f"scoring edges ({method}): {span_of(done, len(members), len(examples.pairs))}")
        done += len(members)
        clean, corrupted, answer, wrong = stacked([examples.pairs[i] for i in members])
        device = next(bridge.parameters()).device
        clean, corrupted = clean.to(device), corrupted.to(device)
        if method == "eap":
            found = scores.eap(bridge, graph, clean, corrupted, row_metric(answer, wrong), gradient)
        else:
            found = scores.eap_ig(bridge, graph, clean, corrupted, row_metric(answer, wrong, steps), steps)
        found = found.double().cpu()  # [example, writer, reader]
        total += found.sum(0)
        sample_total += found[[j for j, m in enumerate(members) if m in in_sample]].sum(0)
        with torch.no_grad():
            clean_metric[members] = row_metric(answer, wrong)(bridge(clean)).cpu().numpy()
            corrupted_metric[members] = row_metric(answer, wrong)(bridge(corrupted)).cpu().numpy()
    sample_mean = (sample_total / max(1, len(sample))).numpy()
    return (total / len(examples.pairs)).numpy(), sample_mean, clean_metric, corrupted_metric


def swapped_runs(bridge, graph: Graph, examples: Examples, members_of: list[int], masks: Tensor,
                 on: str, outside: bool, progress: Progress, label: str) -> np.ndarray:
    """[example, set] metrics of mixed runs of the prompt `on` ("clean" or "corrupted") with
    edges swapped to the other run's writes: those outside each mask (`outside`: faithfulness,
    on the clean prompt) or those inside it (exact patching of the edges in each mask)."""
    n_sets = len(masks)
    d_model = int(bridge.cfg.d_model)
    out = np.zeros((len(examples.pairs), n_sets))
    per_row = 4 * d_model * graph.n_writers * 3
    groups = examples.groups(1, per_row)
    done = 0  # of the examples in `members_of`: progress counts up through them
    for g, members in enumerate(groups):
        members = [m for m in members if m in members_of]
        if not members:
            continue
        progress(0.4 + 0.55 * g / len(groups), f"{label}: {span_of(done, len(members), len(members_of))}")
        done += len(members)
        clean, corrupted, answer, wrong = stacked([examples.pairs[i] for i in members])
        device = next(bridge.parameters()).device
        clean, corrupted = clean.to(device), corrupted.to(device)
        own, other = (clean, corrupted) if on == "clean" else (corrupted, clean)
        target = activations.writer_outputs(bridge, graph, other)  # [e, pos, writer, d]
        chunk = max(1, BUDGET_BYTES // (per_row * int(clean.shape[1])))
        for e, member in enumerate(members):
            for start in range(0, n_sets, chunk):
                part = masks[start:start + chunk].to(device)
                swapped = ~part if outside else part
                n = len(part)
                metric = row_metric(answer[e:e + 1], wrong[e:e + 1], n)
                out[member, start:start + n] = runs.mixed_run(
                    bridge, graph, own[e:e + 1].expand(n, -1), target[e:e + 1].expand(n, -1, -1, -1),
                    swapped, metric).cpu().numpy()
    return out


def recovered(circuit: np.ndarray, clean: np.ndarray, corrupted: np.ndarray) -> np.ndarray:
    """Share of the clean − corrupted gap, over the examples' means (Wang et al.)."""
    return share_restored(circuit.mean(0), clean.mean(), corrupted.mean())


def faithfulness_table(ks: list[int], labels: list[tuple[int, str]], shares: np.ndarray, n_edges: int) -> pd.DataFrame:
    rows = []
    for k in ks:
        own = [shares[i] for i, (kk, label) in enumerate(labels) if kk == k and label == "circuit"][0]
        random = [shares[i] for i, (kk, label) in enumerate(labels) if kk == k and label == "random"]
        rows.append({"k": k, "share_of_edges": k / n_edges, "metric": own,
                     "random_mean": float(np.mean(random)) if random else own,
                     "random_min": float(np.min(random)) if random else own,
                     "random_max": float(np.max(random)) if random else own})
    return pd.DataFrame(rows, columns=list(TABLES["faithfulness"]))


def edge_table(graph: Graph, mean_scores: np.ndarray, ranking: np.ndarray, exact: np.ndarray | None,
               sample_scores: np.ndarray) -> pd.DataFrame:
    w, r = graph.edges[ranking, 0], graph.edges[ranking, 1]
    readers = [graph.readers[i] for i in r]
    return pd.DataFrame({
        "rank": np.arange(1, len(ranking) + 1),
        "sender": [graph.writers[i] for i in w],
        "receiver": [name for name, _ in readers],
        "receiver_input": [which for _, which in readers],
        "score": mean_scores[w, r],
        "exact": exact[ranking] if exact is not None else np.nan,
        "sample_score": sample_scores[w, r] if exact is not None else np.nan,
    }, columns=list(TABLES["edges"]))


def node_table(graph: Graph, mean_scores: np.ndarray) -> pd.DataFrame:
    """Each sender's total over its outgoing edges (a head's, its node-level attribution)."""
    rows = []
    for i, name in enumerate(graph.writers):
        layer = int(graph.writer_layer[i])
        head = (i - 1) % graph.per_layer_writers if i else -1
        head = head if 0 <= head < graph.n_heads and i else -1
        rows.append({"node": name, "layer": layer, "head": head, "score": float(mean_scores[i].sum())})
    return pd.DataFrame(rows, columns=list(TABLES["nodes"]))


def examples_of(bridge, spec: AnalysisSpec, prompt_set: PromptSet | None) -> tuple[Examples, list[dict]]:
    if prompt_set is None:
        return Examples([0], [prompt_pair(bridge, spec)]), []
    indices, pairs, skipped = [], [], []
    for i, row in enumerate(prompt_set.rows):
        try:
            pairs.append(prompt_pair(bridge, spec.for_row(row)))
            indices.append(i)
        except UserError as err:
            skipped.append(skipped_row(i, row, err))
    if not pairs:
        first = skipped[0]["reason"] if skipped else "the set has no rows"
        raise SpecError("dataset", f"no row of {prompt_set.name} could run ({first})")
    return Examples(indices, pairs), skipped


def check_architecture(bridge) -> None:
    """The edge graph needs per-head q/k/v inputs, one per query head, and heads that add
    `z @ W_O` to the residual stream as is (`non_additive_heads`)."""
    arch = getattr(bridge.cfg, "architecture", None) or "this model"
    if not supported(bridge):
        raise SpecError("model", f"circuits are not available on {arch}: TransformerLens has no split "
                                 "q/k/v input hooks for it")
    require_additive_heads(bridge, "model", "circuits")
    kv_heads = getattr(bridge.cfg, "n_key_value_heads", None)
    if kv_heads and int(kv_heads) != int(bridge.cfg.n_heads):
        raise SpecError("model", f"{arch} shares keys and values across heads ({kv_heads} key/value heads "
                                 f"for {bridge.cfg.n_heads} query heads); the edge graph takes one per head")


def exact_sample(n_examples: int, seed: int) -> list[int]:
    """Positions of at most `EXACT_EXAMPLES` examples, drawn at random (seeded; a stream of
    its own, apart from the random edge sets), in order."""
    if n_examples <= EXACT_EXAMPLES:
        return list(range(n_examples))
    rng = np.random.default_rng([seed, EXACT_EXAMPLES])
    return sorted(int(i) for i in rng.choice(n_examples, size=EXACT_EXAMPLES, replace=False))


def correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Pearson, Spearman) of two score vectors."""
    return pearson(a, b), spearman(a, b)


def gradient_of(spec: AnalysisSpec) -> str:
    """The run EAP takes its gradient on; EAP-IG takes none (its path runs between the runs)."""
    if spec.method != "eap" and spec.gradient is not None:
        raise SpecError("gradient", f"applies to method=eap only: {spec.method} averages gradients along "
                                    "the path from the corrupted to the clean run")
    return spec.gradient or "corrupted"


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    return run_set(model, spec, None, progress)


def run_set(model, spec: AnalysisSpec, prompt_set: PromptSet | None, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec = spec.with_defaults()
    gradient = gradient_of(spec)
    check_architecture(bridge)
    examples, skipped = examples_of(bridge, spec, prompt_set)
    graph = graph_of(bridge)
    sample = exact_sample(len(examples.pairs), spec.seed) if spec.exact else []
    with edge_hooks(bridge):
        mean_scores, sample_scores, clean, corrupted = score_edges(
            bridge, graph, examples, spec.method, spec.steps, gradient, sample, progress)
        if not has_gap(float(clean.mean()), float(corrupted.mean())):
            raise SpecError("corrupted", "the clean and corrupted prompts give the same mean logit "
                                         "difference: there is no gap for a circuit to recover")
        edge_values = mean_scores[graph.edges[:, 0], graph.edges[:, 1]]
        ranking = np.argsort(-np.abs(edge_values), kind="stable")
        ks = k_grid(graph.n_edges)
        masks, labels = edge_sets(graph, ranking, ks, spec.seed)
        everyone = list(range(len(examples.pairs)))
        circuit = swapped_runs(bridge, graph, examples, everyone, masks, "clean", True, progress,
                               "running circuits")
        exact = None
        if spec.exact:  # each edge alone, patched the way its score estimates, in the denoising sign
            singles = torch.zeros((graph.n_edges, *graph.valid.shape), dtype=torch.bool)
            singles[torch.arange(graph.n_edges), graph.edges[:, 0], graph.edges[:, 1]] = True
            on = "clean" if gradient == "clean" else "corrupted"
            patched = swapped_runs(bridge, graph, examples, sample, singles, on, False, progress,
                                   "patching each edge")[sample]
            exact = ((clean[sample, None] - patched) if on == "clean" else (patched - corrupted[sample, None])).mean(0)
    shares = recovered(circuit, clean, corrupted)
    tables = {"edges": edge_table(graph, mean_scores, ranking, exact, sample_scores),
              "faithfulness": faithfulness_table(ks, labels, shares, graph.n_edges),
              "nodes": node_table(graph, mean_scores)}
    meta = {"n_edges": graph.n_edges, "n_examples": len(examples.pairs), "method": spec.method,
            "gradient": gradient_run(gradient, "edge", "write") if spec.method == "eap" else
            "averaged along the path from the corrupted to the clean embeddings (integrated gradients)",
            "clean_metric": float(clean.mean()), "corrupted_metric": float(corrupted.mean()),
            "total_effect": float(clean.mean() - corrupted.mean()),
            "embed_total": float(mean_scores[0].sum()), "n_layers": graph.n_layers, "n_heads": graph.n_heads,
            "random_sets": RANDOM_SETS}
    if exact is not None:  # the scores over the examples exact patching ran on
        sampled = sample_scores[graph.edges[:, 0], graph.edges[:, 1]]
        meta["exact_pearson"], meta["exact_spearman"] = correlations(sampled, exact)
        meta["exact_examples"] = [examples.indices[i] for i in sample]
        meta["exact_direction"] = ("clean metric − the clean prompt with that edge alone corrupted"
                                   if gradient == "clean" else
                                   "the corrupted prompt with that edge alone clean − corrupted metric")
    if prompt_set is not None:
        tables["examples"] = pd.DataFrame({"example": examples.indices, "clean_baseline": clean,
                                           "corrupted_baseline": corrupted})
        tables["skipped"] = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)
        meta.update(dataset=prompt_set.name, dataset_reference=prompt_set.reference,
                    n_skipped=len(skipped), n_rows=len(prompt_set.rows))
    else:
        meta["n_tokens"] = int(examples.pairs[0].clean.shape[1])
    progress(1.0, "done")
    return Result(spec=spec, tables=tables, meta=meta)
