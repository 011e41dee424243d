"""Head detectors: the pattern scores are TransformerLens's `detect_head` on the same token
ids; retrieval counts hits over copied tokens; ablation replaces exactly the chosen heads."""
import numpy as np
import pytest
import torch
from transformer_lens.head_detector import detect_head

from analyses import AnalysisSpec, SpecError, compute
from analyses.core.progress import Cancelled
from analyses.embedded import measures
from analyses.kinds import heads
from analyses.runtime import models
from analyses.runtime.models import EMBEDDED_ROOT

pytestmark = pytest.mark.usefixtures("private_cache")

TL_NAMES = {"previous_token": "previous_token_head", "duplicate_token": "duplicate_token_head",
            "induction": "induction_head"}



class Pretokenized:
    """What `detect_head` needs of a model, with `to_tokens` handing back our token ids
    instead of re-tokenizing text (random token ids would not survive a round trip)."""

    def __init__(self, bridge, tokens):
        self.cfg, self.tokens = bridge.cfg, tokens

    def to_tokens(self, seq):
        return self.tokens


def tl_scores(bridge, probe: heads.Probe, name: str) -> np.ndarray:
    """[layer, head] mean over the probe's rows of TransformerLens's own score."""
    per_row = []
    for i in range(len(probe.tokens)):
        row = probe.tokens[i:i + 1]
        with torch.no_grad():
            _, cache = bridge.run_with_cache(row, remove_batch_dim=True)
        per_row.append(detect_head(Pretokenized(bridge, row), "", TL_NAMES[name], cache=cache,
                                   exclude_bos=True).numpy())
    return np.mean(per_row, axis=0)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("name", list(TL_NAMES))
def test_pattern_scores_equal_transformer_lens_detect_head(tiny_model_dir, arch, name):
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    probe = heads.build_probe(heads.DETECTORS[name].probe, bridge, seed=3)
    found = heads.detect(bridge, [name], probe)[name]
    ours = found.scores.numpy()  # [layer, head, (score, tl_score)]
    queries = probe.copy_length if name == "induction" else probe.tokens.shape[1] - 1
    assert found.events == len(probe.tokens) * queries and found.refused is None
    np.testing.assert_allclose(ours[..., 1], tl_scores(bridge, probe, name), atol=1e-5)
    if name != "induction":  # the same scale: score is TransformerLens's
        np.testing.assert_array_equal(ours[..., 0], ours[..., 1])


def test_the_induction_score_is_the_model_cards_and_tops_out_at_one(tiny_gpt2_dir):
    """score: the mean attention from each second-copy token to the token after its first
    occurrence, re-derived here from the raw patterns with plain hooks."""
    bridge = models.load(str(tiny_gpt2_dir)).bridge
    probe = heads.build_probe("repeated", bridge, seed=3)
    ours = heads.detect(bridge, ["induction"], probe)["induction"].scores.numpy()[..., 0]
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(bridge.cfg.n_layers)]
    with torch.no_grad():
        _, cache = bridge.run_with_cache(probe.tokens, names_filter=lambda n: n in names)
    length = probe.copy_length
    expected = np.zeros_like(ours)
    for layer, name in enumerate(names):
        pattern = cache[name].numpy()  # [batch, head, query, key]
        for q in range(length + 1, 2 * length + 1):
            expected[layer] += pattern[:, :, q, q - length + 1].mean(0) / length
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    perfect = torch.zeros(1, 1, 2 * length + 1, 2 * length + 1)
    for q in range(length + 1, 2 * length + 1):
        perfect[0, 0, q, q - length + 1] = 1.0
    assert heads.induction_score(probe, perfect).item() == pytest.approx(1.0)


def test_previous_token_reads_the_users_prompt(tiny_gpt2_dir):
    bridge = models.load(str(tiny_gpt2_dir)).bridge
    prompt = "When Mary and John went to the store, John gave a drink to"
    probe = heads.build_probe("plain", bridge, seed=0, prompt=prompt)
    assert torch.equal(probe.tokens, bridge.to_tokens(prompt, prepend_bos=True))
    ours = heads.detect(bridge, ["previous_token"], probe)["previous_token"].scores.numpy()[..., 1]
    np.testing.assert_allclose(ours, tl_scores(bridge, probe, "previous_token"), atol=1e-5)


def test_probes_are_seeded_token_tensors(tiny_gpt2_dir):
    bridge = models.load(str(tiny_gpt2_dir)).bridge
    a, b = (heads.build_probe("repeated", bridge, seed=s) for s in (1, 1))
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, heads.build_probe("repeated", bridge, seed=2).tokens)
    length = a.copy_length
    assert (a.tokens[:, 0] == bridge.tokenizer.bos_token_id).all()
    assert torch.equal(a.tokens[:, 1:length + 1], a.tokens[:, length + 1:])
    assert a.tokens.shape[1] < bridge.cfg.n_ctx  # what detect_head accepts



@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_needle_prompts_repeat_the_planted_code_after_the_question(tiny_model_dir, arch):
    """[BOS, "The <key> code: w1 w2 w3.", stories, "The <key> code:", w1 w2 w3], one length for
    every row, in the model's own tokens: the answer is the planted ids, asked for in order."""
    bridge = models.load(str(tiny_model_dir(arch))).bridge
    probe = heads.build_probe("needle", bridge, seed=1)
    needle = probe.needle
    assert probe.tokens.shape == (heads.NEEDLE_SEQUENCES, min(heads.HAYSTACK_LENGTH, bridge.cfg.n_ctx))
    assert torch.equal(probe.tokens, heads.build_probe("needle", bridge, seed=1).tokens)  # seeded
    assert (probe.tokens[:, 0] == bridge.tokenizer.bos_token_id).all()
    for row, planted, asked, valid in zip(probe.tokens, needle.planted, needle.asked, needle.valid):
        planted, asked = planted[valid], asked[valid]
        assert torch.equal(row[planted], row[asked + 1])  # the answer is the planted code
        assert asked[-1] + 1 == len(row) - 1  # the code ends the prompt
        assert torch.equal(asked, torch.arange(asked[0], asked[0] + len(asked)))
        statement = bridge.tokenizer.decode(row[1:planted[-1] + 2].tolist())
        assert statement.startswith("The ") and " code: " in statement and statement.endswith(".")
        key = statement[len("The "):statement.index(" code:")]
        question = bridge.tokenizer.decode(row[:asked[0] + 1].tolist())
        assert question.endswith(f" The {key} code:")


def test_retrieval_score_is_hits_over_tokens_copied():
    """Hand-made needle: a head scores on each copied code token whose most-attended key is
    that token's planted place; tokens after the first miss are not copied."""
    code = [100, 101, 102, 103]
    tokens = torch.zeros(1, 30, dtype=torch.long)
    tokens[0, 3:7] = torch.tensor(code)
    tokens[0, 26:30] = torch.tensor(code)
    planted, asked = torch.arange(3, 7), torch.arange(25, 29)
    needle = measures.NeedleBatch(tokens, planted[None], asked[None], torch.ones(1, 4, dtype=torch.bool))
    probe = heads.Probe(tokens, needle=needle)
    logits = torch.zeros(1, 30, 200)
    logits[0, asked, tokens[0, asked + 1]] = 1.0  # every copy right ...
    logits[0, asked[3], 0] = 2.0  # ... but the fourth: copied = the first three only
    stats = torch.zeros(1, 1, 4, 4, dtype=torch.long)  # [layer, batch, head, code]
    stats[0, 0, 0] = planted  # always the planted token
    stats[0, 0, 1] = torch.where(torch.arange(4) == 1, planted, 0)  # once in three
    stats[0, 0, 2] = planted + 1  # inside the needle, but the wrong token
    stats[0, 0, 3] = torch.where(torch.arange(4) >= 3, planted, 0)  # only after the miss
    scored = heads.DETECTORS["retrieval"].score(probe, None, stats, logits)
    np.testing.assert_allclose(scored.values[0, 0, :, 0].numpy(), [1.0, 1 / 3, 0.0, 0.0])
    assert scored.values[..., 1].isnan().all()  # no TransformerLens counterpart
    assert scored.weights.tolist() == [3.0] and scored.events.tolist() == [3.0]
    assert heads.needle_recall(probe, logits).tolist() == [0.0]  # the whole code was not recalled
    logits[0, asked[3], 0] = 0.0
    assert heads.needle_recall(probe, logits).tolist() == [1.0]


def test_too_few_copy_events_leave_retrieval_unscored(tiny_gpt2_dir):
    """A random tiny model copies (almost) nothing: no head gets a score resting on a handful
    of tokens; the result says how many were copied, and the ablation skips the detector."""
    result = compute(AnalysisSpec(kind="heads", model=str(tiny_gpt2_dir), detector="retrieval,induction",
                                  ablate=True))
    scores = result.tables["scores"]
    retrieval = scores[scores.detector == "retrieval"]
    events = result.meta["events"]["retrieval"]
    assert events < heads.MIN_COPY_EVENTS and (retrieval.events == events).all()
    assert retrieval.score.isna().all()
    assert f"copied {events} code token" in result.meta["not_scored"]["retrieval"]
    assert set(result.tables["ablation"].detector) == {"induction"}
    assert scores[scores.detector == "induction"].score.notna().all()


def test_mean_ablation_replaces_only_the_chosen_heads(tiny_llama_dir):
    bridge = models.load(str(tiny_llama_dir)).bridge
    probe = heads.build_probe("repeated", bridge, seed=0)
    means = heads.mean_z(bridge, probe)
    name = "blocks.1.attn.hook_z"
    with torch.no_grad():
        _, clean = bridge.run_with_cache(probe.tokens, names_filter=[name])
        with bridge.hooks(fwd_hooks=heads.ablation_hooks([(1, 2), (0, 1)], means)):
            _, ablated = bridge.run_with_cache(probe.tokens, names_filter=[name])
    z, z0 = ablated[name], clean[name]  # [batch, pos, head, d_head]
    assert torch.allclose(z[:, 1:, 2], means[1][2].expand_as(z[:, 1:, 2]))
    assert torch.equal(z[:, 0], z0[:, 0])  # BOS is left alone
    kept = [0, 1, 3]
    assert not torch.allclose(z[:, :, kept], z0[:, :, kept])  # layer 0's ablation reaches here
    assert torch.allclose(means[1], z0[:, 1:].mean((0, 1)), atol=1e-6)


def test_run_gives_every_head_and_an_ablation_against_random_heads(tiny_gpt2_dir):
    spec = AnalysisSpec(kind="heads", model=str(tiny_gpt2_dir), detector="induction, duplicate_token",
                        ablate=True, seed=5)
    result = compute(spec)
    scores, ablation = result.tables["scores"], result.tables["ablation"]
    assert list(scores.columns) == list(heads.SCORE_COLUMNS)
    assert len(scores) == 2 * 2 * 4 and set(scores.detector) == {"induction", "duplicate_token"}
    k = heads.ablation_k(2, 4)
    assert k == 4 == result.meta["ablation_k"]  # half of the tiny model's 8 heads
    assert list(ablation.ablated) == (["top"] + ["random"] * heads.RANDOM_SETS) * 2
    assert set(ablation.metric) == {"second_copy_loss"}
    top = ablation[(ablation.detector == "induction") & (ablation.ablated == "top")].iloc[0]
    best = scores[scores.detector == "induction"].sort_values("score", ascending=False).head(k)
    assert top.heads == ",".join(f"L{r.layer}H{r.head}" for r in best.itertuples())
    random = ablation[ablation.ablated == "random"].heads
    assert all(len(h.split(",")) == k for h in random)
    assert not set(top.heads.split(",")) & set(random.iloc[0].split(","))  # others only
    loss = ablation[ablation.metric == "second_copy_loss"]  # a loss: the drop is its rise
    assert np.allclose(loss["drop"], loss["after"] - loss["baseline"])
    again = compute(spec).tables
    assert again["scores"].equals(scores) and again["ablation"].equals(ablation)


def test_top_k_sets_how_many_heads_are_ablated(tiny_gpt2_dir):
    spec = AnalysisSpec(kind="heads", model=str(tiny_gpt2_dir), detector="induction", ablate=True, top_k=2)
    ablation = compute(spec).tables["ablation"]
    assert all(len(h.split(",")) == 2 for h in ablation.heads)
    with pytest.raises(SpecError, match="top_k: 5 heads is more than half of this model's 8"):
        heads.run(models.load(str(tiny_gpt2_dir)), AnalysisSpec(kind="heads", ablate=True, top_k=5))


def test_unknown_detector_is_refused_by_the_spec():
    with pytest.raises(SpecError, match="detector: 'bogus' is not one of"):
        AnalysisSpec(kind="heads", detector="induction,bogus")


def test_a_prompt_no_detector_reads_is_refused(tiny_gpt2_dir):
    spec = AnalysisSpec(kind="heads", detector="induction", prompt="Hello")
    with pytest.raises(SpecError, match="prompt: only the previous_token detector"):
        heads.run(models.load(str(tiny_gpt2_dir)), spec)


def test_progress_rises_to_one_and_cancelling_stops_the_run(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    seen = []
    heads.run(model, AnalysisSpec(kind="heads", ablate=True), lambda f, m: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 4

    def cancel(fraction, message):
        if fraction > 0.3:
            raise Cancelled()
    with pytest.raises(Cancelled):
        heads.run(model, AnalysisSpec(kind="heads", ablate=True), cancel)


def test_stories260k_has_previous_token_heads(stories260k_dir):
    spec = AnalysisSpec(kind="heads", model=str(stories260k_dir / "stories260K.bin"),
                        detector="previous_token,induction")
    scores = compute(spec).tables["scores"]
    assert len(scores) == 2 * 5 * 8
    previous = scores[scores.detector == "previous_token"]
    assert previous.score.max() > 0.5
    assert scores.score.between(0, 1).all()
    bridge = models.load(spec.model).bridge  # a trained model's real patterns, held against TL's
    probe = heads.build_probe("plain", bridge, seed=0)
    np.testing.assert_allclose(previous.score.to_numpy().reshape(5, 8),
                               tl_scores(bridge, probe, "previous_token"), atol=1e-5)


def test_the_induction_detector_finds_the_embedded_models_induction_heads():
    """The detector's score is the model card's (the mean attention from second-copy tokens,
    one definition: `measures.induction_scores`), so the card's heads are its top heads at
    the card's threshold; TransformerLens's averages over the first copy too, about half."""
    if not (EMBEDDED_ROOT / "tiny-circuits" / "config.json").is_file():
        pytest.fail("the embedded model data/models/tiny-circuits is part of the repo")
    from analyses.embedded import measures as behaviours
    from analyses.runtime import models

    model = models.load("default")
    vocab = np.arange(1, len(model.tokenizer))
    card = behaviours.measure_induction(behaviours.bridge_forward(model.bridge), 0, vocab,
                                        np.random.default_rng(1), n=16).scores  # [layer, head]
    card_heads = {(int(layer), int(h)) for layer, h in zip(*np.nonzero(card >= 0.5))}
    tables = compute(AnalysisSpec(kind="heads", detector="induction", ablate=True)).tables
    scores = tables["scores"].sort_values("score", ascending=False)
    found = {(int(r.layer), int(r.head)) for r in scores.head(len(card_heads)).itertuples()}
    assert len(card_heads) >= 2 and found == card_heads
    assert set(map(tuple, scores[scores.score >= 0.5][["layer", "head"]].to_numpy())) == card_heads
    assert scores.score.iloc[0] >= 0.8  # a near-perfect induction head, on the 0-1 scale
    assert 0.35 <= scores.tl_score.iloc[0] <= 0.55  # near TransformerLens's ceiling of ~0.5
    ablation = tables["ablation"]
    top = ablation[ablation.ablated == "top"]["drop"].item()
    random = ablation[ablation.ablated == "random"]["drop"]
    assert top > random.max()  # the induction heads carry the second copy; random heads less so


def test_retrieval_heads_of_the_embedded_model_rest_on_real_copies_and_carry_them():
    """Needles in the model's own format are copied (the card's recall), so the scores rest on
    many copy events; re-derived from Hugging Face's eager attention with plain loops; and
    mean-ablating the top heads takes recall down where random sets of as many mostly do not."""
    if not (EMBEDDED_ROOT / "tiny-circuits" / "config.json").is_file():
        pytest.fail("the embedded model data/models/tiny-circuits is part of the repo")
    import transformers as tf

    result = compute(AnalysisSpec(kind="heads", detector="retrieval", ablate=True))
    scores = result.tables["scores"]
    assert result.meta["events"]["retrieval"] >= 3 * heads.NEEDLE_SEQUENCES * 0.9  # 3 code tokens each
    assert (scores.events == result.meta["events"]["retrieval"]).all()
    assert result.meta["needle_recall"] >= measures.THRESHOLDS.needle_recall

    bridge = models.load("default").bridge
    probe = heads.build_probe("needle", bridge, seed=0)
    hf = tf.AutoModelForCausalLM.from_pretrained(EMBEDDED_ROOT / "tiny-circuits", attn_implementation="eager")
    with torch.no_grad():
        out = hf(probe.tokens, output_attentions=True)
    logits, attentions = out.logits.numpy(), [a.numpy() for a in out.attentions]
    tokens = probe.tokens.numpy()
    hits = np.zeros((len(attentions), attentions[0].shape[1]))
    copied_total = 0
    for b in range(len(tokens)):
        planted, asked = probe.needle.planted[b].tolist(), probe.needle.asked[b].tolist()
        for planted_at, at in zip(planted, asked):
            if logits[b, at].argmax() != tokens[b, at + 1]:
                break  # greedy decoding would go wrong here: nothing after it is copied
            copied_total += 1
            for layer, pattern in enumerate(attentions):
                hits[layer] += pattern[b, :, at].argmax(-1) == planted_at
    assert copied_total == result.meta["events"]["retrieval"]
    ours = scores.sort_values(["layer", "head"]).score.to_numpy().reshape(hits.shape)
    np.testing.assert_allclose(ours, hits / copied_total, atol=1e-6)

    ablation = result.tables["ablation"]
    top = ablation[ablation.ablated == "top"].iloc[0]
    random = ablation[ablation.ablated == "random"]
    assert top.baseline >= 0.9 and top.after <= 0.5  # a real drop, not a tie broken by noise
    assert top["drop"] > random["drop"].median()
    assert len(random) == heads.RANDOM_SETS
