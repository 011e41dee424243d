"""Direct-path patching: each edge equals Wang et al.'s recipe done the slow way (patch the
sender, freeze every other head and MLP at its corrupted value, hand the receiver's input the
result), on GPT-2-, Llama- (grouped-query) and NeoX-shaped models and the embedded model."""
import numpy as np
import pytest
import torch

from analyses import AnalysisSpec, SpecError
from analyses.kinds.activation_patching import EFFECT_COLUMNS, run
from analyses.kinds.patching.engine import prompt_pair
from analyses.kinds.patching.paths import INPUTS, split_qkv_inputs, supported
from analyses.runtime import models
from helpers import save_non_additive_model

PAIR = dict(clean="Mary and John: John gave it to", corrupted="Mary and John: Mary gave it to",
            answer=" Mary", wrong=" John")
IOI = dict(clean="When Mary and John went to the store, John gave a drink to",
           corrupted="When Mary and John went to the store, Mary gave a drink to",
           answer=" Mary", wrong=" John")


def frozen_path_metric(bridge, pair, sender, receiver, name) -> float:
    """The reference, one full forward at a time and no shared code with the engine."""
    (s_layer, s_head), (r_layer, r_head) = sender, receiver
    with torch.no_grad():
        _, clean = bridge.run_with_cache(pair.clean)
        _, corrupted = bridge.run_with_cache(pair.corrupted)

    def freeze_z(z, hook, layer):
        z = corrupted[hook.name].clone()
        if layer == s_layer:
            z[:, :, s_head] = clean[hook.name][:, :, s_head]
        return z

    hooks = [(f"blocks.{layer}.attn.hook_z", lambda z, hook, layer=layer: freeze_z(z, hook, layer))
             for layer in range(r_layer)]
    hooks += [(f"blocks.{layer}.hook_mlp_out", lambda out, hook: corrupted[hook.name])
              for layer in range(r_layer)]
    captured = []
    hooks.append((f"blocks.{r_layer}.hook_resid_pre", lambda x, hook: captured.append(x.clone())))
    with torch.no_grad():  # (run_with_cache would ignore these hooks)
        bridge.run_with_hooks(pair.corrupted, fwd_hooks=hooks)
    receiver_input = captured[0]

    def give(x, hook):
        x = x.clone()
        x[:, :, r_head] = receiver_input
        return x

    with split_qkv_inputs(bridge), torch.no_grad():
        logits = bridge.run_with_hooks(pair.corrupted,
                                       fwd_hooks=[(f"blocks.{r_layer}.hook_{name}_input", give)])
    return float(logits[0, -1, pair.answer] - logits[0, -1, pair.wrong])


def check_edges(model_ref, model, pair_fields, n_edges=12, seed=0):
    spec = AnalysisSpec(kind="activation_patching", model=model_ref, granularity="direct_path",
                        **pair_fields)
    effects = run(model, spec).tables["effects"]
    assert list(effects.columns) == list(EFFECT_COLUMNS)
    assert (effects["granularity"] == "direct_path").all()
    assert (effects["sender_layer"] < effects["layer"]).all()
    pair = prompt_pair(model.bridge, spec)
    assert effects["value"].abs().max() > 1e-3  # some edge moves the metric: not a no-op
    rows = effects.sample(n_edges, random_state=seed)
    for row in rows.itertuples():
        expected = frozen_path_metric(model.bridge, pair, (row.sender_layer, row.sender_head),
                                      (row.layer, row.head), row.receiver_input)
        assert row.raw == pytest.approx(expected, abs=1e-5), row
    return effects


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox"])
def test_every_edge_kind_equals_the_frozen_reference(tiny_model_dir, arch):
    folder = tiny_model_dir(arch)
    model = models.load(str(folder))
    if not supported(model.bridge):
        with pytest.raises(SpecError, match="direct_path"):
            run(model, AnalysisSpec(kind="activation_patching", model=str(folder),
                                    granularity="direct_path", **PAIR))
        pytest.skip(f"TransformerLens has no split q/k/v input hooks for {arch} (checked: a clear error)")
    effects = check_edges(str(folder), model, PAIR)
    n_layers, n_heads = model.bridge.cfg.n_layers, model.bridge.cfg.n_heads
    senders_per_receiver_layer = {layer: layer * n_heads for layer in range(1, n_layers)}
    for name in INPUTS:
        edges = effects[effects["receiver_input"] == name]
        heads = edges["head"].nunique()
        assert len(edges) == sum(senders_per_receiver_layer.values()) * heads


def test_embedded_model_edges_equal_the_reference():
    model = models.load("default")
    effects = check_edges("default", model, IOI, n_edges=8)
    assert np.isfinite(effects["value"]).all()


def test_layer_picks_the_receivers(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    result = run(model, AnalysisSpec(kind="activation_patching", model=str(tiny_gpt2_dir),
                                     granularity="direct_path", layer=1, **PAIR))
    assert set(result.tables["effects"]["layer"]) == {1}
    with pytest.raises(SpecError, match="layer 0 receives no paths"):
        run(model, AnalysisSpec(kind="activation_patching", model=str(tiny_gpt2_dir),
                                granularity="direct_path", layer=0, **PAIR))


def test_other_granularities_fill_the_path_columns_with_blanks(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    effects = run(model, AnalysisSpec(kind="activation_patching", model=str(tiny_gpt2_dir),
                                      granularity="head_out", **PAIR)).tables["effects"]
    assert (effects["sender_layer"] == -1).all() and (effects["receiver_input"] == "").all()
    assert not model.bridge.cfg.use_split_qkv_input  # the flag is put back after a path run


@pytest.mark.parametrize("arch, why", [("gemma2", "after the head sum"), ("granite", "scales its attention output")])
def test_models_whose_heads_do_not_write_additively_are_refused(model_roots, tmp_path, arch, why):
    """A post-attention norm (Gemma-2) or a scaled residual (Granite) sits between a head's
    `z @ W_O` and the residual stream: the direct path this patches does not exist there."""
    folder = save_non_additive_model(arch, tmp_path / arch)
    model = models.load(str(folder))
    with pytest.raises(SpecError, match=why) as err:
        run(model, AnalysisSpec(kind="activation_patching", model=str(folder), granularity="direct_path", **PAIR))
    assert err.value.field == "granularity" and "residual" in str(err.value)
