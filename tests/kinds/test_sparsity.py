"""Activation sparsity (PPL-p%, Luo et al. 2025): CETT, the per-layer thresholds and the
activation ratios held to numpy re-derivations; the search's thresholds re-applied by the
test's own hooks, on the text searched (within 0.1 points of p, below it) and on held-out text
(at most p% within the held-out estimate's sampling error); on the embedded model,
stories260K and the tiny GPT-2, Llama and NeoX."""
import math

import numpy as np
import pytest
import torch

from analyses import AnalysisSpec, compute
from analyses.kinds.sparsity.analysis import measure
from analyses.kinds.sparsity.cett import LayerCETT
from analyses.kinds.sparsity.search import PRECISION, TOLERANCE, search_cett
from analyses.kinds.sparsity.text import TextBatch, corpus_sample, prompts_batch
from analyses.runtime import models

pytestmark = pytest.mark.usefixtures("private_cache")

TINY = ("gpt2", "llama", "neox")
PROMPT = "Once upon a time there was a little girl named Lily. When Mary and John went to the store"


# --------------------------------------------------------------------------- numpy references

def numpy_cett(acts: np.ndarray, w_out: np.ndarray, threshold: float) -> float:
    """Token by token: ||Σ_{j: |a_j|·||w_j|| < t} a_j w_j|| / ||Σ_j a_j w_j||, averaged."""
    row_norms = np.linalg.norm(w_out.astype(np.float64), axis=1)
    errors = []
    for a in acts.astype(np.float64):
        cut = np.abs(a) * row_norms < threshold
        errors.append(np.linalg.norm((a * cut) @ w_out) / np.linalg.norm(a @ w_out))
    return float(np.mean(errors))


def plain_run(bridge, batch: TextBatch, thresholds=None):
    """(per-target NLL [n], per layer the kept share at each text token [layer][n_tokens],
    per layer the dense activations at the text's tokens): one forward with the test's own hooks
    zeroing |a_j|·||w_j|| < threshold (no zeroing without thresholds)."""
    n_layers = bridge.cfg.n_layers
    kept, acts = [[] for _ in range(n_layers)], [[] for _ in range(n_layers)]

    def hook_for(layer):
        # ||w_j|| rounded as the kind rounds it: each threshold is itself one dense contribution
        # norm, which layer 0 meets again exactly (a 1-ulp difference would flip that neuron)
        row_norms = bridge.blocks[layer].mlp.W_out.detach().float().norm(dim=-1)

        def hook(post, hook):
            acts[layer].append(post.detach().float()[batch.mask].numpy())
            if thresholds is None:
                return post
            keep = post.abs() * row_norms >= thresholds[layer]
            kept[layer].append(keep[batch.mask].float().mean(-1).numpy())
            return torch.where(keep, post, torch.zeros_like(post))
        return hook

    hooks = [(f"blocks.{layer}.mlp.hook_post", hook_for(layer)) for layer in range(n_layers)]
    with torch.no_grad():
        logits = bridge.run_with_hooks(batch.tokens, fwd_hooks=hooks).double().numpy()
    tokens, mask = batch.tokens.numpy(), batch.mask.numpy()
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    nll = -np.take_along_axis(logp[:, :-1], tokens[:, 1:, None], -1)[..., 0]
    targets = mask[:, 1:] & mask[:, :-1]
    ratios = [np.concatenate(k) if k else None for k in kept]
    return nll[targets], ratios, [np.concatenate(a) for a in acts]


def increase(dense_nll: np.ndarray, sparse_nll: np.ndarray) -> float:
    return (math.exp(sparse_nll.mean() - dense_nll.mean()) - 1) * 100


# --------------------------------------------------------------------------- the method alone

def test_cett_equals_a_numpy_loop():
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(50, 40, generator=gen) * torch.rand(40, generator=gen)
    w_out = torch.randn(40, 8, generator=gen)
    layer = LayerCETT(acts, w_out)
    for threshold in (0.0, 0.1, 0.5, 1.0, 3.0, 100.0):
        assert layer.cett(threshold) == pytest.approx(numpy_cett(acts.numpy(), w_out.numpy(), threshold),
                                                       abs=1e-6)
    assert layer.cett(0.0) == 0.0 and layer.cett(1e9) == pytest.approx(1.0)


@pytest.mark.parametrize("target", [0.0, 0.05, 0.2, 0.5, 0.9, 1.0])
def test_threshold_is_the_largest_whose_cett_stays_at_the_target(target):
    gen = torch.Generator().manual_seed(1)
    acts, w_out = torch.randn(30, 24, generator=gen), torch.randn(24, 6, generator=gen)
    threshold, reached = LayerCETT(acts, w_out).threshold_for(target)
    a, w = acts.numpy(), w_out.numpy()
    # just below: the threshold is itself a contribution norm, kept (float32 vs float64 rounding)
    assert reached == pytest.approx(numpy_cett(a, w, threshold * (1 - 1e-6)), abs=1e-6)
    assert reached <= target + 1e-9
    norms = np.sort((np.abs(a) * np.linalg.norm(w, axis=1)).ravel())
    above = norms[norms > threshold * (1 + 1e-6)]
    if len(above) and target < 1.0:  # the next candidate threshold (it zeroes the norm at `threshold`
        # too) exceeds the target: bisection's bracket (CETT is not monotone in general: zeroing
        # more neurons can cancel error, so "largest" is up to that bracket, as in the paper's code)
        assert numpy_cett(a, w, above[0] * (1 - 1e-6)) > target


def test_search_lands_within_precision_below_p():
    steps = np.linspace(0, 30, 4001)  # a rising staircase, as perplexity on a finite text
    curve = lambda c: float(steps[int(c * 4000)])  # noqa: E731
    found = search_cett(curve, 7.3)
    assert found.upper - found.cett <= TOLERANCE
    assert 7.3 - PRECISION <= curve(found.cett) < 7.3 <= curve(found.upper)
    assert found.increase == curve(found.cett) and found.steps == len(found.tried)


def test_bad_p_is_refused_naming_the_field():
    from analyses.core.errors import SpecError

    for bad in ("0", "-1", "1,1", "x", "1,2,3,4,5,6,7,8,9"):
        with pytest.raises(SpecError, match="p"):
            AnalysisSpec(kind="sparsity", p=bad)


# --------------------------------------------------------------------------- on models

def check_against_plain_hooks(bridge, batch: TextBatch, result, p_tolerance: bool = True):
    """Every p's reported thresholds, re-applied by the test's own hooks: the same activation
    ratios, perplexity increase and layer CETTs (numpy, on the dense activations)."""
    dense_nll, _, dense_acts = plain_run(bridge, batch)
    layers, summary = result.tables["layers"], result.tables["summary"]
    for p, rows in layers.groupby("p"):
        rows = rows.sort_values("layer")
        sparse_nll, ratios, _ = plain_run(bridge, batch, list(rows.threshold))
        measured = increase(dense_nll, sparse_nll)
        assert rows.ppl_increase.iloc[0] == pytest.approx(measured, abs=1e-3)
        assert np.allclose(rows.activation_ratio, [r.mean() for r in ratios], atol=1e-6)
        for _, row in rows.iterrows():
            w = bridge.blocks[int(row.layer)].mlp.W_out.detach().float().numpy()
            just_below = row.threshold * (1 - 1e-6)  # the threshold is itself a norm, kept
            assert row.layer_cett == pytest.approx(numpy_cett(dense_acts[int(row.layer)], w, just_below),
                                                   abs=1e-5)
            assert row.layer_cett <= row.cett + 1e-9
        line = summary[summary.p == p].iloc[0]
        assert line.sparsity == pytest.approx(1 - np.mean([r.mean() for r in ratios]), abs=1e-6)
        if p_tolerance and line.cett_upper < 1.0 and line.cett > 0.0:
            assert p - PRECISION <= measured < p  # the search converged below p, within 0.1 point
    tokens = result.tables["tokens"]
    first = tokens[tokens.p == layers.p.min()].sort_values(["layer", "document", "position"])
    assert len(first) == bridge.cfg.n_layers * batch.n_tokens


@pytest.mark.parametrize("arch", TINY)
def test_tiny_architectures_agree_with_plain_hooks(tiny_model_dir, arch):
    spec = AnalysisSpec(kind="sparsity", model=str(tiny_model_dir(arch)), prompt=PROMPT, p="5,20")
    result = compute(spec)
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    check_against_plain_hooks(bridge, prompts_batch(bridge, [PROMPT], ""), result, p_tolerance=False)
    neurons = result.tables["neurons"]
    assert len(neurons) == 2 * bridge.cfg.n_layers * bridge.cfg.d_mlp
    assert (neurons.dead == (neurons.frequency == 0)).all()
    assert set(result.tables["curve"].source) >= {"grid", "search p=5"}


@pytest.mark.parametrize("arch", ["llama"])
def test_gated_activation_is_gate_times_up(tiny_model_dir, arch):
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    names = {"blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_pre_linear", "blocks.0.mlp.hook_post"}
    with torch.no_grad():
        _, cache = bridge.run_with_cache(bridge.to_tokens(PROMPT), names_filter=lambda n: n in names)
    gate, up = cache["blocks.0.mlp.hook_pre"], cache["blocks.0.mlp.hook_pre_linear"]
    assert torch.allclose(cache["blocks.0.mlp.hook_post"], torch.nn.functional.silu(gate) * up, atol=1e-6)


def searched_and_held_out(bridge, p: float):
    """The search on one corpus sample, its thresholds re-applied on another (seed 1)."""
    searched = corpus_sample(bridge, 0)  # the default text: 16 documents of 128 tokens
    spec = AnalysisSpec(kind="sparsity", model="default", p=str(p)).with_defaults()
    result = measure(bridge, spec, searched, lambda f, m: None)
    check_against_plain_hooks(bridge, searched, result)
    held = corpus_sample(bridge, 1)
    dense, _, _ = plain_run(bridge, held)
    sparse, _, _ = plain_run(bridge, held, list(result.tables["layers"].sort_values("layer").threshold))
    # the held-out increase is an estimate: its 95% interval must reach down to p% or below
    diff = sparse - dense
    low = (math.exp(diff.mean() - 1.96 * diff.std(ddof=1) / math.sqrt(len(diff))) - 1) * 100
    assert low <= p, f"held-out increase {increase(dense, sparse):.2f}% (interval from {low:.2f}%) > {p}%"
    return result


def test_embedded_model_search_holds_on_held_out_text(embedded):
    result = searched_and_held_out(embedded.bridge, 5.0)
    assert 0 < result.tables["summary"].sparsity.item() < 1


def test_stories260k_search_holds_on_held_out_text(stories260k_dir):
    bridge = models.load(str(stories260k_dir / "stories260K.bin")).bridge
    result = searched_and_held_out(bridge, 5.0)
    assert 0 < result.tables["summary"].sparsity.item() < 1


def test_a_prompt_set_is_read_as_one_text(tiny_gpt2_dir):
    from analyses.runtime.datasets import resolve

    result = compute(AnalysisSpec(kind="sparsity", model=str(tiny_gpt2_dir), dataset="facts", p="5"))
    rows = resolve("facts").rows
    assert result.meta["n_documents"] == len(rows) == len(result.tables["examples"])
    bridge = models.load(str(tiny_gpt2_dir)).bridge
    batch = prompts_batch(bridge, [row["clean"] for row in rows], "")
    assert result.meta["n_tokens"] == batch.n_tokens  # padding never counted
    check_against_plain_hooks(bridge, batch, result, p_tolerance=False)
