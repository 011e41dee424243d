"""Attention knockout (kind `knockout`): an empty source set changes nothing, exactly; cutting
every key but BOS in every layer equals the model whose last position attends to BOS alone
(built independently, on the heads' outputs); one layer's knockout equals a plain torch
re-derivation of that layer's attention with the mask; prompt sets give summaries."""
import numpy as np
import pytest
import torch

from analyses import AnalysisSpec, compute
from analyses.core.catalogue import KNOCKOUT_SOURCES
from analyses.core.datasets import PromptSet
from analyses.core.errors import SpecError
from analyses.kinds import knockout as ak
from analyses.kinds import sets
from analyses.kinds.knockout.engine import Knockout, answer_probs
from analyses.kinds.tokens import prompt_tokens, single_token
from analyses.runtime import models

pytestmark = pytest.mark.usefixtures("private_cache")

PROMPT, SUBJECT, ANSWER = "The capital of France is", "France", " Paris"
ARCHS = ("gpt2", "llama", "neox")


def knockout(model_ref, **fields):
    return compute(AnalysisSpec(kind="knockout", model=str(model_ref), **fields))


def answer_prob(bridge, tokens, answer, hooks=()) -> float:
    with torch.no_grad():
        logits = bridge.run_with_hooks(tokens, fwd_hooks=list(hooks))
    return logits[0, -1].float().softmax(-1)[answer].item()


def attending_to_bos_only(bridge, tokens, answer, bos: int = 0) -> float:
    """The answer's probability when every head's last position attends to BOS alone, built
    on the heads' outputs: z at the last position replaced by the value vector at BOS (for
    grouped-query attention, each query head reads its key-value group's value)."""
    n_layers = bridge.cfg.n_layers
    values = {}  # layer -> the value vectors at BOS, read in the same hooked run

    def keep_v(v, hook, layer):
        values[layer] = v[:, bos].clone()  # [batch, n_kv, d_head]

    def bos_z(z, hook, layer):
        v = values[layer]
        group = z.shape[2] // v.shape[1]
        z = z.clone()
        z[:, -1] = v.repeat_interleave(group, dim=1)  # [batch, head, d_head]
        return z

    hooks = []
    for layer in range(n_layers):
        hooks += [(f"blocks.{layer}.attn.hook_v", lambda v, hook, layer=layer: keep_v(v, hook, layer)),
                  (f"blocks.{layer}.attn.hook_z", lambda z, hook, layer=layer: bos_z(z, hook, layer))]
    return answer_prob(bridge, tokens, answer, hooks)


@pytest.mark.parametrize("arch", ARCHS)
def test_an_empty_source_set_changes_nothing_exactly(tiny_model_dir, arch):
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    tokens = prompt_tokens(bridge, PROMPT)
    n_layers, query = bridge.cfg.n_layers, tokens.shape[1] - 1
    found = answer_probs(bridge, tokens, query, [Knockout(tuple(range(n_layers)), ())] * 3)
    assert torch.equal(found.knocked, found.intact)  # bit for bit, not approximately
    plain = answer_prob(bridge, tokens, found.answer)
    assert found.intact[0].item() == pytest.approx(plain, abs=1e-6)
    # through the kind: 'other' is empty when the subject fills the prompt before its last token
    table = knockout(tiny_model_dir(arch), prompt="France is", subject="France").tables["knockout"]
    empty = table[table.n_keys == 0]
    assert len(empty) and (empty.change == 0.0).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_every_key_but_bos_in_every_layer_equals_attention_fixed_on_bos(tiny_model_dir, arch):
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    n_layers = bridge.cfg.n_layers
    result = knockout(tiny_model_dir(arch), prompt=PROMPT, source="all", window=n_layers)
    row = result.tables["knockout"].iloc[0]
    assert (row.window_start, row.window_end, row.source) == (0, n_layers - 1, "all")
    tokens = prompt_tokens(bridge, PROMPT)
    expected = attending_to_bos_only(bridge, tokens, result.meta["answer_id"])
    assert row.answer_prob == pytest.approx(expected, abs=1e-5)
    assert abs(row.change) > 1e-4  # the knockout did something this test can see


def test_the_embedded_model_attending_to_bos_only(embedded):
    bridge = embedded.bridge
    result = compute(AnalysisSpec(kind="knockout", prompt=PROMPT, answer=ANSWER, source="all",
                                  window=bridge.cfg.n_layers))
    tokens = prompt_tokens(bridge, PROMPT)
    expected = attending_to_bos_only(bridge, tokens, single_token(bridge, ANSWER, "answer"))
    assert result.tables["knockout"].answer_prob.item() == pytest.approx(expected, abs=1e-5)


def gpt2_attention_with_cut(bridge, cache, layer: int, keys: list[int]) -> torch.Tensor:
    """[d_model]: GPT-2 layer `layer`'s attention output at the last position with its scores
    to `keys` set to -inf, in plain torch from the layer's normalised input."""
    attn = bridge.blocks[layer].attn
    x = cache[f"blocks.{layer}.ln1.hook_out"][0].float()  # [pos, d_model]
    q = torch.einsum("pm,hmd->hpd", x, attn.W_Q.float()) + attn.b_Q.float()[:, None]
    k = torch.einsum("pm,hmd->hpd", x, attn.W_K.float()) + attn.b_K.float()[:, None]
    v = torch.einsum("pm,hmd->hpd", x, attn.W_V.float()) + attn.b_V.float()[:, None]
    scores = torch.einsum("hd,hkd->hk", q[:, -1], k) / np.sqrt(q.shape[-1])  # [head, pos]
    scores[:, keys] = -torch.inf
    z = torch.einsum("hk,hkd->hd", scores.softmax(-1), v)  # [head, d_head]
    return torch.einsum("hd,hdm->m", z, attn.W_O.float()) + attn.b_O.float()


def test_one_layers_knockout_equals_a_plain_torch_masked_attention(tiny_gpt2_dir):
    bridge = models.load(str(tiny_gpt2_dir)).bridge
    result = knockout(tiny_gpt2_dir, prompt=PROMPT, subject=SUBJECT, window=1)
    tokens = prompt_tokens(bridge, PROMPT)
    answer = result.meta["answer_id"]
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n.endswith("ln1.hook_out"))
    for row in result.tables["knockout"].itertuples():
        keys = result.meta["positions"][row.source]
        layer = row.window_start
        out = gpt2_attention_with_cut(bridge, cache, layer, keys).detach()

        def replace(attn_out, hook, out=out):
            attn_out = attn_out.clone()
            attn_out[:, -1] = out
            return attn_out

        expected = answer_prob(bridge, tokens, answer, [(f"blocks.{layer}.hook_attn_out", replace)])
        assert row.answer_prob == pytest.approx(expected, abs=1e-5), (layer, row.source)
    assert result.tables["knockout"].change.abs().max() > 1e-3  # some cut is visible at this tolerance


def test_source_sets_partition_the_keys_before_the_query(embedded):
    result = compute(AnalysisSpec(kind="knockout", prompt=PROMPT, subject=SUBJECT, answer=ANSWER,
                                  source="subject,other,last,all"))
    positions, tokens = result.meta["positions"], result.meta["tokens"]
    assert tuple(positions) == KNOCKOUT_SOURCES  # every source the catalogue offers, in its order
    assert [tokens[p] for p in positions["subject"]] == [" France"]
    assert sorted(positions["subject"] + positions["other"] + positions["last"]) == positions["all"]
    assert 0 not in positions["all"] and positions["last"] == [len(tokens) - 1]
    table = result.tables["knockout"]
    assert len(table) == 4 * result.meta["n_layers"]  # window 1 on a 3-layer model
    np.testing.assert_allclose(table.change, table.answer_prob - result.meta["intact_prob"], atol=1e-7)


def test_bad_inputs_name_their_field(embedded):
    with pytest.raises(SpecError, match="^subject:"):
        ak.run(embedded, AnalysisSpec(kind="knockout", prompt=PROMPT, source="subject"))
    with pytest.raises(SpecError, match="^subject: 'Germany' is not among"):
        ak.run(embedded, AnalysisSpec(kind="knockout", prompt=PROMPT, subject="Germany"))
    with pytest.raises(SpecError, match="^window: 99 layers"):
        ak.run(embedded, AnalysisSpec(kind="knockout", prompt=PROMPT, window=99))
    with pytest.raises(SpecError, match="^source:"):
        AnalysisSpec(kind="knockout", prompt=PROMPT, source="subject,verb")


def test_default_window_scales_geva_et_als_nine_of_forty_eight():
    assert [ak.default_window(n) for n in (1, 3, 12, 28, 48)] == [1, 1, 2, 5, 9]


def test_a_prompt_set_gives_each_example_and_intervals(embedded):
    rows = tuple({"prompt": f"The capital of {c} is", "answer": a, "subject": c}
                 for c, a in (("France", " Paris"), ("Germany", " Berlin"), ("Italy", " Rome")))
    spec = AnalysisSpec(kind="knockout", dataset="facts")
    result = sets.run(ak.run, embedded, spec, PromptSet(name="three", rows=rows))
    per_example, summary = result.tables["knockout"], result.tables["knockout_summary"]
    single = ak.run(embedded, AnalysisSpec(kind="knockout", **rows[1])).tables["knockout"]
    mine = per_example[per_example.example == 1].drop(columns="example").reset_index(drop=True)
    np.testing.assert_allclose(mine.answer_prob, single.answer_prob, atol=1e-6)
    changes = summary[summary.quantity == "change"]
    cell = changes[(changes.source == "subject") & (changes.window_start == 1)].iloc[0]
    values = per_example[(per_example.source == "subject") & (per_example.window_start == 1)].change
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(values.mean())
    assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"]


def test_stories260k_end_to_end(stories260k_dir):
    model = str(stories260k_dir / "stories260K.bin")
    prompt = "Once upon a time, there was a little girl named Lily. She loved her cat. Lily"
    bridge = models.load(model).bridge
    result = knockout(model, prompt=prompt, subject="cat", source="subject,other,last,all",
                      window=bridge.cfg.n_layers)
    table = result.tables["knockout"].set_index("source")
    tokens = prompt_tokens(bridge, prompt)
    expected = attending_to_bos_only(bridge, tokens, result.meta["answer_id"])
    assert table.loc["all", "answer_prob"] == pytest.approx(expected, abs=1e-5)
    assert result.meta["positions"]["subject"]
