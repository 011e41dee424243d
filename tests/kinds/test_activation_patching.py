"""Activation patching: the batched, resumed engine gives TransformerLens's numbers; the
normalisation's fixed points; input errors; a real model; and the embedded model's IOI circuit."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformer_lens import patching as tl_patching

from analyses import AnalysisSpec, SpecError
from analyses.core.progress import Cancelled
from analyses.kinds.activation_patching import run
from analyses.kinds.patching.engine import GRANULARITIES, PairBatch, Patcher, prompt_pair
from analyses.runtime import models
from conftest import REPO_ROOT

CLEAN = "Mary and John: John gave it to"
CORRUPTED = "Mary and John: Mary gave it to"
PAIR = dict(clean=CLEAN, corrupted=CORRUPTED, answer=" Mary", wrong=" John")
ARCHS = ("gpt2", "llama", "neox")  # llama: grouped-query attention; neox: parallel blocks

# granularity -> (TransformerLens sweep, how its axes map onto ours)
LAYER_POS = {
    "resid_pre": tl_patching.get_act_patch_resid_pre,
    "resid_mid": tl_patching.get_act_patch_resid_mid,
    "attn_out": tl_patching.get_act_patch_attn_out,
    "mlp_out": tl_patching.get_act_patch_mlp_out,
}
LAYER_HEAD = {
    "head_out": tl_patching.get_act_patch_attn_head_out_all_pos,
    "head_q": tl_patching.get_act_patch_attn_head_q_all_pos,
    "head_k": tl_patching.get_act_patch_attn_head_k_all_pos,
    "head_v": tl_patching.get_act_patch_attn_head_v_all_pos,
    "head_pattern": tl_patching.get_act_patch_attn_head_pattern_all_pos,
}
BY_POS = {  # TransformerLens's axes: (layer, pos, head), or (layer, head, dest_pos) for patterns
    "head_out_by_pos": (tl_patching.get_act_patch_attn_head_out_by_pos, ("layer", "pos", "head")),
    "head_q_by_pos": (tl_patching.get_act_patch_attn_head_q_by_pos, ("layer", "pos", "head")),
    "head_k_by_pos": (tl_patching.get_act_patch_attn_head_k_by_pos, ("layer", "pos", "head")),
    "head_v_by_pos": (tl_patching.get_act_patch_attn_head_v_by_pos, ("layer", "pos", "head")),
    "head_pattern_by_pos": (tl_patching.get_act_patch_attn_head_pattern_by_pos,
                            ("layer", "head_index", "dest_pos")),
}


def spec(model_dir, **extra) -> AnalysisSpec:
    return AnalysisSpec(kind="activation_patching", model=str(model_dir), **PAIR, **extra)


def tl_metric(pair):
    return lambda logits: logits[0, -1, pair.answer] - logits[0, -1, pair.wrong]


def effects(model, model_dir, granularity) -> pd.DataFrame:
    return run(model, spec(model_dir, granularity=granularity)).tables["effects"]


@pytest.fixture(params=ARCHS)
def arch_model(request, tiny_model_dir):
    folder = tiny_model_dir(request.param)
    return request.param, folder, models.load(str(folder))


def test_layer_by_position_sweeps_equal_transformer_lens(arch_model):
    arch, folder, model = arch_model
    bridge = model.bridge
    pair = prompt_pair(bridge, spec(folder))
    _, clean_cache = bridge.run_with_cache(pair.clean)
    for granularity, sweep in LAYER_POS.items():
        if granularity == "resid_mid" and arch == "neox":
            continue  # a parallel block has no resid_mid (tested below)
        ours = effects(model, folder, granularity)
        with torch.no_grad():
            expected = sweep(bridge, pair.corrupted, clean_cache, tl_metric(pair))  # [layer, pos]
        assert list(ours.granularity.unique()) == [granularity]
        assert (ours["head"] == -1).all()
        got = ours.set_index(["layer", "position"]).raw.unstack().to_numpy()
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, err_msg=granularity)


def test_resid_post_equals_transformer_lens_generic_patch(arch_model):
    """TransformerLens has no get_act_patch_resid_post; its generic patch at hook_resid_post."""
    _, folder, model = arch_model
    bridge = model.bridge
    pair = prompt_pair(bridge, spec(folder))
    _, clean_cache = bridge.run_with_cache(pair.clean)
    with torch.no_grad():
        expected = tl_patching.generic_activation_patch(
            bridge, pair.corrupted, clean_cache, tl_metric(pair),
            patch_setter=tl_patching.layer_pos_patch_setter, activation_name="resid_post",
            index_axis_names=("layer", "pos"))
    ours = effects(model, folder, "resid_post")
    got = ours.set_index(["layer", "position"]).raw.unstack().to_numpy()
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_head_sweeps_over_all_positions_equal_transformer_lens(arch_model):
    _, folder, model = arch_model
    bridge = model.bridge
    pair = prompt_pair(bridge, spec(folder))
    _, clean_cache = bridge.run_with_cache(pair.clean)
    for granularity, sweep in LAYER_HEAD.items():
        ours = effects(model, folder, granularity)
        with torch.no_grad():
            expected = sweep(bridge, pair.corrupted, clean_cache, tl_metric(pair))  # [layer, head]
        assert (ours.position == -1).all()
        got = ours.set_index(["layer", "head"]).raw.unstack().to_numpy()
        assert got.shape == tuple(expected.shape), granularity  # k, v: key/value heads on GQA
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, err_msg=granularity)


def test_head_sweeps_by_position_equal_transformer_lens(arch_model):
    """On a sample of cells (TransformerLens runs one forward per cell), via its index_df."""
    _, folder, model = arch_model
    bridge = model.bridge
    pair = prompt_pair(bridge, spec(folder))
    _, clean_cache = bridge.run_with_cache(pair.clean)
    rng = np.random.default_rng(0)
    for granularity, (sweep, axes) in BY_POS.items():
        ours = effects(model, folder, granularity)
        assert (ours.position >= 0).all() and (ours["head"] >= 0).all()
        sample = ours.iloc[rng.choice(len(ours), size=10, replace=False)]
        columns = {"layer": sample.layer, "pos": sample.position, "head": sample["head"],
                   "head_index": sample["head"], "dest_pos": sample.position}
        index_df = pd.DataFrame({axis: columns[axis].to_numpy() for axis in axes})
        with torch.no_grad():
            expected = sweep(bridge, pair.corrupted, clean_cache, tl_metric(pair),
                             index_axis_names=None, index_df=index_df)
        np.testing.assert_allclose(sample.raw.to_numpy(), expected.numpy(), atol=1e-5,
                                   err_msg=granularity)


def test_grouped_query_keys_and_values_are_patched_per_key_value_head(tiny_llama_dir):
    model = models.load(str(tiny_llama_dir))
    cfg = model.bridge.cfg
    n_kv = cfg.n_key_value_heads
    for granularity, n_heads in (("head_k", n_kv), ("head_v", n_kv), ("head_q", cfg.n_heads)):
        table = effects(model, tiny_llama_dir, granularity)
        assert len(table) == cfg.n_layers * n_heads, granularity


def test_batches_that_start_at_their_own_layer_give_the_same_numbers(tiny_gpt2_dir, monkeypatch):
    """Large rows (long prompts, wide models) are batched per layer; small ones together."""
    import analyses.kinds.patching.engine as engine

    model = models.load(str(tiny_gpt2_dir))
    pair = prompt_pair(model.bridge, spec(tiny_gpt2_dir))
    site = GRANULARITIES["head_out"]
    together = Patcher(model.bridge, pair, sites=(site,))
    cells = together.cells(site, [0, 1])
    assert len(together.batches(cells)) == 1
    monkeypatch.setattr(engine, "PER_LAYER_WORK", 0)
    per_layer = Patcher(model.bridge, pair, sites=(site,))
    batches = per_layer.batches(cells)
    assert [set(cells[b, 0]) for b in batches] == [{0}, {1}]
    np.testing.assert_allclose(per_layer.patch(site, cells), together.patch(site, cells), atol=1e-6)


def test_rows_join_the_pass_at_their_own_layer_with_the_same_numbers(arch_model, monkeypatch):
    """One batch over every layer: block L runs only the rows patched at or below L (the
    others join later with their cached corrupted residual), and the numbers equal a pass
    in which every row runs from the lowest layer."""
    import analyses.kinds.patching.engine as engine

    _, folder, model = arch_model
    bridge, site = model.bridge, GRANULARITIES["head_out"]
    pair = prompt_pair(bridge, spec(folder))
    joined = Patcher(bridge, pair, sites=(site,))
    n_layers = int(bridge.cfg.n_layers)
    cells = joined.cells(site, list(range(n_layers)))
    assert len(joined.batches(cells)) == 1
    joined.patch(site, cells[:1])  # the first batch's extra check row is not counted below
    rows_seen = {}
    handles = [(bridge.blocks[layer].hook_in, bridge.blocks[layer].hook_in.add_hook(
        lambda tensor, hook, layer=layer: rows_seen.__setitem__(layer, tensor.shape[0])))
        for layer in range(n_layers)]
    try:
        got = joined.patch(site, cells)
    finally:
        for point, handle in handles:
            type(bridge)._remove_temporary_hook(point, "fwd", handle)
    per_layer = len(cells) // n_layers
    assert rows_seen == {layer: per_layer * (layer + 1) for layer in range(n_layers)}
    measure = engine.Patcher.measure  # the same batch with every row from the lowest layer
    monkeypatch.setattr(engine.Patcher, "measure", lambda self, cells, start, hooks_for, examples=None,
                        entries=None, from_position=None: measure(self, cells, start, hooks_for, examples,
                                                                  from_position=from_position))
    from_lowest = Patcher(bridge, pair, sites=(site,))
    np.testing.assert_allclose(got, from_lowest.patch(site, cells), atol=1e-6)


def test_blocks_above_the_last_joining_layer_run_every_row(monkeypatch):
    """On the 3-layer embedded model, rows patched at layers 0 and 1 (none at 2), two
    examples: block 2 has no rows of its own joining but gets every row, with its per-row
    arguments widened; the numbers equal a pass of every row from layer 0."""
    import analyses.kinds.patching.engine as engine

    folder = REPO_ROOT / "data" / "models" / "tiny-circuits"
    if not (folder / "config.json").is_file():
        pytest.skip("the embedded model data/models/tiny-circuits is absent (not trained yet)")
    model = models.load(str(folder))
    rows = [json.loads(line) for line in (REPO_ROOT / "data" / "datasets" / "ioi.jsonl").open()][:8]
    pairs = [prompt_pair(model.bridge, AnalysisSpec(kind="activation_patching", model=str(folder), **{
        k: row[k] for k in ("clean", "corrupted", "answer", "wrong")})) for row in rows]
    length = int(pairs[0].clean.shape[1])
    pairs = [p for p in pairs if int(p.clean.shape[1]) == length][:2]
    assert len(pairs) == 2 and int(model.bridge.cfg.n_layers) == 3
    site = GRANULARITIES["head_out"]
    joined = Patcher(model.bridge, PairBatch.of(pairs), sites=(site,))
    cells = joined.cells(site, [0, 1])
    got = joined.patch_examples(site, cells)
    measure = engine.Patcher.measure
    monkeypatch.setattr(engine.Patcher, "measure", lambda self, cells, start, hooks_for, examples=None,
                        entries=None, from_position=None: measure(self, cells, start, hooks_for, examples,
                                                                  from_position=from_position))
    from_lowest = Patcher(model.bridge, PairBatch.of(pairs), sites=(site,))
    np.testing.assert_allclose(got, from_lowest.patch_examples(site, cells), atol=1e-6)
    assert joined.resumes and from_lowest.resumes


def test_full_forwards_give_the_same_numbers_as_resumed_ones(tiny_gpt2_dir):
    """The fallback for architectures that cannot resume from a layer: same cells, same numbers."""
    model = models.load(str(tiny_gpt2_dir))
    pair = prompt_pair(model.bridge, spec(tiny_gpt2_dir))
    for name in ("resid_pre", "head_out_by_pos"):
        site = GRANULARITIES[name]
        resumed = Patcher(model.bridge, pair, sites=(site,))
        cells = resumed.cells(site, [0, 1])
        fast = resumed.patch(site, cells)
        assert resumed.resumes
        full = Patcher(model.bridge, pair, sites=(site,))
        full.resumes, full._verified = False, True
        np.testing.assert_allclose(fast, full.patch(site, cells), atol=1e-5)


# Three pairs of one token length (on every tiny model's tokenizer) that first differ at
# different positions, and one with its answers the other way round
PAIRS = [PAIR,
         dict(clean="Mary and John: John gave it to", corrupted="John and Mary: John gave it to",
              answer=" Mary", wrong=" John"),
         dict(clean="Mary and John: Mary gave it to", corrupted="Mary and John: John gave it to",
              answer=" John", wrong=" Mary")]


def the_pairs(bridge, folder) -> PairBatch:
    """PAIRS on the model in `folder`, as one PairBatch."""
    return PairBatch.of([prompt_pair(bridge, AnalysisSpec(kind="activation_patching", model=str(folder), **p))
                         for p in PAIRS])


@pytest.mark.parametrize("name", ["resid_pre", "head_out", "head_pattern_by_pos"])
def test_pairs_patched_together_equal_each_pair_patched_alone(arch_model, name):
    """A PairBatch's rows are (example, cell): each example reads its own clean activations,
    corrupted residual, prefix cache and answers, and resumes from the earliest first
    difference of the batch."""
    _, folder, model = arch_model
    bridge, site = model.bridge, GRANULARITIES[name]
    pairs = [prompt_pair(bridge, AnalysisSpec(kind="activation_patching", model=str(folder), **p))
             for p in PAIRS]
    assert len({int(p.clean.shape[1]) for p in pairs}) == 1
    together = Patcher(bridge, PairBatch.of(pairs), sites=(site,))
    assert len(set(together.first_differences.tolist())) > 1
    cells = together.cells(site, list(range(int(bridge.cfg.n_layers))))
    got = together.patch_examples(site, cells)  # [example, cell]
    for e, pair in enumerate(pairs):
        alone = Patcher(bridge, pair, sites=(site,))
        assert together.clean_baselines[e] == pytest.approx(alone.clean_baseline, abs=1e-5)
        assert together.corrupted_baselines[e] == pytest.approx(alone.corrupted_baseline, abs=1e-5)
        np.testing.assert_allclose(got[e], alone.patch(site, cells), atol=1e-5)
    with pytest.raises(ValueError, match="3 examples"):  # one pair's API refuses a batch
        together.patch(site, cells)


def test_pairs_patched_together_with_full_forwards_equal_resumed_ones(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    pairs = PairBatch.of([prompt_pair(model.bridge, AnalysisSpec(
        kind="activation_patching", model=str(tiny_gpt2_dir), **p)) for p in PAIRS])
    site = GRANULARITIES["resid_pre"]
    resumed = Patcher(model.bridge, pairs, sites=(site,))
    cells = resumed.cells(site, [0, 1])
    fast = resumed.patch_examples(site, cells)
    full = Patcher(model.bridge, pairs, sites=(site,))
    full.resumes, full._verified = False, True
    np.testing.assert_allclose(fast, full.patch_examples(site, cells), atol=1e-5)


@pytest.mark.parametrize("name", ["resid_pre", "head_q_by_pos", "head_k_by_pos", "head_out"])
def test_batches_that_resume_at_their_own_position_give_the_same_numbers(arch_model, monkeypatch, name):
    """Small batches (a budget of a few rows) are cut in (layer, position) order and each
    resumes at its lowest position, its earlier positions' keys and values coming from the
    corrupted run: the numbers of one batch resuming at the first difference."""
    import analyses.kinds.patching.engine as engine

    _, folder, model = arch_model
    bridge, site = model.bridge, GRANULARITIES[name]
    pairs = the_pairs(bridge, folder)
    whole = Patcher(bridge, pairs, sites=(site,))
    cells = whole.cells(site, list(range(int(bridge.cfg.n_layers))))
    expected = whole.patch_examples(site, cells)
    monkeypatch.setattr(engine, "MAX_ROWS", 3)
    small = Patcher(bridge, pairs, sites=(site,))
    rows = np.tile(cells, (pairs.n_examples, 1))
    batches = small.batches(rows)
    assert len(batches) > 1
    for batch in batches:  # rows x computed positions within the budget (or a single row)
        computed = small.n_tokens - small.resume_position(rows[batch])
        assert len(batch) == 1 or len(batch) * computed <= 3 * small.computed_positions
    if site.by_position:
        assert max(small.resume_position(rows[b]) for b in batches) > small.first_difference
    np.testing.assert_allclose(small.patch_examples(site, cells), expected, atol=1e-5)
    assert small.resumes  # the resumed passes were checked against the corrupted run


@pytest.mark.parametrize("name", ["resid_pre", "head_q_by_pos", "head_v_by_pos", "head_out"])
def test_cells_whose_clean_and_corrupted_activations_are_equal_are_read_without_a_forward(
        arch_model, monkeypatch, name):
    """After the pairs' last differing token the first layer's per-position inputs are the
    same in both runs: those cells give the corrupted run (no forward), as a forward gives them."""
    _, folder, model = arch_model
    bridge, site = model.bridge, GRANULARITIES[name]
    pairs = the_pairs(bridge, folder)
    patcher = Patcher(bridge, pairs, sites=(site,))
    cells = patcher.cells(site, list(range(int(bridge.cfg.n_layers))))
    examples = np.repeat(np.arange(pairs.n_examples), len(cells))
    same = patcher.unchanged(site, np.tile(cells, (pairs.n_examples, 1)), examples).reshape(pairs.n_examples, -1)
    if site.by_position:  # layer 0, after the last difference
        last = (pairs.clean != pairs.corrupted).int().cumsum(1).argmax(1).numpy()  # [example]
        expected = (cells[:, 0] == 0)[None] & (cells[:, 1][None] > last[:, None])
        assert expected.any() and same[expected].all()
    got = patcher.patch_examples(site, cells)
    monkeypatch.setattr(Patcher, "unchanged", lambda self, site, cells, examples: np.zeros(len(cells), bool))
    forwarded = Patcher(bridge, pairs, sites=(site,)).patch_examples(site, cells)
    np.testing.assert_allclose(got, forwarded, atol=1e-5)
    np.testing.assert_array_equal(got[same], np.broadcast_to(patcher.corrupted_baselines[:, None], got.shape)[same])


@pytest.mark.parametrize("name", ["resid_post", "mlp_out", "head_q_by_pos", "head_out_by_pos",
                                  "head_pattern_by_pos"])
def test_last_block_cells_below_the_last_position_are_read_without_a_forward(arch_model, name):
    """A patch that stays at its own position, in the last block and below the last position,
    cannot reach the last position's logits: the corrupted run, as a forward gives it."""
    from dataclasses import replace

    _, folder, model = arch_model
    bridge, site = model.bridge, GRANULARITIES[name]
    if not Patcher(bridge, prompt_pair(bridge, spec(folder)), sites=()).available(site):
        pytest.skip(f"{name} has no hook on this architecture")
    pairs = the_pairs(bridge, folder)
    last = int(bridge.cfg.n_layers) - 1
    patcher = Patcher(bridge, pairs, sites=(site,))
    cells = patcher.cells(site, [last])
    got = patcher.patch_examples(site, cells)
    forwarded = replace(site, within_position=False)
    expected = Patcher(bridge, pairs, sites=(forwarded,)).patch_examples(forwarded, cells)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    below = cells[:, 1] < patcher.n_tokens - 1
    assert below.any() and (got[:, below] == patcher.corrupted_baselines[:, None]).all()


def test_pairs_of_different_lengths_do_not_share_an_engine(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    short = prompt_pair(model.bridge, spec(tiny_gpt2_dir))
    long = prompt_pair(model.bridge, AnalysisSpec(
        kind="activation_patching", model=str(tiny_gpt2_dir), clean=CLEAN + " her",
        corrupted=CORRUPTED + " her", answer=" Mary", wrong=" John"))
    with pytest.raises(ValueError, match="one token length"):
        PairBatch.of([short, long])


def test_final_residual_at_the_last_position_restores_the_clean_run(arch_model):
    """The logits at the last position read only the final residual stream there."""
    _, folder, model = arch_model
    result = run(model, spec(folder, granularity="resid_post"))
    table = result.tables["effects"]
    last = table[(table.layer == table.layer.max()) & (table.position == table.position.max())]
    assert last.value.iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert last.raw.iloc[0] == pytest.approx(result.meta["clean_baseline"], abs=1e-5)
    other = table[(table.layer == table.layer.max()) & (table.position < table.position.max())]
    np.testing.assert_allclose(other.value, 0.0, atol=1e-5)  # other positions: no effect


def test_whole_residual_stream_entering_layer_0_restores_the_clean_run(tiny_llama_dir):
    """A cell with position -1 patches every position: at resid_pre 0 that is the clean run."""
    model = models.load(str(tiny_llama_dir))
    pair = prompt_pair(model.bridge, spec(tiny_llama_dir))
    site = GRANULARITIES["resid_pre"]
    patcher = Patcher(model.bridge, pair, sites=(site,))
    raw = patcher.patch(site, np.array([[0, -1, -1], [1, -1, -1]]))
    np.testing.assert_allclose(raw, patcher.clean_baseline, atol=1e-5)


def test_values_are_normalised_between_the_baselines(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    result = run(model, spec(tiny_gpt2_dir))
    clean, corrupted = result.meta["clean_baseline"], result.meta["corrupted_baseline"]
    table = result.tables["effects"]
    expected = (table.raw - corrupted) / (clean - corrupted)
    np.testing.assert_allclose(table.value, expected, atol=1e-9)
    assert list(table.columns) == ["granularity", "layer", "position", "head", "value", "raw",
                                   "sender_layer", "sender_head", "receiver_input"]
    assert result.meta["n_tokens"] == len(result.meta["clean_tokens"]) == table.position.nunique()
    # positions where the prompts agree, at the first layer: patching changes nothing
    same = [i for i, (a, b) in enumerate(zip(result.meta["clean_tokens"],
                                              result.meta["corrupted_tokens"])) if a == b]
    first = table[(table.layer == 0) & table.position.isin(same)]
    np.testing.assert_allclose(first.value, 0.0, atol=1e-6)


def test_all_runs_every_layer_by_position_granularity_the_model_has(tiny_model_dir):
    block = {"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"}
    for arch, expected in (("gpt2", block), ("neox", block - {"resid_mid"})):
        model = models.load(str(tiny_model_dir(arch)))
        result = run(model, spec(tiny_model_dir(arch), granularity="all", layer=1))
        table = result.tables["effects"]
        assert set(table.granularity) == expected, arch
        assert set(table.layer) == {1}
        assert result.meta.get("not_on_this_model", []) == sorted({"resid_mid"} - expected)


def test_resid_mid_is_refused_on_a_parallel_block_model(tiny_neox_dir):
    model = models.load(str(tiny_neox_dir))
    with pytest.raises(SpecError, match="granularity: 'resid_mid' is not available"):
        run(model, spec(tiny_neox_dir, granularity="resid_mid"))


def test_layer_restricts_the_sweep_and_is_range_checked(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    table = run(model, spec(tiny_gpt2_dir, granularity="head_out", layer=1)).tables["effects"]
    assert set(table.layer) == {1} and len(table) == model.bridge.cfg.n_heads
    with pytest.raises(SpecError, match="layer: 2 is out of range: the model has 2 layers"):
        run(model, spec(tiny_gpt2_dir, layer=2))


def test_unknown_granularity_is_refused_with_the_choices():
    with pytest.raises(SpecError, match="granularity: 'heads' is not one of: resid_pre, "):
        AnalysisSpec(kind="activation_patching", **PAIR, granularity="heads")


def test_unequal_lengths_are_refused_naming_both(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    bad = AnalysisSpec(kind="activation_patching", model=str(tiny_gpt2_dir),
                       **{**PAIR, "corrupted": "Mary and John: Mary gave it all to"})
    n_clean = model.bridge.to_tokens(CLEAN).shape[1]
    n_bad = model.bridge.to_tokens(bad.corrupted).shape[1]
    with pytest.raises(SpecError, match=f"corrupted: the clean prompt is {n_clean} tokens and the "
                                        f"corrupted prompt is {n_bad} tokens"):
        run(model, bad)


def test_multi_token_answer_is_refused(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    bad = AnalysisSpec(kind="activation_patching", model=str(tiny_gpt2_dir), clean=CLEAN,
                       corrupted=CORRUPTED, answer=" Constantinople", wrong=" John")
    with pytest.raises(SpecError, match="answer: ' Constantinople' is .* tokens .* exactly one"):
        run(model, bad)


def test_prompts_that_do_not_separate_the_answers_are_refused(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    same = AnalysisSpec(kind="activation_patching", model=str(tiny_gpt2_dir), clean=CLEAN,
                        corrupted=CLEAN, answer=" Mary", wrong=" John")
    with pytest.raises(SpecError, match="do not separate the answers"):
        run(model, same)


def test_progress_is_reported_per_batch_and_cancel_leaves_the_model_intact(tiny_gpt2_dir):
    model = models.load(str(tiny_gpt2_dir))
    tokens = model.bridge.to_tokens(CLEAN)
    with torch.no_grad():
        before = model.bridge(tokens)
    reports = []
    run(model, spec(tiny_gpt2_dir, granularity="head_out_by_pos"),
        progress=lambda f, m: reports.append((f, m)))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("patched" in m for _, m in reports)

    def cancel(fraction, message):
        if "patched" in message:
            raise Cancelled()

    with pytest.raises(Cancelled):
        run(model, spec(tiny_gpt2_dir, granularity="resid_pre", layer=1), progress=cancel)
    with torch.no_grad():  # no block left skipped, no hook left behind
        torch.testing.assert_close(model.bridge(tokens), before, rtol=0, atol=0)


def test_stories260k_patches_end_to_end(stories260k_dir):
    ref = str(stories260k_dir / "stories260K.bin")
    model = models.load(ref)
    pair = dict(clean="Lily and Tim went to the park. Tim gave the ball to",
                corrupted="Lily and Tim went to the park. Lily gave the ball to",
                answer=" Lily", wrong=" Tim")
    cfg = model.bridge.cfg
    result = run(model, AnalysisSpec(kind="activation_patching", model=ref, granularity="all",
                                     layer=cfg.n_layers - 1, **pair))
    table = result.tables["effects"]
    assert result.meta["resumed"]
    assert len(table) == 5 * result.meta["n_tokens"]
    assert np.isfinite(table.value).all()
    post = table[(table.granularity == "resid_post") & (table.layer == cfg.n_layers - 1)]
    assert post.value.iloc[-1] == pytest.approx(1.0, abs=1e-4)
    heads = run(model, AnalysisSpec(kind="activation_patching", model=ref, granularity="head_k",
                                    **pair)).tables["effects"]
    assert len(heads) == cfg.n_layers * cfg.n_key_value_heads


def test_ioi_resid_patching_localises_to_the_names_on_the_embedded_model():
    """IOI: the effect lives at the names (early layers) and moves to the final position."""
    folder = REPO_ROOT / "data" / "models" / "tiny-circuits"
    if not (folder / "config.json").is_file():
        pytest.skip("the embedded model data/models/tiny-circuits is absent (not trained yet)")
    prompts = json.loads((REPO_ROOT / "data" / "prompts.json").read_text())["ioi"][0]
    model = models.load(str(folder))
    ioi = {k: prompts[k] for k in ("clean", "corrupted", "answer", "wrong")}
    result = run(model, AnalysisSpec(kind="activation_patching", model=str(folder), **ioi))
    table = result.tables["effects"]
    clean, corrupted = result.meta["clean_tokens"], result.meta["corrupted_tokens"]
    names = {prompts["answer"].strip(), prompts["wrong"].strip()}
    name_positions = {i for i, t in enumerate(clean) if t.strip() in names}
    name_positions |= {i for i, t in enumerate(corrupted) if t.strip() in names}
    allowed = name_positions | {len(clean) - 1}
    top = table.reindex(table.value.abs().sort_values(ascending=False).index).head(3)
    assert set(top.position) <= allowed, (top, allowed)
    assert result.meta["clean_baseline"] > result.meta["corrupted_baseline"]
