"""`features` over a prompt set: each latent pooled over the set (`set_latents`) held to a numpy
re-derivation — every example's TopK code computed by numpy from the site's hooks, pooled by
hand — and to the per-example activations the same run lists; each example equal to its own
single-prompt run (rows of one length share a forward)."""
import json

import numpy as np
import pandas as pd
import pytest
from latent_helpers import numpy_code, site_value

from analyses import AnalysisSpec
from analyses.core.datasets import PromptSet
from analyses.core.latent_links import latent_link
from analyses.dictionaries import density, readout
from analyses.kinds import features
from analyses.kinds.tokens import prompt_tokens, token_texts
from analyses.runtime.execute import execute

pytestmark = pytest.mark.usefixtures("private_cache")

ROWS = (
    {"prompt": "When Mary and John went to the store, John gave a drink to"},
    {"prompt": "The capital of France is"},
    {"prompt": "The capital of Spain is"},  # the same length as the row above: one batch
    {"clean": "When Tom and Anna went to the park, Anna gave a ball to", "corrupted": "x", "answer": " Tom",
     "wrong": " Anna"},  # a pair row serves its clean prompt
    {"prompt": "The capital of France is"},  # a repeated prompt is its own example
    {"answer": " Paris"},  # no prompt: skipped, named
)
K = 16  # the shipped dictionaries' k
SMALL = PromptSet(name="small", rows=ROWS)


@pytest.fixture(autouse=True)
def known_densities(monkeypatch, tmp_path):
    """Densities as a known vector (measuring them reads 100k tokens): the table must carry them."""
    monkeypatch.setenv("ANALYSES_ACTIVATIONS", str(tmp_path / "activations"))
    monkeypatch.setattr(density, "firing_rates", lambda loaded, d, **_: np.linspace(0, 1, d.coder.num_latents))


def numpy_codes_of_examples(embedded, d, prompts: list[str]) -> list[np.ndarray]:
    """Each prompt's dense code [pos, latent] after BOS, by numpy from the site's input hook."""
    out = []
    for prompt in prompts:
        x = site_value(embedded.bridge, d.site, prompt_tokens(embedded.bridge, prompt), d.site.input_hook)
        out.append(numpy_code(d.coder, x)[1:])
    return out


def numpy_pooled(codes: list[np.ndarray], examples: list[int]) -> pd.DataFrame:
    """Per latent firing anywhere: examples, positions, mean and max where > 0, by plain loops."""
    rows = []
    n_positions = sum(c.shape[0] for c in codes)
    for latent in range(codes[0].shape[1]):
        values = [c[:, latent] for c in codes]
        fired = [v[v > 0] for v in values]
        if not any(len(f) for f in fired):
            continue
        peak = max(v.max() for v in values)
        where = next((examples[e], int(np.argmax(v)) + 1) for e, v in enumerate(values) if v.max() == peak)
        rows.append({"latent": latent, "n_examples": sum(len(f) > 0 for f in fired),
                     "n_positions": sum(len(f) for f in fired), "mean_value": np.concatenate(fired).mean(),
                     "max_value": peak, "max_example": where[0], "max_position": where[1],
                     "share_of_examples": sum(len(f) > 0 for f in fired) / len(codes),
                     "share_of_positions": sum(len(f) for f in fired) / n_positions})
    return pd.DataFrame(rows).set_index("latent")


def numpy_scores(bridge, d) -> np.ndarray:
    """[latent, vocab] direct logit effect per unit: the decoder row (through W_O for hook_z),
    centred (LayerNorm), times ln_final's weight, times W_U."""
    rows = d.coder.W_dec.detach().double().numpy()
    if d.site.kind == "attn":
        W_O = bridge.blocks[d.site.layer].attn.W_O.detach().double().numpy()  # [head, d_head, d_model]
        rows = sum(rows[:, h * W_O.shape[1]:(h + 1) * W_O.shape[1]] @ W_O[h] for h in range(W_O.shape[0]))
    rows = rows - rows.mean(-1, keepdims=True)
    return (rows * bridge.ln_final.weight.detach().double().numpy()) @ bridge.W_U.detach().double().numpy()


def run_set(embedded, site: str, top_k: int):
    spec = AnalysisSpec(kind="features", dictionary=site, dataset=SMALL.reference, top_k=top_k)
    return features.run_set(embedded, spec, SMALL)


@pytest.mark.parametrize("site", ["blocks.1.hook_resid_post", "blocks.0.attn.hook_z", "blocks.1.mlp"])
def test_set_latents_equal_numpy_pooling_of_every_examples_code(embedded, site):
    result = run_set(embedded, site, top_k=3)
    d = readout.load_for(embedded, "default", site)
    examples = result.tables["examples"]
    assert list(examples["example"]) == [0, 1, 2, 3, 4]
    skipped = result.tables["skipped"]
    assert list(skipped["example"]) == [5] and "prompt" in skipped["reason"].iloc[0]
    codes = numpy_codes_of_examples(embedded, d, list(examples["prompt"]))
    expected = numpy_pooled(codes, list(examples["example"]))
    table = result.tables["set_latents"].set_index("latent")
    # every latent that fires after BOS in any example, whatever the rows' top_k shows
    assert set(table.index) == set(expected.index)
    mine = table.loc[expected.index]
    for column in ("n_examples", "n_positions", "max_position"):
        np.testing.assert_array_equal(mine[column], expected[column], err_msg=column)
    # the first of two equal prompts may be either one: the value at the named place is the max
    for column in ("mean_value", "max_value", "share_of_examples", "share_of_positions"):
        np.testing.assert_allclose(mine[column], expected[column], rtol=1e-4, atol=1e-5, err_msg=column)
    for latent, row in mine.iterrows():
        where = list(examples["example"]).index(row["max_example"])
        assert codes[where][row["max_position"] - 1, latent] == pytest.approx(row["max_value"], rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(mine["share_x_mean"], mine["share_of_examples"] * mine["mean_value"])
    assert result.tables["set_latents"]["share_x_mean"].is_monotonic_decreasing  # frequent and strong first
    np.testing.assert_allclose(mine["density"], np.linspace(0, 1, d.coder.num_latents)[expected.index])
    # logit effects: the 5 most promoted and suppressed tokens, and the top score
    scores = numpy_scores(embedded.bridge, d)[expected.index]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    bottom = np.argsort(scores, axis=1, kind="stable")[:, :5]
    assert [json.loads(c) for c in mine["promotes"]] == token_texts(embedded.bridge, top).tolist()
    assert [json.loads(c) for c in mine["suppresses"]] == token_texts(embedded.bridge, bottom).tolist()
    np.testing.assert_allclose(mine["top_promote_score"], scores.max(1), rtol=1e-4, atol=1e-5)
    assert list(mine["dashboard"]) == [latent_link("default", site, int(v)) for v in expected.index]


def test_with_every_firing_latent_listed_set_latents_pool_the_activations_table(embedded):
    """With top_k = k the per-example activations hold each whole code: pooling them (pandas)
    gives the same table, and a smaller top_k changes the rows' tables, never the pooling."""
    site = "blocks.1.hook_resid_post"
    full, shown = run_set(embedded, site, top_k=K), run_set(embedded, site, top_k=3)
    acts = full.tables["activations"]
    after = acts[acts["position"] >= 1]
    pooled = after.groupby("latent").agg(n_examples=("example", "nunique"), n_positions=("value", "size"),
                                         mean_value=("value", "mean"), max_value=("value", "max"))
    table = full.tables["set_latents"].set_index("latent").loc[pooled.index]
    np.testing.assert_array_equal(table[["n_examples", "n_positions"]], pooled[["n_examples", "n_positions"]])
    np.testing.assert_allclose(table[["mean_value", "max_value"]], pooled[["mean_value", "max_value"]], rtol=1e-12)
    pd.testing.assert_frame_equal(full.tables["set_latents"], shown.tables["set_latents"])
    assert shown.tables["activations"]["rank"].max() == 3 and len(shown.tables["activations"]) < len(acts)


def test_each_example_equals_its_single_prompt_run(embedded):
    site = "blocks.1.mlp"
    result = run_set(embedded, site, top_k=5)
    for example, prompt in result.tables["examples"][["example", "prompt"]].itertuples(index=False):
        single = features.run(embedded, AnalysisSpec(kind="features", prompt=prompt, dictionary=site, top_k=5))
        for name in ("activations", "latents", "errors"):
            part = result.tables[name]
            part = part[part["example"] == example].drop(columns=["example", "n_tokens"], errors="ignore")
            pd.testing.assert_frame_equal(part.reset_index(drop=True), single.tables[name],
                                          check_exact=False, rtol=1e-4, atol=1e-5)


def test_a_set_run_goes_through_execute_and_draws_its_figures(embedded, monkeypatch):
    from analyses.runtime import datasets

    monkeypatch.setattr(datasets, "resolve", lambda name: SMALL)
    spec = AnalysisSpec(kind="features", dictionary="blocks.1.hook_resid_post", dataset=SMALL.reference)
    result = execute(spec).result
    assert result.meta["n_examples"] == 5 and result.meta["n_skipped"] == 1
    figures = result.figures()
    assert list(figures) == ["set_latents", "set_top"]
    scatter = figures["set_latents"]
    assert "examples it fires in" in scatter.layout.xaxis.title.text
    assert "mean activation where it fires" in scatter.layout.yaxis.title.text
    n_points = sum(len(trace.x) for trace in scatter.data)
    assert n_points == len(result.tables["set_latents"])
    bars = figures["set_top"]
    top = result.tables["set_latents"].head(20)
    np.testing.assert_allclose(bars.data[0].x, top["share_x_mean"])


def test_pooling_by_hand_made_codes_counts_places_and_finds_the_first_max():
    """The pooling alone, on codes written by hand: zeros (fewer than k fired) are not firings,
    a latent twice in one example counts one example, and a tie keeps the first place."""
    from analyses.kinds import features_set

    values_a = np.array([[2.0, 1.0], [3.0, 0.0]])  # [pos, k] after BOS
    latents_a = np.array([[5, 7], [5, 9]])  # latent 9's slot did not fire
    values_b = np.array([[3.0, 0.5]])
    latents_b = np.array([[5, 8]])
    codes = [(0, values_a, latents_a, ["a", "b"]), (3, values_b, latents_b, ["c"])]
    stats = features_set.latent_statistics(features_set.firings(codes, first=1), 2, 3).set_index("latent")
    assert sorted(stats.index) == [5, 7, 8]  # 9 never fired
    assert stats.loc[5, "n_examples"] == 2 and stats.loc[5, "n_positions"] == 3
    assert stats.loc[5, "mean_value"] == pytest.approx(8 / 3) and stats.loc[5, "max_value"] == 3.0
    # 3.0 twice: example 0 at its second position (1 + BOS) comes first
    assert (stats.loc[5, "max_example"], stats.loc[5, "max_position"], stats.loc[5, "max_token"]) == (0, 2, "b")
    assert stats.loc[7, "share_of_examples"] == 0.5 and stats.loc[7, "share_of_positions"] == pytest.approx(1 / 3)
    empty = features_set.set_latents_table(None, None, [(0, np.zeros((2, 2)), latents_a, ["a", "b"])], 1,
                                           np.zeros(10), lambda latents: [])
    assert empty.empty and list(empty.columns) == list(features_set.COLUMNS)
