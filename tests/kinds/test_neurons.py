"""Neuron atlas: the chunked read-out equals a dense W_out @ W_U top-k on plain and gated
MLPs; the reverse search finds the argmax neuron; activations are the prompt's hook_post."""
import numpy as np
import pandas as pd
import pytest
import torch

from analyses import AnalysisSpec, SpecError, compute
from analyses.kinds import neurons
from analyses.kinds.tokens import single_token
from analyses.runtime import models
from analyses.runtime.models import EMBEDDED_ROOT

pytestmark = pytest.mark.usefixtures("private_cache")

PROMPT = "When Mary and John went to the store, John gave a drink to"



def dense_readout(bridge, final_norm: bool) -> torch.Tensor:
    """[layer, d_mlp, d_vocab] every neuron's row through the unembedding, all at once."""
    w_out = bridge.W_out.detach()  # [layer, d_mlp, d_model]
    if final_norm:
        if bridge.cfg.normalization_type == "LN":  # LayerNorm removes the mean first
            w_out = w_out - w_out.mean(-1, keepdim=True)
        w_out = w_out * bridge.ln_final.weight.detach()
    return w_out @ bridge.W_U.detach()


def atlas_of(bridge, **fields):
    spec = AnalysisSpec(kind="neurons", **fields)
    return neurons.run(models.LoadedModel(bridge, "", "", "", "cpu", "float32"), spec).tables


@pytest.mark.parametrize("final_norm", [False, True])
@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox"])
def test_atlas_equals_a_dense_topk(tiny_model_dir, arch, final_norm):
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    k = 4
    table = atlas_of(bridge, top_k=k, final_norm=final_norm)["atlas"]
    dense = dense_readout(bridge, final_norm)  # [layer, d_mlp, d_vocab]
    n_layers, d_mlp, _ = dense.shape
    assert len(table) == n_layers * d_mlp * 2 * k
    for direction, sign in (("promote", 1), ("suppress", -1)):
        rows = table[table.direction == direction].sort_values(["layer", "neuron", "rank"])
        values, ids = (sign * dense).topk(k, dim=-1)
        np.testing.assert_array_equal(rows.token_id.to_numpy(), ids.flatten().numpy())
        np.testing.assert_allclose(rows.score.to_numpy(), sign * values.flatten().numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_chunks_do_not_change_the_atlas(tiny_llama_dir, monkeypatch):
    bridge = models.load(str(tiny_llama_dir)).bridge
    whole = atlas_of(bridge, top_k=3)["atlas"]
    monkeypatch.setattr(neurons, "MAX_CHUNK", 7)  # 64 neurons a layer: ten chunks, the last short
    assert neurons.chunk_size(bridge.W_U.shape[1]) == 7
    chunked = atlas_of(bridge, top_k=3)["atlas"]
    pd.testing.assert_frame_equal(chunked, whole, rtol=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_reverse_search_finds_the_argmax_neuron(tiny_model_dir, arch):
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    words = [" the", " Mary"]
    tables = atlas_of(bridge, token=",".join(words), top_k=5)
    promoters = tables["promoters"]
    dense = dense_readout(bridge, final_norm=True)
    d_mlp = dense.shape[1]
    for word in words:
        token = single_token(bridge, word, "token")
        column = dense[..., token].flatten()  # [layer * d_mlp]
        mine = promoters[promoters.token_id == token].sort_values("rank")
        assert mine.token_str.iloc[0] == word
        expected = column.topk(5).indices.numpy()
        np.testing.assert_array_equal(mine.layer * d_mlp + mine.neuron, expected)
        np.testing.assert_allclose(mine.score, column[expected].numpy(), rtol=1e-5, atol=1e-6)


def test_layer_and_neuron_restrict_the_scope(tiny_gpt2_dir):
    bridge = models.load(str(tiny_gpt2_dir)).bridge
    everything = atlas_of(bridge, top_k=2)["atlas"]
    one_layer = atlas_of(bridge, top_k=2, layer=1)["atlas"]
    assert set(one_layer.layer) == {1}
    assert one_layer.reset_index(drop=True).equals(everything[everything.layer == 1].reset_index(drop=True))
    one = atlas_of(bridge, top_k=2, layer=1, neuron=17, token=" the")
    assert set(zip(one["atlas"].layer, one["atlas"].neuron)) == {(1, 17)}
    assert list(one["promoters"][["layer", "neuron"]].itertuples(index=False, name=None)) == [(1, 17)]
    with pytest.raises(SpecError, match="neuron: needs `layer`"):
        atlas_of(bridge, neuron=3)
    with pytest.raises(SpecError, match="layer: 2 is out of range"):
        atlas_of(bridge, layer=2)
    with pytest.raises(SpecError, match="neuron: 128 is out of range"):
        atlas_of(bridge, layer=0, neuron=128)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_activations_are_the_strongest_neurons_on_the_prompt(tiny_model_dir, arch):
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    acts = atlas_of(bridge, prompt=PROMPT, top_k=3)["activations"]
    tokens = bridge.to_tokens(PROMPT, prepend_bos=True)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens)
    n_pos = tokens.shape[1]
    for layer in range(bridge.cfg.n_layers):
        post = cache[f"blocks.{layer}.mlp.hook_post"][0]  # [pos, d_mlp]
        strongest = post[1:].abs().max(0).values.topk(3).indices  # ranked after BOS
        mine = acts[acts.layer == layer]
        assert len(mine) == 3 * n_pos
        assert set(mine.neuron) == set(strongest.tolist())
        for row in mine.itertuples():
            assert row.activation == pytest.approx(post[row.position, row.neuron].item(), abs=1e-6)


def test_stories260k_atlas_end_to_end(stories260k_dir):
    spec = AnalysisSpec(kind="neurons", model=str(stories260k_dir / "stories260K.bin"), top_k=5,
                        token=" Lily", prompt="Once upon a time")
    result = compute(spec)
    bridge = models.load(spec.model).bridge
    atlas = result.tables["atlas"]
    assert len(atlas) == bridge.cfg.n_layers * bridge.cfg.d_mlp * 2 * 5
    promoters = result.tables["promoters"]
    lily = single_token(bridge, " Lily", "token")
    assert list(promoters["rank"]) == [1, 2, 3, 4, 5] and (promoters.token_id == lily).all()
    assert promoters.score.is_monotonic_decreasing
    assert set(result.tables["activations"].layer) == set(range(bridge.cfg.n_layers))


def test_embedded_model_paris_neurons_raise_the_paris_logit():
    if not (EMBEDDED_ROOT / "tiny-circuits" / "config.json").is_file():
        pytest.skip("the embedded model data/models/tiny-circuits is not trained yet")
    prompt = "The capital of France is"
    result = compute(AnalysisSpec(kind="neurons", token=" Paris", top_k=5))
    promoters = result.tables["promoters"]
    bridge = models.load("default").bridge
    paris = single_token(bridge, " Paris", "token")
    tokens = bridge.to_tokens(prompt, prepend_bos=True)
    by_layer: dict[int, list[int]] = {}
    for row in promoters.itertuples():
        by_layer.setdefault(row.layer, []).append(row.neuron)

    def zero(chosen):
        def hook(post, hook):
            post = post.clone()
            post[..., chosen] = 0.0
            return post
        return hook

    hooks = [(f"blocks.{layer}.mlp.hook_post", zero(chosen)) for layer, chosen in by_layer.items()]
    with torch.no_grad():
        clean = bridge(tokens)[0, -1, paris].item()
        ablated = bridge.run_with_hooks(tokens, fwd_hooks=hooks)[0, -1, paris].item()
    assert ablated < clean


def test_activations_never_rank_the_bos_position(embedded):
    """BOS is never ranked: each layer's neurons are the strongest after BOS, though on the
    embedded model BOS's activations (the attention sink's outliers) would pick others."""
    bridge = embedded.bridge
    acts = atlas_of(bridge, prompt=PROMPT, top_k=3)["activations"]
    tokens = bridge.to_tokens(PROMPT, prepend_bos=True)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens)
    for layer in range(bridge.cfg.n_layers):
        post = cache[f"blocks.{layer}.mlp.hook_post"][0]  # [pos, d_mlp]
        strongest = post[1:].abs().max(0).values.topk(3).indices
        assert set(acts[acts.layer == layer].neuron) == set(strongest.tolist()), layer
        assert len(acts[acts.layer == layer]) == 3 * tokens.shape[1]  # BOS's activation still shown
