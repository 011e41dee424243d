"""Steering and ablation: coefficient 0 is the model's own greedy continuation (held against
Hugging Face's `generate`, with the KV cache and without), the embedded model's
France → Germany preset flips the answer with a rising metric, hooks never outlive a run,
and each intervention is held against an independent re-derivation (plain PyTorch hooks on
the Hugging Face modules, means taken by hand)."""
import json
import re

import numpy as np
import pytest
import torch

from analyses import AnalysisSpec, compute
from analyses.core.errors import SpecError
from analyses.core.listtext import components
from analyses.kinds import logit_lens, steering
from analyses.kinds.interventions import ablation as ablating
from analyses.kinds.interventions import generation, vectors
from analyses.kinds.interventions.neutral import neutral_tokens
from analyses.kinds.tokens import prompt_tokens, single_token
from analyses.runtime import models
from conftest import REPO_ROOT, TINY_ARCHS

pytestmark = pytest.mark.usefixtures("private_cache")

FRANCE = "The capital of France is"
GERMANY = "The capital of Germany is"
PRESET = dict(prompt=FRANCE, positive=GERMANY, negative=FRANCE, layer="2", answer=" Berlin", wrong=" Paris")




def steer(model, **fields):
    return steering.run(model, AnalysisSpec(kind="steering", **fields))


def hf_greedy(bridge, prompt, n: int) -> list[int]:
    """Hugging Face's own greedy generation, no TransformerLens involved."""
    hf = bridge.original_model
    eos = bridge.tokenizer.eos_token_id
    out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False,
                      pad_token_id=eos, eos_token_id=eos)
    return out[0, prompt.shape[1]:].tolist()


# --------------------------------------------------------------------------- the baseline

@pytest.mark.parametrize("use_cache", [True, False])
def test_coefficient_zero_is_the_models_own_greedy_continuation(embedded, use_cache):
    bridge = embedded.bridge
    for text in (FRANCE, "Once upon a time, there was a little girl named"):
        prompt = prompt_tokens(bridge, text)
        ours = generation.generate(bridge, prompt, lambda counter: [], 16, use_cache=use_cache)
        assert ours.tokens == hf_greedy(bridge, prompt, 16)
    result = steer(embedded, **PRESET, coeff="0,1", max_new_tokens=12)
    baseline = result.tables["generations"].query("coeff == 0")
    assert len(baseline) == 1  # one layer: the baseline row
    expected = hf_greedy(bridge, prompt_tokens(bridge, FRANCE), 12)
    assert baseline["text"].iloc[0] == bridge.tokenizer.decode(expected)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_greedy_generation_equals_hugging_face_on_every_architecture(tiny_model_dir, arch):
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    prompt = prompt_tokens(bridge, "When Mary and John went to the store, John gave a drink to")
    expected = hf_greedy(bridge, prompt, 10)
    for use_cache in (True, False):
        assert generation.generate(bridge, prompt, lambda c: [], 10, use_cache=use_cache).tokens == expected


def test_an_empty_ablation_and_no_vector_is_the_plain_model(embedded):
    result = steer(embedded, prompt=FRANCE, max_new_tokens=8)
    effects = result.tables["effects"]
    assert len(effects) == 1 and effects["layer"].isna().all() and effects["kl"].iloc[0] == 0
    assert result.tables["generations"]["text"].iloc[0] == embedded.bridge.tokenizer.decode(
        hf_greedy(embedded.bridge, prompt_tokens(embedded.bridge, FRANCE), 8))


# --------------------------------------------------------------------------- the preset

def test_the_france_to_germany_preset_flips_the_answer_and_the_metric_rises(embedded):
    result = steer(embedded, **PRESET, coeff="0,0.25,0.5,0.75,1,2", max_new_tokens=6)
    effects = result.tables["effects"].set_index("coeff")
    sweep = effects.loc[[0, 0.25, 0.5, 0.75, 1], "metric"].to_numpy()
    assert np.all(np.diff(sweep) > 0), sweep
    assert effects.loc[0, "top_token"] == " Paris" and effects.loc[1, "top_token"] == " Berlin"
    texts = result.tables["generations"].set_index("coeff")["text"]
    assert texts[0].startswith(" Paris") and texts[1].startswith(" Berlin")
    kl = effects["kl"].to_numpy()
    assert np.all(np.isfinite(kl)) and kl[0] == 0 and np.all(np.diff(kl) > 0)  # more steering, more damage
    assert effects.loc[2, "kl"] > 2 * effects.loc[1, "kl"]  # coefficient 2 degrades the text
    assert set(result.tables["vector"]["layer"]) == {2}


def test_the_metric_is_the_logit_difference_of_the_steered_forward_pass(embedded):
    """Re-derived by hand: the vector from two run_with_cache calls, added by a plain hook at
    every position after BOS."""
    bridge = embedded.bridge
    name = "blocks.2.hook_resid_pre"

    def last(text):
        return bridge.run_with_cache(prompt_tokens(bridge, text), names_filter=[name])[1][name][0, -1]

    vector = last(GERMANY) - last(FRANCE)
    logits = bridge.run_with_hooks(prompt_tokens(bridge, FRANCE),
                                   fwd_hooks=[(name, lambda x, hook: torch.cat([x[:, :1], x[:, 1:] + 0.5 * vector], 1))]
                                   )[0, -1].detach()
    berlin, paris = (single_token(bridge, t, "answer") for t in (" Berlin", " Paris"))
    effects = steer(embedded, **PRESET, coeff="0.5", max_new_tokens=1).tables["effects"]
    assert effects.query("coeff == 0.5")["metric"].iloc[0] == pytest.approx(
        float(logits[berlin] - logits[paris]), abs=1e-4)


@pytest.mark.parametrize("positions", ["all", "last", "generated"])
def test_steered_generation_is_the_same_with_and_without_the_kv_cache(embedded, positions):
    bridge = embedded.bridge
    plan = steering.prepare(bridge, AnalysisSpec(kind="steering", **PRESET, coeff="1", positions=positions))
    prompt = prompt_tokens(bridge, FRANCE)
    cell = steering.Cell(2, 1.0, False)
    where = vectors.where_added(positions, int(prompt.shape[1]))
    cached, plain = (generation.generate(bridge, prompt, steering.hooks_for(plan, cell, where), 12,
                                         use_cache=c) for c in (True, False))
    assert cached.tokens == plain.tokens
    assert np.allclose(cached.logprobs, plain.logprobs, atol=1e-4)



@pytest.mark.parametrize("positions", ["all", "generated"])
def test_generated_log_probabilities_equal_a_teacher_forced_pass(embedded, positions):
    """They come from the generation's own step logits; one pass over prompt + continuation
    under the same hooks must give the same numbers (and the prompt's last logits)."""
    bridge = embedded.bridge
    plan = steering.prepare(bridge, AnalysisSpec(kind="steering", **PRESET, coeff="1", positions=positions))
    prompt = prompt_tokens(bridge, FRANCE)
    hooks = steering.hooks_for(plan, steering.Cell(2, 1.0, False),
                               vectors.where_added(positions, int(prompt.shape[1])))
    out = generation.generate(bridge, prompt, hooks, 10)
    sequence = torch.cat([prompt, torch.tensor([out.tokens])], dim=1)  # [1, prompt + generated]
    logits = generation.forward(bridge, sequence, hooks)[0].float()  # [pos, d_vocab]
    n = int(prompt.shape[1])
    forced = logits[n - 1: -1].log_softmax(-1).gather(-1, torch.tensor(out.tokens)[:, None])[:, 0]
    assert np.allclose(out.logprobs, forced.numpy(), atol=1e-4)
    assert torch.allclose(out.last_logits, logits[n - 1], atol=1e-4)

def test_positions_say_where_the_vector_is_added(embedded):
    runs = {p: steer(embedded, **PRESET, coeff="1", positions=p, max_new_tokens=6)
            for p in ("all", "last", "generated")}
    metric = {p: r.tables["effects"].set_index("coeff")["metric"] for p, r in runs.items()}
    # the prompt's last position is steered by `all` and `last`, never by `generated`
    assert metric["generated"][1] == pytest.approx(metric["generated"][0], abs=1e-5)
    assert metric["last"][1] > metric["last"][0] + 5
    generated = runs["generated"].tables["generations"].set_index("coeff")["text"]
    assert generated[1] != generated[0]  # later tokens are steered


def test_positions_all_leaves_the_bos_residual_untouched(embedded):
    """BOS is never intervened on: the steered residual entering the layer equals the
    intact one at position 0 and differs everywhere after it (the KL's hooks too)."""
    bridge = embedded.bridge
    plan = steering.prepare(bridge, AnalysisSpec(kind="steering", **PRESET, coeff="1", positions="all"))
    prompt = prompt_tokens(bridge, FRANCE)
    name = vectors.resid_hook(2)
    seen = {}

    def capture(resid, hook):  # runs after the steering hook on the same hook point
        seen["resid"] = resid[0].detach().clone()

    def read(where) -> torch.Tensor:
        hooks = steering.hooks_for(plan, steering.Cell(2, 1.0, False), where)
        generation.forward(bridge, prompt, lambda counter: [*hooks(counter), (name, capture)])
        return seen["resid"]  # [pos, d_model]

    with torch.no_grad():
        _, cache = bridge.run_with_cache(prompt, names_filter=[name])
    intact = cache[name][0]
    for where in (vectors.where_added("all", int(prompt.shape[1])),
                  lambda pos: torch.ones_like(pos, dtype=torch.bool)):  # what the KL cells use
        steered = read(where)
        assert torch.equal(steered[0], intact[0])
        assert not torch.isclose(steered[1:], intact[1:]).all(-1).any()


def test_mean_diff_of_one_pair_is_actadd_and_mean_centred_is_the_means_difference(embedded):
    bridge = embedded.bridge
    actadd = vectors.steering_vectors(bridge, "actadd", [GERMANY], [FRANCE], [1, 2])
    mean_diff = vectors.steering_vectors(bridge, "mean_diff", [GERMANY], [FRANCE], [1, 2])
    assert all(torch.equal(actadd[layer], mean_diff[layer]) for layer in (1, 2))
    texts = [GERMANY, "The capital of Spain is"]
    centred = vectors.steering_vectors(bridge, "mean_centred", texts, [], [2])[2]
    name = "blocks.2.hook_resid_pre"

    def mean_after_bos(tokens):
        return bridge.run_with_cache(tokens, names_filter=[name])[1][name][0, 1:].mean(0)

    expected = (torch.stack([mean_after_bos(prompt_tokens(bridge, t)) for t in texts]).mean(0)
                - mean_after_bos(neutral_tokens(bridge)))
    assert torch.allclose(centred, expected, atol=1e-5)


def test_the_vector_table_reads_the_vector_through_the_unembedding(embedded):
    bridge = embedded.bridge
    table = steer(embedded, **PRESET, coeff="1", top_k=5, max_new_tokens=1).tables["vector"]
    vector = vectors.steering_vectors(bridge, "mean_diff", [GERMANY], [FRANCE], [2])[2]
    scores = vector @ bridge.W_U
    promotes = table.query("direction == 'promotes'").sort_values("rank")
    assert promotes["token_id"].tolist() == scores.topk(5).indices.tolist()
    assert promotes["norm"].iloc[0] == pytest.approx(float(vector.norm()), rel=1e-6)
    assert table.query("direction == 'suppresses'")["token_id"].tolist() == (-scores).topk(5).indices.tolist()


def test_sampling_is_seeded_and_leaves_the_global_generator_alone(embedded):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    one = steer(embedded, prompt=FRANCE, temperature="1.0", seed=7, max_new_tokens=10)
    after = torch.rand(1)
    assert torch.equal(before, after)
    two = steer(embedded, prompt=FRANCE, temperature="1.0", seed=7, max_new_tokens=10)
    texts = one.tables["generations"]["text"].tolist()
    assert texts == two.tables["generations"]["text"].tolist()
    assert len(texts) == steering.SAMPLES and len(set(texts)) > 1


# --------------------------------------------------------------------------- ablation

def hf_ablated_logits(bridge, tokens, layer: int, head: int | None, site: str):
    """Zero ablation after BOS done on the Hugging Face GPT-2 modules themselves."""
    block = bridge.original_model.transformer.h[layer]
    d_head = int(bridge.cfg.d_head)

    def zero_after_bos(x):
        x = x.clone()
        if head is None:
            x[:, 1:] = 0
        else:
            x[:, 1:, head * d_head:(head + 1) * d_head] = 0
        return x

    if site == "head":  # the heads' outputs, concatenated, enter c_proj
        handle = block.attn.c_proj.register_forward_pre_hook(lambda m, args: (zero_after_bos(args[0]),))
    else:
        module = block.mlp if site == "mlp" else block.attn
        handle = module.register_forward_hook(
            lambda m, args, out: zero_after_bos(out) if site == "mlp" else (zero_after_bos(out[0]), *out[1:]))
    try:
        with torch.no_grad():
            return bridge.original_model(tokens).logits
    finally:
        handle.remove()


@pytest.mark.parametrize("label, layer, head, site", [("L1H7", 1, 7, "head"), ("L0.mlp", 0, None, "mlp"),
                                                      ("L2.attn", 2, None, "attn")])
def test_zero_ablation_equals_hooks_on_the_hugging_face_modules(embedded, label, layer, head, site):
    bridge = embedded.bridge
    tokens = prompt_tokens(bridge, "When Mary and John went to the store, John gave a drink to")
    plan = steering.prepare(bridge, AnalysisSpec(kind="steering", prompt="x", ablate=label, ablation="zero"))
    ours = generation.forward(bridge, tokens, steering.hooks_for(plan, steering.Cell(None, 0.0, True), None))
    assert torch.allclose(ours, hf_ablated_logits(bridge, tokens, layer, head, site), atol=1e-4)


def test_mean_ablation_uses_the_neutral_texts_mean_after_bos(embedded):
    bridge = embedded.bridge
    ablation = ablating.prepare(bridge, components("L1H7,L0.mlp"), "mean")
    names = ["blocks.1.attn.hook_z", "blocks.0.hook_mlp_out"]
    _, cache = bridge.run_with_cache(neutral_tokens(bridge), names_filter=names)
    for name in names:
        assert torch.allclose(ablation.values[name], cache[name][0, 1:].mean(0), atol=1e-6)


def top_retrieval_heads() -> list[str]:
    """The model card's top heads by retrieval score (its table row, as the card states it)."""
    card = (REPO_ROOT / "data" / "models" / "tiny-circuits" / "MODEL_CARD.md").read_text()
    row = next(line for line in card.splitlines() if "retrieval score (Wu et al. 2024)" in line)
    return re.findall(r"L\d+H\d+", row)


def code_recall(model, ablate: str, rows) -> tuple[float, float]:
    """The share of needle prompts whose greedy continuation starts with the whole code:
    intact, and with `ablate` mean-ablated."""
    outcomes = steering.run_examples(model, [AnalysisSpec(kind="steering", prompt=r["prompt"], ablate=ablate,
                                                          max_new_tokens=4) for r in rows])
    hits = []
    for row, result in zip(rows, outcomes):
        code = re.search(r"code: (\w+ \w+ \w+)\.", row["prompt"]).group(1)
        texts = result.tables["generations"].set_index("ablated")["text"]
        hits.append([texts[False].strip().startswith(code), texts[True].strip().startswith(code)])
    intact, ablated = np.mean(hits, axis=0)
    return float(intact), float(ablated)


def test_ablating_the_top_retrieval_heads_loses_the_code_and_random_heads_do_not(embedded):
    from analyses.core.datasets import shipped

    rows = shipped("needle").rows[:24]
    top = top_retrieval_heads()
    assert len(top) == 4
    intact, ablated = code_recall(embedded, ",".join(top), rows)
    assert intact == 1.0 and ablated <= 0.3
    others = [f"L{layer}H{head}" for layer in range(3) for head in range(8) if f"L{layer}H{head}" not in top]
    rng = np.random.default_rng(0)
    random_recall = [code_recall(embedded, ",".join(rng.choice(others, len(top), replace=False)), rows)[1]
                     for _ in range(3)]
    assert min(random_recall) >= 0.6, random_recall


# --------------------------------------------------------------------------- scope and errors

def test_no_hook_outlives_a_run_and_a_later_run_equals_a_fresh_models(embedded, tiny_gpt2_dir):
    ablated = steer(embedded, prompt=FRANCE, ablate="L0H0,L1.mlp", max_new_tokens=4)
    assert ablated.tables["effects"]["kl"].iloc[1] > 0
    bridge = embedded.bridge
    assert not any(hook_point.has_hooks() for hook_point in bridge.hook_dict.values())
    after = steer(embedded, **PRESET, coeff="1", max_new_tokens=6)
    lens_after = logit_lens.run(embedded, AnalysisSpec(kind="logit_lens", prompt=FRANCE))
    models.clear_cache()
    fresh = models.load("default")
    assert fresh.bridge is not bridge
    again = steer(fresh, **PRESET, coeff="1", max_new_tokens=6)
    for name in ("effects", "generations", "vector"):
        assert after.tables[name].equals(again.tables[name]), name
    lens_fresh = logit_lens.run(fresh, AnalysisSpec(kind="logit_lens", prompt=FRANCE))
    assert lens_after.tables["top"].equals(lens_fresh.tables["top"])


@pytest.mark.parametrize("fields, field, words", [
    (dict(coeff="1"), "coeff", "steering vector"),
    (dict(negative=FRANCE), "positive", "missing"),
    (dict(positive=GERMANY), "negative", "contrasting"),
    (dict(positive=f"{GERMANY}\n{GERMANY}", negative=FRANCE), "negative", "1 lines for 2"),
    (dict(positive=f"{GERMANY}\n{GERMANY}", negative=f"{FRANCE}\n{FRANCE}", method="actadd"), "positive", "one pair"),
    (dict(positive=GERMANY, negative=FRANCE, method="mean_centred"), "negative", "no negative"),
    (dict(positive=GERMANY, negative=FRANCE, layer="3"), "layer", "3 layers"),
    (dict(ablate="L5H0"), "ablate", "3 layers"),
    (dict(ablate="L1H8"), "ablate", "8 heads"),
    (dict(ablation="zero"), "ablation", "ablate="),
    (dict(wrong=" Paris"), "answer", "missing"),
    (dict(answer="Berlin Paris"), "answer", "exactly one"),
])
def test_bad_fields_are_refused_naming_the_field(embedded, fields, field, words):
    with pytest.raises(SpecError) as err:
        steer(embedded, **{"prompt": FRANCE, **fields})
    assert err.value.field == field and words in str(err.value)


@pytest.mark.parametrize("query, field", [("coeff=0,,1", "coeff"), ("coeff=1e9", "coeff"), ("layer=a", "layer"),
                                          ("ablate=L1X", "ablate"), ("temperature=-1", "temperature"),
                                          ("positions=middle", "positions"), ("max_new_tokens=999", "max_new_tokens")])
def test_bad_values_are_refused_before_any_model_loads(query, field):
    with pytest.raises(SpecError) as err:
        AnalysisSpec.from_query(f"kind=steering&prompt=x&{query}")
    assert err.value.field == field


def test_a_prompt_set_knockout_reports_means_with_intervals_before_and_after():
    result = compute(AnalysisSpec(kind="steering", dataset="ioi", ablate="L0H0", max_new_tokens=1))
    summary = result.tables["effects_summary"].set_index(["quantity", "ablated"])
    assert result.meta["n_examples"] >= 190
    before, after = summary.loc[("metric", False)], summary.loc[("metric", True)]
    assert before["mean"] > 2 and after["mean"] < before["mean"] - 2
    assert before["ci_low"] < before["mean"] < before["ci_high"]
    assert summary.loc[("top1", True), "mean"] < summary.loc[("top1", False), "mean"]
    accuracy = summary.loc[("top1", False)]  # Wilson's interval: inside [0, 1], around the share
    assert accuracy["interval"] == "wilson" and 0 <= accuracy["ci_low"] < accuracy["mean"] < accuracy["ci_high"] <= 1
    kl = summary.loc[("kl", True)]  # measured once on the neutral text: one measurement, not n examples
    assert kl["n"] == 1 and kl["interval"] == "single" and np.isnan(kl["ci_low"]) and kl["mean"] > 0
    per_example = result.tables["effects"]
    assert per_example.query("ablated")["metric"].mean() == pytest.approx(after["mean"], abs=1e-9)


def test_the_logit_lens_reads_the_ablated_model(embedded):
    bridge = embedded.bridge
    tokens = prompt_tokens(bridge, FRANCE)
    result = logit_lens.run(embedded, AnalysisSpec(kind="logit_lens", prompt=FRANCE, ablate="L0.mlp",
                                                   ablation="zero", top_k=3))
    final = result.tables["top"].query("layer == 'final_post' and position == 5").sort_values("rank")
    expected = hf_ablated_logits(bridge, tokens, 0, None, "mlp")[0, -1].softmax(-1)
    assert final["token_id"].tolist() == expected.topk(3).indices.tolist()
    assert np.allclose(final["prob"], expected.topk(3).values.numpy(), atol=1e-5)
    intact = logit_lens.run(embedded, AnalysisSpec(kind="logit_lens", prompt=FRANCE, top_k=3))
    assert not intact.tables["top"].equals(result.tables["top"])


def test_the_kind_round_trips_through_a_link_the_store_and_json(tmp_path):
    spec = AnalysisSpec(kind="steering", **PRESET, coeff="0,1", ablate="L1H7", max_new_tokens=4)
    assert AnalysisSpec.from_query(spec.to_query()) == spec
    assert AnalysisSpec.from_json(spec.to_json()) == spec
    first = compute(spec)
    again = compute(spec)
    assert not first.meta.get("cache_hit") and again.meta["cache_hit"]  # the second from the store
    for name in first.tables:
        left, right = first.tables[name], again.tables[name]
        assert list(left.columns) == list(right.columns), name
        assert json.loads(left.to_json()) == json.loads(right.to_json()), name
