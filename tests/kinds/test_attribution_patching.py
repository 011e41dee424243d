"""Attribution patching: AtP equals TransformerLens's on the same inputs; AtP (and AtP*'s
query/key fix) is exact where the metric is linear in what it linearises; GradDrop's
structure; the agreement table; the spec fields; a real model end to end."""
import numpy as np
import pandas as pd
import pytest
import torch
from transformer_lens.tools.analysis.attribution_patching import (
    attribution_patch,
    cache_activation_and_gradient,
)

from analyses import AnalysisSpec, SpecError
from analyses.kinds.attribution_patching import attribute, exact_effects, run
from analyses.kinds.patching.engine import Patcher, prompt_pair
from analyses.runtime import models
from conftest import save_tiny_model

CLEAN = "Mary and John: John gave it to"
CORRUPTED = "Mary and John: Mary gave it to"
PAIR = dict(clean=CLEAN, corrupted=CORRUPTED, answer=" Mary", wrong=" John")
ARCHS = ("gpt2", "llama", "neox")


def spec(model_dir, **extra) -> AnalysisSpec:
    return AnalysisSpec(kind="attribution_patching", model=str(model_dir), **PAIR, **extra)


def tl_metric(pair):
    return lambda logits: logits[0, -1, pair.answer] - logits[0, -1, pair.wrong]


def lookup(table, node, layer, position, head=-1) -> float:
    row = table[(table.node == node) & (table.layer == layer) & (table.position == position)
                & (table["head"] == head)]
    assert len(row) == 1, (node, layer, position, head)
    return float(row.atp.iloc[0])


@pytest.mark.parametrize("arch", ARCHS)
def test_node_scores_equal_transformer_lens(tiny_model_dir, arch):
    folder = tiny_model_dir(arch)
    model = models.load(str(folder))
    bridge = model.bridge
    pair = prompt_pair(bridge, spec(folder))
    ours = run(model, spec(folder, exact=False)).tables["attributions"]
    reference = attribution_patch(bridge, pair.clean, pair.corrupted, tl_metric(pair))
    compared = 0
    for node, score in reference.node_scores.items():
        if node.kind == "attn_head_out":
            got = lookup(ours, "head", node.layer, node.position, node.head)
        elif node.kind == "mlp_out":
            got = lookup(ours, "mlp", node.layer, node.position)
        else:
            continue  # the embedding write: not one of our nodes
        assert got == pytest.approx(score, abs=1e-5), node
        compared += 1
    assert compared == len(ours[ours.node.isin(["head", "mlp"])])
    # residual-stream nodes, from the library's own activation-and-gradient cache
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(bridge.cfg.n_layers)]
    clean = cache_activation_and_gradient(bridge, pair.clean, tl_metric(pair), names,
                                          compute_gradient=False)
    corrupted = cache_activation_and_gradient(bridge, pair.corrupted, tl_metric(pair), names)
    for layer, name in enumerate(names):
        expected = ((clean.activations[name] - corrupted.activations[name])
                    * corrupted.gradients[name]).sum(-1)[0]  # [pos]
        got = ours[(ours.node == "resid") & (ours.layer == layer)].sort_values("position").atp
        np.testing.assert_allclose(got.to_numpy(), expected.numpy(), atol=1e-5)


def frozen_final_norm(bridge, pair, zero_last_mlp=False):
    """Hooks that make the metric affine in the last block's outputs: the final norm's scale
    fixed at its corrupted-run value (what makes a norm nonlinear is dividing by it) and,
    optionally, the last MLP's output zeroed (so the last attention output reaches the
    logits through nothing but the fixed norm and the unembedding)."""
    with torch.no_grad():
        _, cache = bridge.run_with_cache(pair.corrupted, names_filter=["ln_final.hook_scale"])
    scale = cache["ln_final.hook_scale"]
    hooks = [("ln_final.hook_scale", lambda x, hook: scale.expand_as(x).to(x.dtype))]
    if zero_last_mlp:
        last = bridge.cfg.n_layers - 1
        hooks.append((f"blocks.{last}.hook_mlp_out", lambda x, hook: torch.zeros_like(x)))
    return bridge.hooks(fwd_hooks=hooks)


@pytest.mark.parametrize("arch", ARCHS)
def test_atp_is_exact_where_the_metric_is_linear_in_the_node(tiny_model_dir, arch):
    """With the final norm's scale frozen, the logit difference is an affine function of the
    final residual stream at the last position: logits = W_U (norm_w * (x - mean x) / s) + b.
    The final residual node there, and the last MLP's output there (which is added straight
    into it), therefore move the metric exactly linearly, and a first-order Taylor estimate
    of a linear function is the function: AtP must equal exact patching to float precision.
    (Without the freeze the norm's division makes them differ, as the last check shows.)"""
    folder = tiny_model_dir(arch)
    bridge = models.load(str(folder)).bridge
    pair = prompt_pair(bridge, spec(folder))
    n_layers, last = bridge.cfg.n_layers, pair.corrupted.shape[1] - 1

    def linear_nodes(nodes):
        final = (nodes.node == "resid") & (nodes.layer == n_layers)
        last_mlp = (nodes.node == "mlp") & (nodes.layer == n_layers - 1)
        picked = nodes[(final | last_mlp) & (nodes.position == last)].copy()
        assert len(picked) == 2
        return picked

    with frozen_final_norm(bridge, pair):
        nodes = linear_nodes(attribute(bridge, pair, list(range(n_layers))).nodes)
        nodes["exact"] = exact_effects(Patcher(bridge, pair), nodes)
    assert nodes.exact.abs().min() > 1e-3  # a real effect, not 0 == 0
    np.testing.assert_allclose(nodes.atp, nodes.exact, atol=1e-5)
    free = linear_nodes(attribute(bridge, pair, list(range(n_layers))).nodes)
    free["exact"] = exact_effects(Patcher(bridge, pair), free)
    assert (free.atp - free.exact).abs().max() > 1e-5


@pytest.mark.parametrize("arch", ["gpt2", "llama"])  # llama: a key is shared by 2 query heads
def test_qk_fix_is_exact_where_only_the_softmax_is_nonlinear(tiny_model_dir, arch):
    """Freeze the final norm's scale and zero the last MLP: the metric is then linear in the
    last layer's attention pattern (output = pattern @ values, values untouched by a query or
    key patch). Patching one query or one key of that layer changes the pattern only through
    its softmax, which AtP* recomputes exactly: its estimate must equal exact patching, where
    plain AtP, linearising the softmax too, does not."""
    folder = tiny_model_dir(arch)
    bridge = models.load(str(folder)).bridge
    pair = prompt_pair(bridge, spec(folder))
    n_layers = bridge.cfg.n_layers
    with frozen_final_norm(bridge, pair, zero_last_mlp=True):
        fixed = attribute(bridge, pair, [n_layers - 1], qk_fix=True).nodes
        plain = attribute(bridge, pair, [n_layers - 1]).nodes
        qk = fixed.node.isin(["q", "k"]).to_numpy()
        exact = exact_effects(Patcher(bridge, pair), fixed[qk])
    assert np.abs(exact).max() > 1e-3
    np.testing.assert_allclose(fixed.atp[qk], exact, atol=1e-5)
    assert np.abs(plain.atp[qk].to_numpy() - exact).max() > 1e-4
    others = ~qk  # the fix touches q and k nodes only
    np.testing.assert_allclose(fixed.atp[others], plain.atp[others], atol=1e-6)


def test_graddrop_is_a_magnitude_that_leaves_last_layer_nodes_at_their_atp(tiny_gpt2_dir):
    """GradDrop averages |AtP| over L passes, each dropping one block's output gradient, with
    weight 1/(L-1). A last-layer head or MLP loses its whole gradient in its own block's pass
    and keeps it in every other (those drops are upstream of it): so its score is |AtP|."""
    model = models.load(str(tiny_gpt2_dir))
    pair = prompt_pair(model.bridge, spec(tiny_gpt2_dir))
    layers = list(range(model.bridge.cfg.n_layers))
    plain = attribute(model.bridge, pair, layers).nodes
    dropped = attribute(model.bridge, pair, layers, graddrop=True).nodes
    assert (dropped.atp >= 0).all()
    last = ((plain.node.isin(["head", "mlp"])) & (plain.layer == layers[-1])).to_numpy()
    np.testing.assert_allclose(dropped.atp[last], plain.atp[last].abs(), atol=1e-6)
    earlier = (plain.node == "head") & (plain.layer == 0)
    assert not np.allclose(dropped.atp[earlier], plain.atp[earlier].abs(), atol=1e-6)


def test_graddrop_needs_two_layers(model_roots, tmp_path):
    one_layer = save_tiny_model("gpt2", tmp_path / "one-layer", n_layers=1)  # its own model:
    model = models.load(str(one_layer))  # the shared cached ones are never changed
    pair = prompt_pair(model.bridge, spec(one_layer))
    with pytest.raises(SpecError, match="graddrop: needs a model with at least 2 layers"):
        attribute(model.bridge, pair, [0], graddrop=True)


def test_exact_and_agreement_tables(tiny_llama_dir):
    model = models.load(str(tiny_llama_dir))
    result = run(model, spec(tiny_llama_dir, qk_fix=True, graddrop=True))
    nodes, agreement = result.tables["attributions"], result.tables["agreement"]
    assert result.meta["exact"] and nodes.exact.notna().all()  # few nodes: exact by default
    assert set(nodes.node) == {"resid", "head", "mlp", "q", "k", "v"}
    cfg = model.bridge.cfg
    n_keys = cfg.n_layers * cfg.n_key_value_heads * result.meta["n_tokens"]
    assert len(nodes[nodes.node == "k"]) == n_keys
    assert set(nodes[nodes.node == "resid"].layer) == set(range(cfg.n_layers + 1))
    assert list(agreement.node) == ["resid", "head", "mlp", "q", "k", "v", "all"]
    # Each number re-derived by another route: numpy's Pearson of the values and of their
    # ranks (scipy's rankdata convention: ties share their mean rank), and set overlap of
    # the 10 largest by magnitude. GraddDrop is on, so AtP is compared with |exact|.
    assert result.meta["atp_is_magnitude"]
    for kind_name, group in [*nodes.groupby("node", sort=False), ("all", nodes)]:
        row = agreement.set_index("node").loc[kind_name]
        atp, exact = group.atp.to_numpy(float), group.exact.abs().to_numpy(float)
        atp, exact = (np.where(np.abs(v) < 1e-4, 0.0, v) for v in (atp, exact))  # noise ties at 0
        expected_r = np.corrcoef(atp, exact)[0, 1]
        ranks = [pd.Series(v).rank().to_numpy() for v in (atp, exact)]
        expected_rho = np.corrcoef(*ranks)[0, 1]
        k = min(10, len(group))
        overlap = len(set(np.argsort(-np.abs(atp), kind="stable")[:k])
                      & set(np.argsort(-np.abs(exact), kind="stable")[:k])) / k
        assert row.pearson == pytest.approx(expected_r, abs=1e-9), kind_name
        assert row.spearman == pytest.approx(expected_rho, abs=1e-9), kind_name
        assert row.top10_overlap == pytest.approx(overlap), kind_name
        assert row.n_nodes == len(group) and row.n_signal == int((exact != 0).sum()), kind_name
    # the patching engine's own baselines: exact = patched - corrupted
    assert result.meta["corrupted_baseline"] != result.meta["clean_baseline"]


def test_exact_can_be_switched_off(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    result = run(model, spec(tiny_gpt2_dir, exact=False, layer=1))
    nodes = result.tables["attributions"]
    assert nodes.exact.isna().all() and "agreement" not in result.tables
    assert set(nodes.layer) == {1, 2}  # layer 1, and the final residual stream after it
    # the baselines come from the gradient pass's own rows: the same as the patching engine's
    with_exact = run(model, spec(tiny_gpt2_dir, exact=True, layer=1)).meta
    for key in ("clean_baseline", "corrupted_baseline"):
        assert result.meta[key] == pytest.approx(with_exact[key], abs=1e-5)


def test_the_atp_star_fields_round_trip_and_belong_to_attribution_only(tiny_gpt2_dir):
    original = spec(tiny_gpt2_dir, qk_fix=True, graddrop=False, exact=True)
    assert AnalysisSpec.from_query(original.to_query()) == original
    assert "qk_fix=1" in original.to_query() and "graddrop=0" in original.to_query()
    with pytest.raises(SpecError, match="qk_fix: does not apply to kind 'activation_patching'"):
        AnalysisSpec(kind="activation_patching", **PAIR, qk_fix=True)


def test_stories260k_attributes_end_to_end(stories260k_dir):
    ref = str(stories260k_dir / "stories260K.bin")
    model = models.load(ref)
    pair = dict(clean="Lily and Tim went to the park. Tim gave the ball to",
                corrupted="Lily and Tim went to the park. Lily gave the ball to",
                answer=" Lily", wrong=" Tim")
    last = model.bridge.cfg.n_layers - 1  # one layer's nodes: few enough for exact by default
    result = run(model, AnalysisSpec(kind="attribution_patching", model=ref, qk_fix=True,
                                     layer=last, **pair))
    nodes, agreement = result.tables["attributions"], result.tables["agreement"]
    assert result.meta["exact"] and np.isfinite(nodes.atp).all() and np.isfinite(nodes.exact).all()
    final = nodes[(nodes.node == "resid") & (nodes.layer == model.bridge.cfg.n_layers)]
    gap = result.meta["clean_baseline"] - result.meta["corrupted_baseline"]
    assert final.exact.iloc[-1] == pytest.approx(gap, abs=1e-4)  # the final residual restores all
    assert agreement.set_index("node").loc["all", "pearson"] > 0.5


def test_a_separate_clean_forward_gives_the_same_scores(tiny_gpt2_dir, monkeypatch):
    """Long prompts run the clean prompt apart (memory); short ones in the gradient batch."""
    import analyses.kinds.attribution_patching.atp as atp  # the module that runs the gradient pass

    model = models.load(str(tiny_gpt2_dir))
    batched = run(model, spec(tiny_gpt2_dir, exact=False))
    monkeypatch.setattr(atp, "CLEAN_IN_BATCH_WORK", 0)
    apart = run(model, spec(tiny_gpt2_dir, exact=False))
    np.testing.assert_allclose(apart.tables["attributions"].atp, batched.tables["attributions"].atp,
                               atol=1e-6)
    for key in ("clean_baseline", "corrupted_baseline"):
        assert apart.meta[key] == pytest.approx(batched.meta[key], abs=1e-6)


def test_agreement_does_not_follow_float_noise():
    """Nodes whose effects are float noise (|x| < 1e-4) tie at zero: noise of 1e-6 on them
    leaves every correlation where it was, and n_signal counts only the others."""
    from analyses.kinds.attribution_patching import agreement

    rng = np.random.default_rng(0)
    n = 40
    signal = rng.normal(size=n) * (np.arange(n) < 12)  # 12 nodes with an effect, 28 without
    nodes = pd.DataFrame({"node": ["head"] * n, "layer": 0, "position": np.arange(n), "head": 0,
                          "atp": signal * 0.9 + rng.normal(size=n) * 1e-6,
                          "exact": signal + rng.normal(size=n) * 1e-6})
    noisy = nodes.assign(atp=nodes.atp + rng.normal(size=n) * 1e-6,
                         exact=nodes.exact + rng.normal(size=n) * 1e-6)
    a, b = agreement(nodes, magnitude=False), agreement(noisy, magnitude=False)
    pd.testing.assert_frame_equal(a, b)
    assert a.set_index("node").loc["head", "n_signal"] == 12


@pytest.mark.parametrize("magnitude", [False, True])
def test_agreements_of_many_examples_equal_pandas_and_scipy_on_each(magnitude):
    """The batched agreement ([example, node] arrays) against a re-derivation per example and
    node kind: pandas' groupby and `nlargest` (ties to the earlier node), scipy's correlations."""
    from scipy import stats

    from analyses.kinds.attribution_patching.agreement import SIGNAL_TOLERANCE, TOP, agreements

    rng = np.random.default_rng(2)
    kinds = np.array(["resid"] * 5 + ["head"] * 30 + ["mlp"] * 4 + ["q"] * 30)
    exact = np.round(rng.normal(size=(4, len(kinds))), 1) * (rng.random((4, len(kinds))) < 0.5)
    atp = exact * 0.8 + rng.normal(size=exact.shape) * 0.3
    atp[:, :10] = 1e-6  # noise tied at zero, and ties for the top 10
    exact[3, 35:39] = 0.0  # a kind with no signal in one example: constant, NaN correlations
    got = agreements(kinds, atp, exact, magnitude)
    for e in range(len(exact)):
        nodes = pd.DataFrame({"node": kinds, "atp": atp[e], "exact": exact[e]})
        target = nodes.exact.abs() if magnitude else nodes.exact
        target = target.where(target.abs() >= SIGNAL_TOLERANCE, 0.0)
        estimate = nodes.atp.where(nodes.atp.abs() >= SIGNAL_TOLERANCE, 0.0)
        rows = []
        for kind, group in [*nodes.groupby("node", sort=False), ("all", nodes)]:
            a, b = estimate.loc[group.index], target.loc[group.index]
            defined = a.nunique() > 1 and b.nunique() > 1
            k = min(TOP, len(group))
            overlap = set(a.abs().nlargest(k).index) & set(b.abs().nlargest(k).index)
            rows.append({"node": kind,
                         "pearson": stats.pearsonr(a, b).statistic if defined else np.nan,
                         "spearman": stats.spearmanr(a, b).statistic if defined else np.nan,
                         "top10_overlap": len(overlap) / k, "n_nodes": len(group), "n_signal": int((b != 0).sum())})
        pd.testing.assert_frame_equal(got[e], pd.DataFrame(rows), check_dtype=False, atol=1e-12)
    assert np.isnan(got[3].set_index("node").loc["mlp", "pearson"])


# --------------------------------------------------------------------------- RelP

def _relevance_by_layer(bridge, text: str, answer: str, wrong: str, relp: bool) -> tuple[float, list[float]]:
    """The logit difference and, at every block's input, Σ (activation · its signal): the
    gradient, or RelP's relevance."""
    from analyses.kinds.relp import relp_hooks

    tokens = bridge.to_tokens(text)
    a, w = bridge.to_single_token(answer), bridge.to_single_token(wrong)
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(bridge.cfg.n_layers)]
    zeros, seen = {}, {}

    def keep(x, hook, name):
        zeros[name], seen[name] = torch.zeros_like(x, requires_grad=True), x.detach()
        return x + zeros[name]

    hooks = [(n, lambda x, hook, n=n: keep(x, hook, n)) for n in names] + (relp_hooks(bridge) if relp else [])
    with torch.enable_grad():
        logits = bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        metric = logits[0, -1, a] - logits[0, -1, w]
        grads = torch.autograd.grad(metric, [zeros[n] for n in names])
    return metric.item(), [float((seen[n] * g).sum()) for n, g in zip(names, grads)]


def test_relp_conserves_relevance_layer_by_layer_on_a_bias_free_llama(stories260k_dir):
    """LRP's defining property, which the gradient lacks: with no biases, every layer's input
    carries the whole logit difference as relevance (the rules for the norms, the fixed
    attention patterns, the SiLU and the gate are each conservative)."""
    bridge = models.load(str(stories260k_dir / "stories260K.bin")).bridge
    args = ("Lily and Tim went to the park. Tim gave the ball to", " Lily", " Tim")
    metric, relevance = _relevance_by_layer(bridge, *args, relp=True)
    assert np.allclose(relevance, metric, rtol=1e-4, atol=1e-5), (metric, relevance)
    _, gradient = _relevance_by_layer(bridge, *args, relp=False)
    assert not np.allclose(gradient, metric, rtol=1e-2)  # plain gradient × input is not conservative


def test_relp_leaves_the_forward_pass_alone(stories260k_dir):
    from analyses.kinds.relp import relp_hooks

    bridge = models.load(str(stories260k_dir / "stories260K.bin")).bridge
    tokens = bridge.to_tokens("Once upon a time")
    with torch.no_grad():
        plain = bridge(tokens)
        with bridge.hooks(fwd_hooks=relp_hooks(bridge)):
            relp = bridge(tokens)
    assert torch.allclose(plain, relp, atol=1e-4)


def test_relp_runs_beside_atp_and_reports_its_agreement(tiny_gpt2_dir):
    spec = AnalysisSpec(kind="attribution_patching", model=str(tiny_gpt2_dir), clean=CLEAN, corrupted=CORRUPTED,
                        answer=" Mary", wrong=" John", method="relp", exact=True)
    model = models.load(str(tiny_gpt2_dir))
    result = run(model, spec)
    nodes = result.tables["attributions"]
    assert nodes.query("node in ['q', 'k']")["relp"].isna().all()
    assert nodes.query("node not in ['q', 'k']")["relp"].notna().all()
    relp = result.tables["relp_agreement"]
    assert set(relp["node"]) == {"resid", "head", "mlp", "v", "all"}
    assert "relp_vs_atp" in result.figures()
    with pytest.raises(SpecError) as err:
        run(model, AnalysisSpec(**{**dict(spec.items()), "qk_fix": True}))
    assert err.value.field == "method"


# --------------------------------------------------------------------------- the gradient convention

@pytest.mark.parametrize("arch", ("gpt2", "neox"))
def test_clean_gradient_scores_equal_transformer_lens_with_the_runs_swapped(tiny_model_dir, arch):
    """gradient=clean: (clean − corrupted) · ∂metric/∂node on the clean run, TransformerLens's
    attribution_patch (gradient on its second argument) with the runs swapped, sign flipped."""
    folder = tiny_model_dir(arch)
    model = models.load(str(folder))
    pair = prompt_pair(model.bridge, spec(folder))
    ours = run(model, spec(folder, exact=False, gradient="clean")).tables["attributions"]
    reference = attribution_patch(model.bridge, pair.corrupted, pair.clean, tl_metric(pair))
    compared = 0
    for node, score in reference.node_scores.items():
        if node.kind in ("attn_head_out", "mlp_out"):
            got = lookup(ours, "head" if node.kind == "attn_head_out" else "mlp", node.layer, node.position,
                         node.head if node.kind == "attn_head_out" else -1)
            assert got == pytest.approx(-score, abs=1e-5), node
            compared += 1
    assert compared == len(ours[ours.node.isin(["head", "mlp"])])
    default = run(model, spec(folder, exact=False)).tables["attributions"]
    assert not np.allclose(default.atp, ours.atp, atol=1e-4)


def test_clean_gradient_exact_is_the_effect_of_corrupting_the_clean_run(tiny_gpt2_dir):
    """With gradient=clean, `exact` is what the estimate estimates: the clean metric minus the
    clean run with that one node corrupted (by hand here, one hooked forward)."""
    model = models.load(str(tiny_gpt2_dir))
    bridge = model.bridge
    result = run(model, spec(tiny_gpt2_dir, exact=True, gradient="clean"))
    assert "clean run" in result.meta["gradient"]
    default = run(model, spec(tiny_gpt2_dir, exact=False))
    assert "corrupted run" in default.meta["gradient"]
    for key in ("clean_baseline", "corrupted_baseline"):
        assert result.meta[key] == pytest.approx(default.meta[key], abs=1e-6)
    pair = prompt_pair(bridge, spec(tiny_gpt2_dir))
    nodes = result.tables["attributions"]
    with torch.no_grad():
        _, corrupted = bridge.run_with_cache(pair.corrupted)
    for row in nodes[nodes.node == "head"].sample(5, random_state=0).itertuples():
        name = f"blocks.{row.layer}.attn.hook_z"

        def corrupt(z, hook, row=row, name=name):
            z = z.clone()
            z[0, row.position, row.head] = corrupted[name][0, row.position, row.head]
            return z

        with torch.no_grad():
            logits = bridge.run_with_hooks(pair.clean, fwd_hooks=[(name, corrupt)])
        noised = float(logits[0, -1, pair.answer] - logits[0, -1, pair.wrong])
        assert row.exact == pytest.approx(result.meta["clean_baseline"] - noised, abs=1e-5)
