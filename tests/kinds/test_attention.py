"""Attention patterns: the model's own attention probabilities (Hugging Face's eager
attention with output_attentions=True) on GPT-2, Llama (grouped-query) and GPT-NeoX; causal;
each query's weights sum to 1; narrowed by layer/head; bounded."""
import numpy as np
import pytest
import torch

from analyses import AnalysisSpec, SpecError, compute
from analyses.kinds import attention
from analyses.runtime import models

PROMPT = "When Mary and John went to the store, John gave a drink to"


def hf_attentions(model_dir, prompt: str) -> np.ndarray:
    """[layer, head, query, key] from plain transformers, eager attention, BOS first."""
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(model_dir)
    model = tf.AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = [tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False)
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True)
    return torch.stack(out.attentions)[:, 0].numpy()


def as_array(patterns, n_layers: int, n_heads: int, n: int) -> np.ndarray:
    grid = np.zeros((n_layers, n_heads, n, n))
    grid[patterns["layer"], patterns["head"], patterns["query_pos"], patterns["key_pos"]] = patterns["weight"]
    return grid


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox"])
def test_patterns_are_the_models_own_attention_probabilities(tiny_model_dir, arch, tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))
    directory = tiny_model_dir(arch)
    result = compute(AnalysisSpec(kind="attention", model=str(directory), prompt=PROMPT))
    patterns, n = result.tables["patterns"], result.meta["n_tokens"]
    expected = hf_attentions(directory, PROMPT)
    assert expected.shape[-1] == n
    ours = as_array(patterns, *expected.shape[:2], n)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert (patterns.key_pos <= patterns.query_pos).all()  # causal: no key after its query
    assert len(patterns) == expected.shape[0] * expected.shape[1] * n * (n + 1) // 2
    sums = patterns.groupby(["layer", "head", "query_pos"]).weight.sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-5)


def test_layer_and_head_narrow_the_table(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    everything = attention.run(model, AnalysisSpec(kind="attention", model=str(tiny_gpt2_dir), prompt=PROMPT))
    one = attention.run(model, AnalysisSpec(kind="attention", model=str(tiny_gpt2_dir), prompt=PROMPT,
                                            layer=1, head=2)).tables["patterns"]
    assert set(one.layer) == {1} and set(one["head"]) == {2}
    full = everything.tables["patterns"]
    same = full[(full.layer == 1) & (full["head"] == 2)].reset_index(drop=True)
    np.testing.assert_array_equal(one.weight.to_numpy(), same.weight.to_numpy())
    assert everything.meta["tokens"][0] == "<|endoftext|>" and len(everything.meta["tokens"]) == one.query_pos.max() + 1


def test_out_of_range_and_oversized_requests_are_refused_before_running(tiny_gpt2_dir, monkeypatch):
    model = models.load(str(tiny_gpt2_dir))
    with pytest.raises(SpecError, match="layer: 5 is out of range: the model has 2 layers"):
        attention.run(model, AnalysisSpec(kind="attention", prompt=PROMPT, layer=5))
    with pytest.raises(SpecError, match="head: 9 is out of range: the model has 4 heads"):
        attention.run(model, AnalysisSpec(kind="attention", prompt=PROMPT, head=9))
    monkeypatch.setattr(attention, "MAX_ROWS", 100)
    with pytest.raises(SpecError, match=r"prompt: \d+ tokens give [\d,]+ pattern rows .* set layer="):
        attention.run(model, AnalysisSpec(kind="attention", prompt=PROMPT))
    with pytest.raises(SpecError, match="a shorter prompt"):
        attention.run(model, AnalysisSpec(kind="attention", prompt=PROMPT, layer=0))


def test_the_embedded_models_induction_head_attends_to_the_token_after_the_last_copy():
    """On a repeated word sequence the card's top induction head L1H7 puts most of its
    weight on the token after the current one's first occurrence (an induction stripe)."""
    words = " Anna Mia marble saddle Ruth mango lantern cobalt"
    spec = AnalysisSpec(kind="attention", prompt=words + words, layer=1, head=7)
    patterns = compute(spec, cache=False).tables["patterns"]
    n = patterns.query_pos.max() + 1
    length = (n - 1) // 2  # [BOS, r, r]
    second = patterns[patterns.query_pos > length]
    target = second[second.key_pos == second.query_pos - length + 1]
    assert target.weight.mean() > 0.5
