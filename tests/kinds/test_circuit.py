"""Circuits: EAP edge scores and circuit faithfulness equal TransformerLens's
`attribution_patch(granularity="edge")` (positions summed) and `faithfulness`; the circuit run
is exact at its ends; single-edge patching equals path patching; on a linear model EAP is
exact; on the embedded model's ioi set the top EAP-IG edges beat random ones."""
import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from transformer_lens.tools.analysis.attribution_patching import (
    EdgeAttributionConfig,
    Node,
    attribution_patch,
    faithfulness,
)

from analyses import AnalysisSpec, compute
from analyses.core.datasets import PromptSet
from analyses.core.errors import SpecError
from analyses.kinds import circuit as circuit_kind
from analyses.kinds.circuits import activations, runs, scores
from analyses.kinds.circuits.graph import Graph, edge_hooks, graph_of
from analyses.kinds.patching.engine import logit_diff, prompt_pair
from analyses.runtime import models
from conftest import REPO_ROOT, TINY_ARCHS, save_tiny_model
from helpers import save_non_additive_model

pytestmark = pytest.mark.usefixtures("private_cache")

IOI = json.loads((REPO_ROOT / "data" / "prompts.json").read_text())["ioi"][0]
TINY_PAIR = {"clean": "When Mary and John went to the store, John gave a drink to",
             "corrupted": "When Mary and John went to the store, Mary gave a drink to",
             "answer": " Mary", "wrong": " John"}




def pair_of(bridge, fields):
    return prompt_pair(bridge, AnalysisSpec(kind="circuit", **fields))


def metric_of(pair):
    return lambda logits: logit_diff(logits, pair.answer, pair.wrong)


def tl_metric(pair):
    return lambda logits: logits[0, -1, pair.answer] - logits[0, -1, pair.wrong]


def tl_key(graph: Graph, writer: Node, reader: Node) -> tuple[int, int]:
    """A TransformerLens node pair as our (writer, reader) indices."""
    if writer.kind == "embed":
        w = 0
    elif writer.kind == "attn_head_out":
        w = graph.head_writer(writer.layer, writer.head)
    else:
        w = graph.mlp_writer(writer.layer)
    if reader.kind == "logits":
        r = graph.logits_reader
    elif reader.kind == "mlp_in":
        r = graph.mlp_reader(reader.layer)
    else:
        r = graph.qkv_reader(reader.layer, reader.kind[0], reader.head)
    return w, r


def tl_nodes(graph: Graph, w: int, r: int, position: int) -> tuple[Node, Node]:
    layer = int(graph.writer_layer[w])
    if w == 0:
        writer = Node(kind="embed", position=position)
    elif w == graph.mlp_writer(layer):
        writer = Node(kind="mlp_out", position=position, layer=layer)
    else:
        writer = Node(kind="attn_head_out", position=position, layer=layer, head=w - graph.head_writer(layer, 0))
    name, which = graph.readers[r]
    if name == "logits":
        reader = Node(kind="logits", position=position, layer=graph.n_layers - 1)
    elif which == "in":
        reader = Node(kind="mlp_in", position=position, layer=int(name[1:].split(".")[0]))
    else:
        layer, head = (int(x) for x in name[1:].split("H"))
        reader = Node(kind=f"{which}_input", position=position, layer=layer, head=head)
    return writer, reader


def eap_matrix(bridge, pair):
    graph = graph_of(bridge)
    with edge_hooks(bridge):
        return graph, scores.eap(bridge, graph, pair.clean, pair.corrupted, metric_of(pair))[0].double()


# --------------------------------------------------------------------------- against TransformerLens

@pytest.mark.parametrize("arch", ["embedded", *TINY_ARCHS])
def test_eap_equals_transformer_lens_edge_attribution_summed_over_positions(embedded, tiny_model_dir, arch):
    bridge = embedded.bridge if arch == "embedded" else models.load(str(tiny_model_dir(arch))).bridge
    pair = pair_of(bridge, IOI if arch == "embedded" else TINY_PAIR)
    try:
        reference = attribution_patch(bridge, pair.clean, pair.corrupted, tl_metric(pair),
                                      EdgeAttributionConfig(granularity="edge"))
    except ValueError as err:  # TransformerLens refuses grouped-query attention
        with pytest.raises(SpecError, match="key/value heads"):
            circuit_kind.check_architecture(bridge)
        pytest.skip(f"TransformerLens has no edge graph here: {str(err)[:80]}")
    graph, ours = eap_matrix(bridge, pair)
    summed = defaultdict(float)
    for (writer, reader), value in reference.edge_scores.items():
        summed[tl_key(graph, writer, reader)] += value
    assert set(summed) == {(int(w), int(r)) for w, r in graph.edges}  # the same edges
    worst = max(abs(summed[key] - float(ours[key])) for key in summed)
    assert worst < 1e-5, worst


def test_faithfulness_equals_transformer_lens_for_the_top_circuits(embedded):
    bridge = embedded.bridge
    pair = pair_of(bridge, IOI)
    graph, ours = eap_matrix(bridge, pair)
    values = ours[graph.edges[:, 0], graph.edges[:, 1]].numpy()
    ranking = np.argsort(-np.abs(values), kind="stable")
    n_pos = int(pair.clean.shape[1])
    for k in (3, 11, 45):
        kept = ranking[:k]
        mask = torch.zeros((1, *graph.valid.shape), dtype=torch.bool)
        mask[0, graph.edges[kept, 0], graph.edges[kept, 1]] = True
        with edge_hooks(bridge):
            target = activations.writer_outputs(bridge, graph, pair.corrupted)
            mine = runs.mixed_run(bridge, graph, pair.clean, target, ~mask, metric_of(pair)).item()
        circuit = [tl_nodes(graph, int(graph.edges[e, 0]), int(graph.edges[e, 1]), p)
                   for e in kept for p in range(n_pos)]
        reference = faithfulness(bridge, pair.clean, pair.corrupted, tl_metric(pair), circuit)
        clean, corrupted = reference.full_metric, reference.corrupt_metric
        assert (mine - corrupted) / (clean - corrupted) == pytest.approx(reference.recovered, abs=1e-5)


# --------------------------------------------------------------------------- the circuit run

def test_every_edge_kept_is_the_clean_run_and_none_the_corrupted_exactly(embedded):
    result = circuit_kind.run(embedded, AnalysisSpec(kind="circuit", **IOI, method="eap"))
    faith = result.tables["faithfulness"].set_index("k")
    n_edges = result.meta["n_edges"]
    assert n_edges == 802 and faith.index[0] == 0 and faith.index[-1] == n_edges
    assert abs(faith.loc[0, "metric"]) < 1e-6 and abs(faith.loc[n_edges, "metric"] - 1) < 1e-6
    edges = result.tables["edges"]
    assert edges["rank"].tolist() == list(range(1, n_edges + 1))
    assert np.all(np.diff(edges["score"].abs().to_numpy()) <= 1e-12)  # ranked by |score|
    nodes = result.tables["nodes"].set_index("node")
    assert nodes.loc["L0H0", "score"] == pytest.approx(edges.query("sender == 'L0H0'")["score"].sum())


def test_single_edge_patching_equals_path_patching_between_heads(embedded):
    """The exact column of head → head edges is activation patching's direct_path effect."""
    result = circuit_kind.run(embedded, AnalysisSpec(kind="circuit", **IOI, method="eap", exact=True))
    edges = result.tables["edges"]
    paths = compute(AnalysisSpec(kind="activation_patching", **IOI, granularity="direct_path", layer=1))
    effects = paths.tables["effects"]
    corrupted = paths.meta["corrupted_baseline"]
    checked = 0
    for row in effects.itertuples():
        sender, receiver = f"L{row.sender_layer}H{row.sender_head}", f"L{row.layer}H{row.head}"
        ours = edges[(edges.sender == sender) & (edges.receiver == receiver)
                     & (edges.receiver_input == row.receiver_input)]
        assert len(ours) == 1
        assert ours["exact"].iloc[0] == pytest.approx(row.raw - corrupted, abs=1e-4)
        checked += 1
    assert checked == 8 * 8 * 3
    assert result.meta["exact_spearman"] > 0.3 and result.meta["exact_pearson"] > 0.8


def linear_model_dir(tmp_path):
    """A tiny GPT-2 with its nonlinearities removed: identity MLP activation, zero query and key
    weights (uniform attention, linear in the values), and layer norms made linear by an epsilon
    far above any variance (their weights scaled to keep the residual's size)."""
    from transformers import GPT2LMHeadModel

    folder = save_tiny_model("gpt2", tmp_path / "linear", seed=3)
    model = GPT2LMHeadModel.from_pretrained(folder)
    model.config.activation_function = "linear"
    model.config.layer_norm_epsilon = 1e12
    d = model.config.n_embd
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight[:, :2 * d] = 0
            block.attn.c_attn.bias[:2 * d] = 0
        norms = [*(b.ln_1 for b in model.transformer.h), *(b.ln_2 for b in model.transformer.h)]
        for norm in [*norms, model.transformer.ln_f]:
            norm.weight.mul_(1e6)
            norm.bias.zero_()
    model.save_pretrained(folder)
    return folder


def test_on_a_linear_model_eap_is_exact_edge_patching(tmp_path, model_roots):
    model = models.load(str(linear_model_dir(tmp_path)))
    result = circuit_kind.run(model, AnalysisSpec(kind="circuit", **TINY_PAIR, method="eap", exact=True))
    edges = result.tables["edges"]
    top = edges["score"].abs().max()
    assert top > 1e-3  # something to compare
    assert np.allclose(edges["score"], edges["exact"], atol=1e-4 * top)
    nonlinear = circuit_kind.run(models.load(str(save_tiny_model("gpt2", tmp_path / "plain", seed=3))),
                                 AnalysisSpec(kind="circuit", **TINY_PAIR, method="eap", exact=True)).tables["edges"]
    assert not np.allclose(nonlinear["score"], nonlinear["exact"], atol=1e-4 * top)  # the test can fail


def test_each_k_has_at_least_ten_random_edge_sets_of_k_distinct_edges():
    """The faithfulness baseline's band is the range of these draws: three made it wobble."""
    graph = Graph(n_layers=2, n_heads=2)
    ranking = np.arange(graph.n_edges)
    ks = circuit_kind.k_grid(graph.n_edges)
    masks, labels = circuit_kind.edge_sets(graph, ranking, ks, seed=0)
    for k in ks:
        random = [i for i, (kk, label) in enumerate(labels) if kk == k and label == "random"]
        if 0 < k < graph.n_edges:
            assert len(random) >= 10, k
            assert all(int(masks[i].sum()) == k for i in random)
        else:
            assert not random  # none kept and all kept need no baseline


def test_the_baseline_band_is_the_range_of_the_draws_around_their_mean():
    labels = [(0, "circuit"), (2, "circuit"), (2, "random"), (2, "random"), (2, "random"), (4, "circuit")]
    shares = np.array([0.0, 0.9, 0.1, 0.4, 0.25, 1.0])
    row = circuit_kind.faithfulness_table([0, 2, 4], labels, shares, 4).set_index("k").loc[2]
    assert (row["random_min"], row["random_max"]) == (0.1, 0.4)
    assert row["random_mean"] == pytest.approx(0.25)


# --------------------------------------------------------------------------- on the ioi set

@pytest.fixture(scope="module")
def ioi_circuits():
    return {method: compute(AnalysisSpec(kind="circuit", dataset="ioi", method=method))
            for method in ("eap_ig", "eap")}


def test_on_the_ioi_set_the_top_edges_beat_random_ones_and_eap_ig_needs_no_more_than_eap(ioi_circuits):
    faith = {m: r.tables["faithfulness"].set_index("k") for m, r in ioi_circuits.items()}
    ig = faith["eap_ig"]
    assert ioi_circuits["eap_ig"].meta["n_examples"] == 200
    assert np.all(ig["metric"] >= ig["random_mean"] - 1e-6)  # never below the random baseline
    n_edges = ioi_circuits["eap_ig"].meta["n_edges"]
    enough = {m: int(f[f["metric"] >= 0.8].index.min()) for m, f in faith.items()}
    assert enough["eap_ig"] <= enough["eap"]
    assert enough["eap_ig"] <= 0.02 * n_edges  # 16 of 802 edges (see the README for the 1% point)
    assert ig.loc[8, "random_max"] < 0.05  # random sets of that size keep nothing
    meta = ioi_circuits["eap_ig"].meta
    assert meta["embed_total"] == pytest.approx(meta["total_effect"], rel=0.05)  # IG's completeness


def test_a_set_result_lists_its_examples_and_a_result_reopens_from_the_store(ioi_circuits):
    result = ioi_circuits["eap_ig"]
    assert len(result.tables["examples"]) == 200 and len(result.tables["skipped"]) == 0
    assert result.tables["examples"]["clean_baseline"].mean() == pytest.approx(result.meta["clean_metric"])
    spec = AnalysisSpec(kind="circuit", **IOI, method="eap")
    first, again = compute(spec), compute(spec)
    assert not first.meta.get("cache_hit") and again.meta["cache_hit"]
    for name in ("edges", "faithfulness", "nodes"):
        assert again.tables[name].equals(first.tables[name]), name


# --------------------------------------------------------------------------- errors

def test_prompts_of_different_lengths_are_refused_naming_the_field(embedded):
    with pytest.raises(SpecError) as err:
        circuit_kind.run(embedded, AnalysisSpec(kind="circuit", **{**IOI, "corrupted": "When Mary went"}))
    assert err.value.field == "corrupted" and "same length" in str(err.value)


def test_a_prompt_too_long_for_the_memory_budget_is_refused(embedded, monkeypatch):
    monkeypatch.setattr(circuit_kind, "BUDGET_BYTES", 10_000)
    with pytest.raises(SpecError) as err:
        circuit_kind.run(embedded, AnalysisSpec(kind="circuit", **IOI))
    assert err.value.field == "clean" and "MiB" in str(err.value)


def test_no_flag_or_hook_outlives_a_circuit_run(embedded):
    bridge = embedded.bridge
    before = (bridge.cfg.use_attn_result, bridge.cfg.use_split_qkv_input, bridge.cfg.use_hook_mlp_in)
    circuit_kind.run(embedded, AnalysisSpec(kind="circuit", **IOI, method="eap_ig", steps=2))
    assert (bridge.cfg.use_attn_result, bridge.cfg.use_split_qkv_input, bridge.cfg.use_hook_mlp_in) == before
    assert not any(hook_point.has_hooks() for hook_point in bridge.hook_dict.values())


@pytest.mark.parametrize("arch, why", [("gemma2", "after the head sum"), ("granite", "scales its attention output")])
def test_models_whose_heads_do_not_write_additively_are_refused(model_roots, tmp_path, arch, why):
    """The edge graph takes each head's `z @ W_O` as its write into the residual stream; a
    post-attention norm (Gemma-2) or a scaled residual (Granite) breaks that, as
    TransformerLens's own edge attribution says."""
    folder = save_non_additive_model(arch, tmp_path / arch)
    with pytest.raises(SpecError, match=why) as err:
        circuit_kind.run(models.load(str(folder)), AnalysisSpec(kind="circuit", **TINY_PAIR, method="eap"))
    assert err.value.field == "model" and "residual" in str(err.value)


def test_a_parallel_attention_and_mlp_block_is_supported_and_exact_at_its_ends(tiny_neox_dir):
    """NeoX (`use_parallel_residual`): heads still add `z @ W_O` to the residual; only the MLP
    reads the layer's input instead, so a layer's heads have no edge into its own MLP."""
    model = models.load(str(tiny_neox_dir))
    assert model.bridge.cfg.parallel_attn_mlp
    result = circuit_kind.run(model, AnalysisSpec(kind="circuit", **TINY_PAIR, method="eap"))
    faith = result.tables["faithfulness"].set_index("k")
    n_edges = result.meta["n_edges"]
    assert abs(result.meta["total_effect"]) > 1e-2  # shares of a real gap, exact to float32 over it
    assert abs(faith.loc[0, "metric"]) < 1e-4 and abs(faith.loc[n_edges, "metric"] - 1) < 1e-4
    edges = result.tables["edges"]
    assert edges[(edges.sender == "L0H0") & (edges.receiver == "L0.mlp")].empty


# --------------------------------------------------------------------------- the gradient convention

@pytest.mark.parametrize("arch", ["embedded", "gpt2"])
def test_clean_gradient_eap_equals_transformer_lens_with_the_runs_swapped(embedded, tiny_model_dir, arch):
    """gradient=clean is Syed et al.'s convention, (clean − corrupted) · ∂metric/∂input on the
    clean run: TransformerLens's attribution_patch (gradient on its second argument) given the
    runs the other way round, its sign flipped back to the denoising sign."""
    bridge = embedded.bridge if arch == "embedded" else models.load(str(tiny_model_dir(arch))).bridge
    pair = pair_of(bridge, IOI if arch == "embedded" else TINY_PAIR)
    reference = attribution_patch(bridge, pair.corrupted, pair.clean, tl_metric(pair),
                                  EdgeAttributionConfig(granularity="edge"))
    graph = graph_of(bridge)
    with edge_hooks(bridge):
        ours = scores.eap(bridge, graph, pair.clean, pair.corrupted, metric_of(pair), gradient="clean")[0].double()
    summed = defaultdict(float)
    for (writer, reader), value in reference.edge_scores.items():
        summed[tl_key(graph, writer, reader)] -= value
    worst = max(abs(summed[key] - float(ours[key])) for key in summed)
    assert worst < 1e-5, worst


def test_the_gradient_convention_changes_the_ioi_answer_and_the_result_says_which_ran(embedded):
    runs_by = {g: circuit_kind.run(embedded, AnalysisSpec(kind="circuit", **IOI, method="eap", gradient=g))
               for g in ("corrupted", "clean")}
    default = circuit_kind.run(embedded, AnalysisSpec(kind="circuit", **IOI, method="eap"))
    assert default.tables["edges"].equals(runs_by["corrupted"].tables["edges"])  # the default is unchanged
    assert "corrupted run" in default.meta["gradient"] and "clean run" in runs_by["clean"].meta["gradient"]
    edges = {g: r.tables["edges"] for g, r in runs_by.items()}
    assert not np.allclose(edges["clean"].sort_values(["sender", "receiver", "receiver_input"])["score"],
                           edges["corrupted"].sort_values(["sender", "receiver", "receiver_input"])["score"],
                           atol=1e-3)
    top = {g: tuple(e.iloc[0][["sender", "receiver", "receiver_input"]]) for g, e in edges.items()}
    assert top["clean"] != top["corrupted"]
    faith = {g: r.tables["faithfulness"].set_index("k")["metric"] for g, r in runs_by.items()}
    assert (faith["clean"] - faith["corrupted"]).abs().max() > 0.1  # measured: 0.98 against 0.81 at k = 64


def test_eap_ig_takes_no_gradient_field(embedded):
    with pytest.raises(SpecError) as err:
        circuit_kind.run(embedded, AnalysisSpec(kind="circuit", **IOI, method="eap_ig", gradient="clean"))
    assert err.value.field == "gradient" and "eap" in str(err.value)


# --------------------------------------------------------------------------- exact on a set

def small_set(n: int) -> PromptSet:
    """`n` IOI-shaped pairs the tiny tokenizer reads (names it knows, places that vary)."""
    places = ["store", "park", "shop", "beach", "lake", "house", "farm", "zoo", "school", "city", "hill", "road"]
    rows = []
    for i in range(n):
        first, second = ("Mary", "John") if i % 2 else ("John", "Mary")
        place = places[i % len(places)] + ("s" if i >= len(places) else "")
        rows.append({"clean": f"When {first} and {second} went to the {place}, {second} gave a drink to",
                     "corrupted": f"When {first} and {second} went to the {place}, {first} gave a drink to",
                     "answer": f" {first}", "wrong": f" {second}"})
    return PromptSet(name="small", rows=tuple(rows))


def test_exact_runs_on_a_seeded_sample_and_the_correlation_on_the_same_examples(tiny_gpt2_dir):
    """The exact column averages a seeded random sample of at most 16 examples; `sample_score`
    and the correlations in meta read the scores over those same examples: the set of just
    those rows, run alone, gives the same exact column and the same scores."""
    model = models.load(str(tiny_gpt2_dir))
    prompts = small_set(24)
    spec = AnalysisSpec(kind="circuit", model=str(tiny_gpt2_dir), dataset=prompts.reference,
                        method="eap", exact=True, seed=3)
    result = circuit_kind.run_set(model, spec, prompts)
    sample = result.meta["exact_examples"]
    assert len(sample) == circuit_kind.EXACT_EXAMPLES and sample != list(range(16)) and sample == sorted(sample)
    assert circuit_kind.run_set(model, spec, prompts).meta["exact_examples"] == sample  # seeded
    alone = circuit_kind.run_set(model, spec, PromptSet("sample", tuple(prompts.rows[i] for i in sample)))
    key = ["sender", "receiver", "receiver_input"]
    ours, theirs = (r.tables["edges"].sort_values(key).reset_index(drop=True) for r in (result, alone))
    np.testing.assert_allclose(ours["exact"], theirs["exact"], atol=1e-5)
    np.testing.assert_allclose(ours["sample_score"], theirs["score"], atol=1e-6)
    assert not np.allclose(ours["sample_score"], ours["score"], atol=1e-6)  # the sample is not the set
    assert result.meta["exact_spearman"] == pytest.approx(alone.meta["exact_spearman"], abs=1e-6)
    assert result.meta["exact_spearman"] == pytest.approx(
        spearmanr(ours["sample_score"], ours["exact"]).statistic, abs=1e-9)
