"""Direct logit attribution: the components sum to the model's own logit difference, and
they equal TransformerLens's `direct_logit_attribution` on a compatibility-mode bridge."""
import numpy as np
import pytest
import torch
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.tools.analysis import direct_logit_attribution

from analyses import AnalysisSpec, compute
from analyses.kinds import dla
from analyses.kinds.tokens import single_token
from analyses.runtime import models
from conftest import TINY_ARCHS

pytestmark = pytest.mark.usefixtures("private_cache")

PROMPT = "When Mary and John went to the store, John gave a drink to"
ANSWER, WRONG = " Mary", " John"



def contributions(model_dir, **fields):
    spec = AnalysisSpec(kind="dla", model=str(model_dir), prompt=PROMPT, answer=ANSWER, **fields)
    return compute(spec)


def model_logit_diff(bridge, wrong: bool = True) -> float:
    tokens = bridge.to_tokens(PROMPT, prepend_bos=True)
    with torch.no_grad():
        logits = bridge(tokens)[0, -1]
    answer = logits[single_token(bridge, ANSWER, "answer")]
    return (answer - logits[single_token(bridge, WRONG, "wrong")] if wrong else answer).item()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_components_sum_to_the_logit_difference(tiny_model_dir, arch):
    result = contributions(tiny_model_dir(arch), wrong=WRONG)
    table = result.tables["contributions"]
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    total = table[table.component.isin(dla.TOTAL_COMPONENTS)].value.sum()
    assert total == pytest.approx(model_logit_diff(bridge), abs=1e-4)
    assert result.meta["logit_diff"] == pytest.approx(model_logit_diff(bridge), abs=1e-6)
    for layer in range(bridge.cfg.n_layers):  # a layer's heads and output bias make up its attn row
        rows = table[table.layer == layer]
        parts = rows[rows.component.isin(["head", "attn_bias"])].value.sum()
        assert parts == pytest.approx(rows[rows.component == "attn"].value.item(), abs=1e-5)
    assert (table.component == "head").sum() == bridge.cfg.n_layers * bridge.cfg.n_heads
    assert ("pos_embed" in set(table.component)) == (arch == "gpt2")  # learned positions only


def test_without_wrong_the_answer_logit_itself_is_split(tiny_gpt2_dir):
    table = contributions(tiny_gpt2_dir).tables["contributions"]
    bridge = models.load(str(tiny_gpt2_dir)).bridge
    total = table[table.component.isin(dla.TOTAL_COMPONENTS)].value.sum()
    assert total == pytest.approx(model_logit_diff(bridge, wrong=False), abs=1e-4)


def compatibility_bridge(model_dir) -> TransformerBridge:
    """A bridge of its own in TransformerLens's compatibility mode (LayerNorm folded):
    never the shared, cached one."""
    bridge = TransformerBridge.boot_transformers(str(model_dir), device="cpu").eval()
    bridge.enable_compatibility_mode()
    return bridge


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_equals_transformer_lens_direct_logit_attribution(tiny_model_dir, arch):
    table = contributions(tiny_model_dir(arch), wrong=WRONG).tables["contributions"]
    shared = models.load(str(tiny_model_dir(arch))).bridge
    assert not getattr(shared, "compatibility_mode", False)  # the cached model is left as it was
    reference = compatibility_bridge(tiny_model_dir(arch))
    tokens = reference.to_tokens(PROMPT, prepend_bos=True)
    answer, wrong = (single_token(reference, t, "answer") for t in (ANSWER, WRONG))
    found = direct_logit_attribution(reference, tokens, answer, wrong, unit="component")
    theirs = dict(zip(found.labels, found.attribution[:, 0].tolist()))
    ours = {}
    for row in table.itertuples():
        if row.component in ("embed", "pos_embed"):
            ours[row.component] = row.value
        elif row.component in ("attn", "mlp"):
            ours[f"{row.layer}_{row.component}_out"] = row.value
    assert ours.keys() == theirs.keys()
    for label, value in theirs.items():
        assert ours[label] == pytest.approx(value, abs=1e-4), label
    # TransformerLens leaves out b_U (the final norm's bias is folded into it): our `bias` row
    assert sum(theirs.values()) + table[table.component == "bias"].value.item() == pytest.approx(
        model_logit_diff(shared), abs=1e-4)

    heads = direct_logit_attribution(reference, tokens, answer, wrong, unit="head")
    theirs_heads = np.array(heads.attribution[:-1, 0].tolist())  # the last label is "remainder"
    ours_heads = table[table.component == "head"].sort_values(["layer", "head"]).value.to_numpy()
    # Compatibility mode folds each head's constant value (b_V and ln1's bias read through
    # W_V) into b_O, since attention rows sum to 1 and a head writes it whatever it attends
    # to; ours keep it in the head.
    value_bias = np.zeros_like(ours_heads).reshape(shared.cfg.n_layers, -1)
    if arch == "gpt2":
        with torch.no_grad():
            _, cache = shared.run_with_cache(tokens, names_filter=["ln_final.hook_scale"])
        norm, scale = dla.FinalNorm(shared), cache["ln_final.hook_scale"][0, -1]
        direction = dla.logit_direction(shared, answer, wrong)
        for layer in range(shared.cfg.n_layers):
            attn = shared.blocks[layer].attn
            constant = shared.blocks[layer].ln1.bias @ attn.W_V + attn.b_V  # [head, d_head]
            writes = torch.einsum("hd,hdm->hm", constant.detach(), attn.W_O.detach())
            value_bias[layer] = (norm.linear(writes, scale) @ direction).detach().numpy()
        assert np.abs(value_bias).max() > 1e-3  # the folding is visible at this tolerance
    np.testing.assert_allclose(ours_heads - value_bias.ravel(), theirs_heads, atol=1e-4)

def test_stories260k_end_to_end(stories260k_dir):
    spec = AnalysisSpec(kind="dla", model=str(stories260k_dir / "stories260K.bin"),
                        prompt="Once upon a time, there was a little girl named", answer=" Lily",
                        wrong=" Tim")
    result = compute(spec)
    table = result.tables["contributions"]
    bridge = models.load(spec.model).bridge
    tokens = bridge.to_tokens(spec.prompt, prepend_bos=True)
    with torch.no_grad():
        logits = bridge(tokens)[0, -1]
    lily, tim = (single_token(bridge, t, "answer") for t in (" Lily", " Tim"))
    total = table[table.component.isin(dla.TOTAL_COMPONENTS)].value.sum()
    assert total == pytest.approx((logits[lily] - logits[tim]).item(), abs=1e-4)
    assert result.meta["residual_error"] < 1e-4
    # its gated MLPs split by neuron add up to each layer's row too
    parts = result.tables["neurons"].groupby("layer").value.sum()
    mlp = table[table.component == "mlp"].set_index("layer").value
    np.testing.assert_allclose(parts.to_numpy(), mlp.loc[parts.index].to_numpy(), atol=1e-4)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_each_mlps_neurons_rest_and_bias_add_up_to_its_row(tiny_model_dir, arch):
    result = contributions(tiny_model_dir(arch), wrong=WRONG, top_k=3)
    table, neurons = result.tables["contributions"], result.tables["neurons"]
    mlp = table[table.component == "mlp"].set_index("layer").value
    parts = neurons.groupby("layer").value.sum()
    np.testing.assert_allclose(parts.to_numpy(), mlp.loc[parts.index].to_numpy(), atol=1e-5)
    for _, rows in neurons.groupby("layer"):
        listed = rows[rows.part == "neuron"]
        assert (listed.value > 0).sum() <= 3 and (listed.value < 0).sum() <= 3
        assert list(listed["rank"]) == list(range(1, len(listed) + 1))
        assert (listed.value.abs().diff().dropna() <= 1e-12).all()  # by |value|, largest first
        assert set(rows.part) >= {"rest", "bias"}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_neurons_value_is_what_its_mlp_loses_without_it(tiny_model_dir, arch):
    """Each listed neuron's value, re-derived through the model's own MLP: zero the neuron's
    activation (hook_post) and read the change in the MLP's output at the last position
    through the final norm with the run's scale frozen, along answer − wrong."""
    result = contributions(tiny_model_dir(arch), wrong=WRONG, top_k=2)
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    tokens = bridge.to_tokens(PROMPT, prepend_bos=True)
    answer, wrong = (single_token(bridge, t, "answer") for t in (ANSWER, WRONG))
    direction = dla.logit_direction(bridge, answer, wrong).float()
    norm = dla.FinalNorm(bridge)
    with torch.no_grad():
        _, clean = bridge.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_mlp_out")
                                         or n == "ln_final.hook_scale")
    scale = clean["ln_final.hook_scale"][0, -1].float()
    listed = result.tables["neurons"].query("part == 'neuron'")
    for row in listed.itertuples():
        site = f"blocks.{row.layer}.hook_mlp_out"
        seen = {}

        def zero(post, hook, neuron=row.neuron):
            post = post.clone()
            post[:, -1, neuron] = 0
            return post

        def keep(out, hook, seen=seen):
            seen["out"] = out[0, -1].float()

        with torch.no_grad():
            bridge.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{row.layer}.mlp.hook_post", zero), (site, keep)])
        lost = clean[site][0, -1].float() - seen["out"]
        assert (norm.linear(lost, scale) @ direction).item() == pytest.approx(row.value, abs=1e-5)
