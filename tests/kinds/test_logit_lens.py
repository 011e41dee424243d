"""Logit lens: the final layer is the model's own output; targets agree with the top table."""
import numpy as np
import pytest
import torch

from analyses import AnalysisSpec, compute
from analyses.kinds import logit_lens
from analyses.kinds.logit_lens import run
from analyses.runtime import models
from conftest import TINY_ARCHS

PROMPT = "When Mary and John went to the store, John gave a drink to"


def model_probs(bridge, prompt: str) -> np.ndarray:
    """[pos, d_vocab] the model's own next-token distribution."""
    tokens = bridge.to_tokens(prompt, prepend_bos=True)
    with torch.no_grad():
        return bridge(tokens)[0].softmax(-1).numpy()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_final_layer_equals_the_models_output(tiny_model_dir, arch):
    model = models.load(str(tiny_model_dir(arch)))
    result = run(model, AnalysisSpec(kind="logit_lens", prompt=PROMPT, top_k=5))
    top = result.tables["top"]
    final = top[top.layer == "final_post"].sort_values(["position", "rank"])
    expected = model_probs(model.bridge, PROMPT)  # [pos, d_vocab]
    n_pos = expected.shape[0]
    assert final.position.nunique() == n_pos
    want_ids = np.argsort(-expected, axis=-1)[:, :5]
    np.testing.assert_allclose(final.prob.to_numpy().reshape(n_pos, 5),
                               np.take_along_axis(expected, want_ids, -1), atol=1e-5)
    # every block's input plus the final output, for every position
    assert top.layer_index.nunique() == model.bridge.cfg.n_layers + 1
    assert len(top) == (model.bridge.cfg.n_layers + 1) * n_pos * 5


def test_target_trajectory_agrees_with_the_top_table(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    first = run(model, AnalysisSpec(kind="logit_lens", prompt=PROMPT, top_k=10)).tables["top"]
    final = first[(first.layer == "final_post") & (first.position == first.position.max())]
    # the best-ranked token whose text reads back as that one token (a lone UTF-8 byte does not)
    last = next(r for r in final.sort_values("rank").itertuples()
                if model.bridge.to_tokens(r.token_str, prepend_bos=False)[0].tolist() == [r.token_id])
    spec = AnalysisSpec(kind="logit_lens", prompt=PROMPT, top_k=1, token=last.token_str)
    targets = run(model, spec).tables["targets"]
    row = targets[(targets.layer == "final_post") & (targets.position == last.position)].iloc[0]
    assert row["rank"] == last.rank and row.token_id == last.token_id
    assert row.prob == pytest.approx(last.prob, abs=1e-6)
    assert set(targets.layer_index) == set(first.layer_index)


@pytest.mark.parametrize("final_norm", [True, False])
def test_one_readout_equals_transformer_lens_top_k_and_target_readouts(tiny_gpt2_dir, monkeypatch,
                                                                       final_norm):
    """Ours reads full-vocabulary logits once (in chunks of positions); TransformerLens's
    `logit_lens` with `top_k=` / `targets=` must give the same ids, values and ranks."""
    from transformer_lens.tools.analysis import logit_lens as tl_logit_lens

    from analyses.kinds import logit_lens

    model = models.load(str(tiny_gpt2_dir))
    bridge = model.bridge
    monkeypatch.setattr(logit_lens, "READOUT_BYTES", 1)  # one position per chunk
    spec = AnalysisSpec(kind="logit_lens", prompt=PROMPT, top_k=4, token=" Mary, John",
                        final_norm=final_norm)
    result = run(model, spec)
    _, cache = bridge.run_with_cache(bridge.to_tokens(PROMPT))
    lens = dict(cache=cache, positions=None, apply_ln=final_norm)
    probs = tl_logit_lens(bridge, top_k=4, return_type="probs", **lens).readout
    logits = tl_logit_lens(bridge, top_k=4, return_type="logits", **lens).readout
    ids = [int(bridge.to_single_token(t)) for t in (" Mary", " John")]
    targeted = tl_logit_lens(bridge, targets=ids, return_type="probs", **lens).readout
    top = result.tables["top"].sort_values(["layer_index", "position", "rank"])
    shape = probs.values[:, 0].shape  # [entry, pos, k]
    np.testing.assert_array_equal(top.token_id.to_numpy().reshape(shape), probs.top_ids[:, 0])
    np.testing.assert_allclose(top.prob.to_numpy().reshape(shape), probs.values[:, 0], atol=1e-6)
    np.testing.assert_allclose(top.logit.to_numpy().reshape(shape), logits.values[:, 0], atol=1e-5)
    targets = result.tables["targets"].sort_values(["layer_index", "position", "token_id"])
    order = np.argsort(ids)  # the table is sorted by id
    t_shape = targeted.values[:, 0].shape  # [entry, pos, target]
    np.testing.assert_array_equal(targets["rank"].to_numpy().reshape(t_shape),
                                  targeted.target_ranks[:, 0][..., order] + 1)
    np.testing.assert_allclose(targets.prob.to_numpy().reshape(t_shape),
                               targeted.values[:, 0][..., order], atol=1e-6)


def test_without_the_final_norm_the_last_layer_differs(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    normed = run(model, AnalysisSpec(kind="logit_lens", prompt=PROMPT, top_k=3)).tables["top"]
    raw = run(model, AnalysisSpec(kind="logit_lens", prompt=PROMPT, top_k=3, final_norm=False)).tables["top"]
    assert not np.allclose(normed.prob, raw.prob)


def test_multi_token_target_is_refused_with_its_pieces(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    with pytest.raises(ValueError, match="token: .* tokens .* exactly one"):
        run(model, AnalysisSpec(kind="logit_lens", prompt=PROMPT, token=" Constantinople"))


def test_prompt_longer_than_the_context_is_refused_before_inference(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    with pytest.raises(ValueError, match=r"prompt: \d+ tokens .* context holds 128"):
        run(model, AnalysisSpec(kind="logit_lens", prompt="word " * 200))


def test_a_configured_token_limit_is_refused_with_its_name(tiny_gpt2_dir, monkeypatch):
    model = models.load(str(tiny_gpt2_dir))
    n_tokens = int(model.bridge.to_tokens(PROMPT).shape[1])
    monkeypatch.setenv("ANALYSES_MAX_TOKENS", "8")
    with pytest.raises(ValueError, match=rf"prompt: {n_tokens} tokens \(with BOS\); this server accepts at "
                                         r"most 8 \(ANALYSES_MAX_TOKENS\)"):
        run(model, AnalysisSpec(kind="logit_lens", prompt=PROMPT))
    monkeypatch.setenv("ANALYSES_MAX_TOKENS", str(n_tokens))  # exactly the limit is fine
    assert run(model, AnalysisSpec(kind="logit_lens", prompt=PROMPT)).meta["n_tokens"] == n_tokens


def pairwise_ranks(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """The first definition: per target, how many logits are strictly larger, from an
    [entry, pos, target, vocab] comparison (what the readout did before it sorted)."""
    return (logits.unsqueeze(-2) > target_logits.unsqueeze(-1)).sum(-1)


@pytest.mark.parametrize("n_targets", [1, 3, 40])
def test_target_ranks_equal_the_pairwise_count_with_ties(n_targets):
    """Logits drawn from 7 values: most of a row ties, so the strict `>` convention (a tie
    does not push a target down; the argmax is 0) is what is tested."""
    generator = torch.Generator().manual_seed(n_targets)
    logits = torch.randint(-3, 4, (5, 6, 300), generator=generator).float()  # [entry, pos, vocab]
    ids = torch.randint(0, 300, (n_targets,), generator=generator)
    target_logits = logits[..., ids]  # [entry, pos, target]
    ours = logit_lens.target_ranks(logits, target_logits)
    assert ours.dtype == torch.long and torch.equal(ours, pairwise_ranks(logits, target_logits))


def test_too_many_targets_are_refused_naming_the_field_and_the_cap(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    many = ",".join(f" w{i}" for i in range(logit_lens.MAX_TARGETS + 1))
    with pytest.raises(ValueError, match=rf"token: {logit_lens.MAX_TARGETS + 1} target tokens; at most "
                                         rf"{logit_lens.MAX_TARGETS}"):
        run(model, AnalysisSpec(kind="logit_lens", prompt=PROMPT, token=many))


def test_stories260k_final_layer_is_the_softmax_output(stories260k_dir):
    spec = AnalysisSpec(kind="logit_lens", model=str(stories260k_dir / "stories260K.bin"),
                        prompt="Once upon a time", top_k=3)
    result = compute(spec)
    top = result.tables["top"]
    model = models.load(spec.model)
    expected = model_probs(model.bridge, spec.prompt)
    final = top[top.layer == "final_post"].sort_values(["position", "rank"])
    got = final.prob.to_numpy().reshape(expected.shape[0], 3)
    np.testing.assert_allclose(got, -np.sort(-expected, axis=-1)[:, :3], atol=1e-5)
    assert result.meta["model_fingerprint"] == model.fingerprint
