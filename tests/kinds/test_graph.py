"""The attribution graph: the replacement model is exact, edges are the frozen replacement's
direct effects, pruning and scores follow circuit-tracer's definitions."""
import numpy as np
import pytest
import torch

from analyses.kinds.graph import attribution, interventions, pruning
from analyses.kinds.graph import replacement as R
from analyses.kinds.tokens import prompt_tokens
from tests.kinds.graph_helpers import random_transcoders

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(params=["gpt2", "llama"])
def tiny(request, tiny_model_dir):
    from analyses.runtime import models

    bridge = models.load(str(tiny_model_dir(request.param))).bridge
    coders = random_transcoders(bridge, skip=request.param == "llama")  # a skip path on one of them
    prompt = R.capture(bridge, prompt_tokens(bridge, "When Mary and John went"), coders)
    return bridge, coders, prompt


def _zero_sources(prompt):
    s = prompt.sources
    return R.Sources(s.embeddings * 0, s.acts * 0, s.errors * 0)


@torch.no_grad()
def _reads(bridge, prompt, coders, sources):
    """Every target's value in the frozen replacement fed `sources`: each latent's encoder
    pre-activation at its layer and position, each logit minus the mean logit."""
    mlp_in = []
    logits = R.run_frozen(bridge, prompt, coders, sources=sources, read_mlp_in=mlp_in)[0, -1].double()
    latents = []
    for layer, pos, latent in prompt.features.tolist():
        coder = coders[layer]
        x = mlp_in[layer][0, pos].double()
        if coder.cfg.centers_input:
            x = x - coder.b_dec.double()
        latents.append(float(x @ coder.encoder.weight[latent].double() + coder.encoder.bias[latent].double()))
    return np.array(latents), logits


def test_replacement_reproduces_the_models_logits(tiny):
    bridge, coders, prompt = tiny
    assert (R.run_frozen(bridge, prompt, coders)[0] - prompt.logits).abs().max() <= 1e-4
    assert len(prompt.features) > 0 and prompt.sources.errors.abs().max() > 1e-2  # the errors do work


def test_replacement_reproduces_the_embedded_models_logits(embedded):
    from analyses.core.spec import AnalysisSpec
    from analyses.kinds.graph.run import _coders

    _, coders = _coders(embedded, AnalysisSpec(kind="graph", prompt=PROMPT))
    bridge = embedded.bridge
    prompt = R.capture(bridge, prompt_tokens(bridge, PROMPT), coders)
    with torch.no_grad():
        model_logits = bridge(prompt.tokens)[0]
    assert (R.run_frozen(bridge, prompt, coders)[0] - model_logits).abs().max() <= 1e-4


def test_the_frozen_replacement_is_affine_in_its_sources(tiny):
    bridge, coders, prompt = tiny
    s = prompt.sources
    doubled = R.Sources(s.embeddings * 2, s.acts * 2, s.errors * 2)
    f0, f1, f2 = (R.run_frozen(bridge, prompt, coders, sources=x)[0].double()
                  for x in (_zero_sources(prompt), s, doubled))
    assert ((f2 - f0) - 2 * (f1 - f0)).abs().max() <= 1e-4 * (f1 - f0).abs().max()


def test_incoming_edges_plus_bias_equal_each_targets_value(tiny):
    bridge, coders, prompt = tiny
    graph = attribution.attribute(bridge, prompt, coders, batch_size=40)  # several passes
    # the bias, re-derived: the affine map's constant is its value with every source at zero
    latent_bias, logits0 = _reads(bridge, prompt, coders, _zero_sources(prompt))
    logit_bias = (logits0[torch.as_tensor(graph.logit_ids)] - logits0.mean()).numpy()
    incoming = graph.adjacency.astype(np.float64).sum(1)
    np.testing.assert_allclose(incoming[:graph.n_features] + latent_bias,
                               prompt.sources.acts.double().numpy(), atol=2e-4)
    last = prompt.logits[-1].double()
    want = (last[torch.as_tensor(graph.logit_ids)] - last.mean()).numpy()
    np.testing.assert_allclose(incoming[graph.logit_start:] + logit_bias, want, atol=2e-4)
    np.testing.assert_allclose(graph.bias[:graph.n_features], latent_bias, atol=2e-4)


def test_edges_equal_a_finite_difference_of_the_frozen_replacement(tiny):
    """Setting one source to zero changes every target by minus its edge (the map is affine)."""
    bridge, coders, prompt = tiny
    graph = attribution.attribute(bridge, prompt, coders)
    base_latents, base_logits = _reads(bridge, prompt, coders, prompt.sources)
    ids = torch.as_tensor(graph.logit_ids)
    gen = np.random.default_rng(0)
    s = prompt.sources
    checked = 0
    for source in [*gen.choice(graph.n_features, 4, replace=False), graph.error_start + 1,
                   graph.error_start + graph.n_pos + 2, graph.token_start + 2]:
        if source < graph.n_features:
            acts = s.acts.clone()
            acts[source] = 0
            changed = R.with_acts(s, acts)
        elif source < graph.token_start:
            layer, pos = divmod(source - graph.error_start, graph.n_pos)
            errors = s.errors.clone()
            errors[layer, pos] = 0
            changed = R.Sources(s.embeddings, s.acts, errors)
        else:
            embeddings = s.embeddings.clone()
            embeddings[source - graph.token_start] = 0
            changed = R.Sources(embeddings, s.acts, s.errors)
        latents, logits = _reads(bridge, prompt, coders, changed)
        # a zeroed latent no longer reads its own input: only its targets are compared
        delta_latents = np.where(np.arange(graph.n_features) == source, 0, latents - base_latents)
        delta_logits = (logits[ids] - logits.mean() - base_logits[ids] + base_logits.mean()).numpy()
        edges = graph.adjacency[:, source].astype(np.float64)
        np.testing.assert_allclose(delta_latents, -edges[:graph.n_features], atol=2e-4)
        np.testing.assert_allclose(delta_logits, -edges[graph.logit_start:], atol=2e-4)
        checked += np.abs(edges).max() > 1e-3
    assert checked >= 3  # most sampled sources do reach something


def test_latent_edges_only_come_from_earlier_layers(tiny):
    bridge, coders, prompt = tiny
    graph = attribution.attribute(bridge, prompt, coders)
    layers = prompt.features[:, 0].numpy()
    pos = prompt.features[:, 1].numpy()
    block = graph.adjacency[:graph.n_features, :graph.n_features]
    later_or_same = (layers[None, :] >= layers[:, None]) | (pos[None, :] > pos[:, None])
    assert np.all(block[later_or_same] == 0)


# ------------------------------------------------------------------ influence, pruning, scores

def _chain_graph():
    """tokens -> latents -> logit, with one error: small enough to check by hand."""
    layout = pruning.Layout(n_features=3, n_errors=1, n_tokens=2, n_logits=1)
    a = np.zeros((7, 7))
    a[0, 4], a[0, 5] = 2.0, -1.0  # latent 0 <- tokens
    a[1, 4] = 0.5  # latent 1 <- token 0
    a[2, 0], a[2, 3] = 1.0, 1.0  # latent 2 <- latent 0, error
    a[6, 2], a[6, 1], a[6, 5] = 3.0, -0.1, 0.2  # logit <- latent 2, latent 1, token 1
    return a, layout, np.array([1.0])


def test_influence_is_the_sum_over_paths_of_normalised_edges():
    a, layout, probs = _chain_graph()
    normal = np.abs(a) / np.maximum(np.abs(a).sum(1, keepdims=True), 1e-10)
    weights = layout.logit_weights(probs)
    want = weights @ (np.linalg.inv(np.eye(7) - normal) - np.eye(7))
    np.testing.assert_allclose(pruning.influence(pruning.normalized(a), weights), want, atol=1e-12)


def test_scores_follow_circuit_tracers_definitions():
    a, layout, probs = _chain_graph()
    normal = np.abs(a) / np.maximum(np.abs(a).sum(1, keepdims=True), 1e-10)
    weights = layout.logit_weights(probs)
    infl = weights @ (np.linalg.inv(np.eye(7) - normal) - np.eye(7))
    replacement, completeness = pruning.scores(a, layout, probs)
    assert replacement == pytest.approx(infl[4:6].sum() / (infl[4:6].sum() + infl[3]))
    out = infl + weights
    assert completeness == pytest.approx(((1 - normal[:, 3]) * out).sum() / out.sum())
    # a graph without error edges is complete and a full replacement
    b = a.copy()
    b[:, 3] = 0
    assert pruning.scores(b, layout, probs) == pytest.approx((1.0, 1.0))


def test_pruning_keeps_tokens_logits_and_the_influential_share():
    a, layout, probs = _chain_graph()
    kept = pruning.prune(a, layout, probs, node_threshold=0.8, edge_threshold=0.98)
    assert kept.node_mask[4:].all()  # tokens and logits always
    assert kept.node_mask[2] and not kept.node_mask[1]  # latent 2 carries most; latent 1 little
    infl = kept.node_influence
    cutoff = pruning.threshold_of(infl, 0.8)
    assert infl[infl >= cutoff].sum() >= 0.8 * infl.sum()  # the cutoff holds the share asked
    assert (infl[:4][kept.node_mask[:4]] >= cutoff).all()  # and nothing under it is kept
    assert not kept.edge_mask[:, ~kept.node_mask].any() and not kept.edge_mask[~kept.node_mask].any()
    capped = pruning.prune(a, layout, probs, node_threshold=1.0, max_features=1)
    assert capped.node_mask[:3].sum() <= 1


def test_folding_a_dropped_latent_moves_its_edges_to_its_error():
    a, layout, probs = _chain_graph()
    where = np.array([[0, 1], [0, 1], [1, 0]])  # (layer, pos) of each latent; the error is (0, 0)
    layout1 = pruning.Layout(3, 1, 2, 1)
    out = pruning.folded(a, layout1, where[:, :2] * 0, 1, np.array([True, False, True]))
    assert out[6, 3] == pytest.approx(a[6, 1] + a[6, 3]) and not out[:, 1].any() and not out[1].any()


# ------------------------------------------------------------------ interventions

def test_predicted_change_of_a_last_layer_latent_is_the_frozen_replacements(tiny):
    bridge, coders, prompt = tiny
    graph = attribution.attribute(bridge, prompt, coders)
    last_layer = int(prompt.features[:, 0].max())
    node = int((prompt.features[:, 0] == last_layer).nonzero()[0])
    old = float(prompt.sources.acts[node])
    predicted = interventions.predicted_change(graph, node, -old)[graph.logit_start:]
    acts = prompt.sources.acts.clone()
    acts[node] = 0
    _, after = _reads(bridge, prompt, coders, R.with_acts(prompt.sources, acts))
    _, before = _reads(bridge, prompt, coders, prompt.sources)
    ids = torch.as_tensor(graph.logit_ids)
    want = (after[ids] - after.mean() - before[ids] + before.mean()).numpy()
    np.testing.assert_allclose(predicted, want, atol=2e-4)


def test_operations_parse_and_apply():
    assert interventions.new_value(2.0, "x0") == 0.0
    assert interventions.new_value(2.0, "x-1") == -2.0
    assert interventions.new_value(2.0, "x2.5") == 5.0
    assert interventions.new_value(2.0, "=3") == 3.0
    assert interventions.parse("1.5@3:x0, 0.2@1:=2") == [("1.5@3", "x0"), ("0.2@1", "=2")]
    from analyses.core.errors import SpecError
    with pytest.raises(SpecError, match="intervene"):
        interventions.parse("1.5@3:times2")
