"""A kind over a prompt set: each example equals its row's single-prompt run, the summaries
are the examples' means with Student-t intervals (patching normalised like Wang et al., a ratio of
means with its paired interval, held to a bootstrap on the ioi set), and
rows that cannot run are named in `skipped` while the rest run."""
import json

import numpy as np
import pandas as pd
import pytest

from analyses import AnalysisSpec, compute
from analyses.core import datasets as ds
from analyses.core.summary import t975
from analyses.runtime import datasets
from analyses.runtime.models import EMBEDDED_ROOT

pytestmark = pytest.mark.usefixtures("private_cache")

needs_embedded = pytest.mark.skipif(not (EMBEDDED_ROOT / "tiny-circuits" / "config.json").is_file(),
                                    reason="the embedded model data/models/tiny-circuits is missing")



def added(rows) -> str:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return datasets.add_bytes(data, "test.jsonl").reference


IOI = list(ds.shipped("ioi").rows[:6])


@needs_embedded
def test_activation_patching_over_a_set_equals_its_rows_run_one_by_one():
    ref = added(IOI)
    spec = AnalysisSpec(kind="activation_patching", dataset=ref, granularity="head_out")
    result = compute(spec)
    effects, summary = result.tables["effects"], result.tables["effects_summary"]
    assert set(result.tables) == {"effects", "effects_summary", "examples", "skipped"}
    assert sorted(effects.example.unique()) == list(range(len(IOI))) and result.tables["skipped"].empty
    for i, row in enumerate(IOI):
        single = compute(AnalysisSpec(kind="activation_patching", granularity="head_out", **row))
        mine = effects[effects.example == i].drop(columns=["example", "n_tokens"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, single.tables["effects"], check_dtype=False, atol=1e-5)
    # Wang et al.: (mean patched - mean corrupted) / (mean clean - mean corrupted), per head, with
    # the delta method's interval on each example's (patched - corrupted, clean - corrupted)
    examples = result.tables["examples"].set_index("example")
    clean, corrupted = examples.clean_baseline, examples.corrupted_baseline
    for (layer, head), cell in effects.groupby(["layer", "head"]):
        a = cell.raw.to_numpy() - corrupted[cell.example].to_numpy()  # [example]
        b = (clean - corrupted)[cell.example].to_numpy()  # [example]
        row = summary[(summary["layer"] == layer) & (summary["head"] == head)].iloc[0]
        ratio = (cell.raw.mean() - corrupted.mean()) / (clean.mean() - corrupted.mean())
        assert row["mean"] == pytest.approx(ratio, abs=1e-6) and row["interval"] == "paired delta"
        half = t975(len(a) - 1) * np.std((a - ratio * b) / b.mean(), ddof=1) / np.sqrt(len(a))
        assert row.ci_high - row.ci_low == pytest.approx(2 * half, abs=1e-6) and row.n == len(a)


@needs_embedded
@pytest.mark.parametrize("granularity", ["resid_pre", "all", "head_pattern_by_pos", "direct_path"])
def test_rows_patched_together_equal_their_single_prompt_runs(monkeypatch, granularity):
    """Rows of one token length share an engine (two per engine here, so a length's rows span
    several); every example still equals its own single-prompt run, at every position."""
    import analyses.kinds.activation_patching as ap

    monkeypatch.setattr(ap, "GROUP_EXAMPLES", 2)
    rows = list(ds.shipped("ioi").rows[:12])
    layer = {"direct_path": 1}.get(granularity)
    result = compute(AnalysisSpec(kind="activation_patching", dataset=added(rows),
                                  granularity=granularity, layer=layer))
    effects = result.tables["effects"]
    assert result.tables["skipped"].empty and effects.example.nunique() == len(rows)
    assert result.tables["examples"].n_tokens.nunique() > 1  # more than one group of lengths
    for i in (0, 5, 11):
        single = compute(AnalysisSpec(kind="activation_patching", granularity=granularity,
                                      layer=layer, **rows[i]))
        mine = effects[effects.example == i].drop(columns=["example", "n_tokens"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, single.tables["effects"], check_dtype=False, atol=1e-5)
        assert result.tables["examples"].clean_baseline[i] == pytest.approx(
            single.meta["clean_baseline"], abs=1e-5)


@needs_embedded
def test_rows_that_cannot_run_are_skipped_with_their_reason():
    bad = [dict(IOI[0], answer=" Eva Carl"),  # two tokens
           dict(IOI[1], corrupted=IOI[1]["corrupted"] + " again"),  # pair lengths differ
           dict(IOI[2], corrupted=IOI[2]["clean"])]  # no logit gap
    result = compute(AnalysisSpec(kind="activation_patching", dataset=added([*bad, IOI[3]])))
    skipped = result.tables["skipped"]
    assert list(skipped.example) == [0, 1, 2]
    assert "answer" in skipped.reason[0] and "tokens" in skipped.reason[0]
    assert "corrupted" in skipped.reason[1]
    assert "same logit difference" in skipped.reason[2]
    assert set(result.tables["effects"].example) == {3}
    assert result.meta["n_skipped"] == 3 and result.meta["n_examples"] == 1


@needs_embedded
def test_the_ioi_set_finds_the_model_cards_ioi_head_with_an_interval_clear_of_zero():
    """The issue's check: heads whose interval excludes zero include the card's IOI head."""
    result = compute(AnalysisSpec(kind="activation_patching", dataset="ioi", granularity="head_out"))
    summary = result.tables["effects_summary"]
    clear = summary[(summary.ci_low > 0) | (summary.ci_high < 0)]
    assert (0, 0) in set(zip(clear["layer"], clear["head"]))  # the card's IOI head, L0H0
    assert summary.n.max() == result.meta["n_examples"] >= 190
    grid = result.figures()["mean_by_head"].data[0]  # layer x head of the means, centred at 0
    expected = summary.pivot_table(index="layer", columns="head", values="mean").to_numpy()
    np.testing.assert_allclose(np.array(grid.z, dtype=float), expected)
    assert grid.zmin == -grid.zmax and "95% interval" in grid.customdata[0][0]


@needs_embedded
def test_single_prompt_kinds_read_a_pair_sets_clean_prompts():
    ref = added(IOI[:3])
    lens = compute(AnalysisSpec(kind="logit_lens", dataset=ref, top_k=1))
    targets = lens.tables["targets_summary"]
    assert set(targets.target) == {0, 1} and (targets.n == 3).all()  # answer and wrong, each example
    single = compute(AnalysisSpec(kind="logit_lens", prompt=IOI[0]["clean"], top_k=1,
                                  token=f"{IOI[0]['answer']},{IOI[0]['wrong']}"))
    mine = lens.tables["targets"]
    mine = mine[mine.example == 0].drop(columns=["example", "n_tokens", "target"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, single.tables["targets"], check_dtype=False)
    dla = compute(AnalysisSpec(kind="dla", dataset=ref))
    contributions = dla.tables["contributions"]
    by_example = contributions.groupby(["component", "layer", "head"], dropna=False, sort=False)["value"].mean()
    got = dla.tables["contributions_summary"].set_index(["component", "layer", "head"])["mean"]
    np.testing.assert_allclose(got.to_numpy(), by_example.to_numpy(), atol=1e-9)


@needs_embedded
def test_the_set_figure_puts_each_examples_own_value_beside_its_mean():
    result = compute(AnalysisSpec(kind="logit_lens", dataset=added(list(ds.shipped("needle").rows[:4])), top_k=1))
    bars, dots = result.figures()["targets_summary"].data[:2]  # 4 examples: none beyond a t interval
    labels, values = np.array(dots.y), np.array(dots.x)
    assert len(dots.x) == 4 * len(bars.y)  # one dot per example per component: the last position only
    for label, mean in zip(bars.y, bars.x):
        assert values[labels == label].mean() == pytest.approx(mean)
    answer = result.tables["targets_summary"].query("layer == 'final_post' and target == 0")["mean"].item()
    wrong = result.tables["targets_summary"].query("layer == 'final_post' and target == 1")["mean"].item()
    assert answer > 0.5 > wrong  # the model copies the code's first word, not another code word


@needs_embedded
def test_a_position_indexed_set_shows_a_layer_by_position_grid_of_its_commonest_length():
    result = compute(AnalysisSpec(kind="activation_patching", dataset=added(list(ds.shipped("ioi").rows[:20])),
                                  granularity="resid_pre"))
    summary, examples = result.tables["effects_summary"], result.tables["examples"]
    length = int(examples.n_tokens.mode()[0])
    grid = result.figures()["mean_by_position_resid_pre"]
    cells = grid.data[0]
    expected = summary[summary.n_tokens == length].pivot_table(index="layer", columns="position", values="mean")
    np.testing.assert_allclose(np.array(cells.z, dtype=float), expected.to_numpy())
    assert cells.zmin == -cells.zmax  # centred at 0
    first = examples[examples.n_tokens == length].iloc[0]
    tokens = json.loads(first.clean_tokens)
    assert len(tokens) == length and tokens[-1].strip() in grid.layout.xaxis.ticktext[-1]
    assert f"prompts of {length} tokens" in grid.layout.title.text
    assert grid.layout.xaxis.title.text and grid.layout.yaxis.title.text == "layer"


@needs_embedded
def test_the_ioi_sets_head_intervals_are_the_paired_ones_a_bootstrap_finds():
    """Every head's interval on the shipped ioi set against a seeded percentile bootstrap over
    the same examples (2000 resamples, each example with its own baselines)."""
    result = compute(AnalysisSpec(kind="activation_patching", dataset="ioi", granularity="head_out"))
    effects, summary = result.tables["effects"], result.tables["effects_summary"]
    baselines = result.tables["examples"].set_index("example")[["clean_baseline", "corrupted_baseline"]]
    rng = np.random.default_rng(0)
    n = result.meta["n_examples"]
    idx = rng.integers(0, n, (2000, n))  # [resample, example]
    for row in summary.itertuples():
        cell = effects[(effects["layer"] == row.layer) & (effects["head"] == row.head)].sort_values("example")
        paired = baselines.loc[cell["example"]]
        a = cell["raw"].to_numpy() - paired["corrupted_baseline"].to_numpy()  # [example] patched − corrupted
        b = (paired["clean_baseline"] - paired["corrupted_baseline"]).to_numpy()  # clean − corrupted
        low, high = np.percentile(a[idx].mean(1) / b[idx].mean(1), [2.5, 97.5])
        assert row.mean == pytest.approx(a.mean() / b.mean(), abs=1e-9)
        assert abs(row.ci_low - low) < 0.2 * (high - low) and abs(row.ci_high - high) < 0.2 * (high - low), row


def test_a_targets_place_in_its_row_is_its_first_appearance_order_within_its_example():
    """`first_seen_order` (every example at once) against `pd.factorize` example by example,
    with repeated and shared target ids and examples of one line."""
    from analyses.kinds.sets import first_seen_order

    rng = np.random.default_rng(1)
    example = np.repeat(np.arange(60), rng.integers(1, 30, 60))
    token_id = rng.integers(0, 6, len(example))
    frame = pd.DataFrame({"example": example, "token_id": token_id})
    theirs = np.concatenate([pd.factorize(part.token_id)[0] for _, part in frame.groupby("example", sort=False)])
    np.testing.assert_array_equal(first_seen_order(frame.example, frame.token_id), theirs)
