"""The intervals of a set's summaries: exact Student t for plain means, Wilson for
accuracies, a paired delta-method interval for a ratio of means (held to a seeded bootstrap
over the same examples), and one measurement shown as one (n = 1, no interval)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analyses.core.summary import t975
from analyses.kinds.sets import SUMMARIES, summary_table

Z = stats.norm.ppf(0.975)


@pytest.mark.parametrize("df", [1, 3, 35, 119, 500, 2000])
def test_the_t_quantile_is_students_exact_one_at_every_df(df):
    assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9)
    assert np.isnan(t975(0))


def paired_examples(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patching triples like real prompts': each example's logit scale varies a lot, and its
    clean, corrupted and patched logit differences move with it (what pairing exploits)."""
    rng = np.random.default_rng(seed)
    scale = rng.gamma(4.0, 2.5, n)  # [n] each prompt's logit-difference scale, ~10 +- 5
    corrupted = -0.3 * scale + rng.normal(0, 0.2, n)
    clean = scale + rng.normal(0, 0.2, n)
    patched = corrupted + 0.1 * (clean - corrupted) + rng.normal(0, 0.05, n)  # restores ~10%
    effects = pd.DataFrame({"example": np.arange(n), "granularity": "head_out", "layer": 0, "position": -1,
                            "head": 0, "n_tokens": 12, "raw": patched})
    examples = pd.DataFrame({"example": np.arange(n), "clean_baseline": clean, "corrupted_baseline": corrupted})
    return effects, examples


def bootstrap_ratio(effects: pd.DataFrame, examples: pd.DataFrame, resamples: int = 2000, seed: int = 0):
    """A seeded percentile bootstrap of (mean patched − mean corrupted) / (mean clean − mean
    corrupted): examples resampled with their own baselines."""
    p = effects["raw"].to_numpy()
    clean, corrupted = examples["clean_baseline"].to_numpy(), examples["corrupted_baseline"].to_numpy()
    idx = np.random.default_rng(seed).integers(0, len(p), (resamples, len(p)))  # [resample, n]
    ratios = (p[idx].mean(1) - corrupted[idx].mean(1)) / (clean[idx].mean(1) - corrupted[idx].mean(1))
    return np.percentile(ratios, [2.5, 97.5])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_normalised_mean_has_the_paired_interval_a_bootstrap_finds(seed):
    effects, examples = paired_examples(200, seed)
    row = summary_table(effects, SUMMARIES["activation_patching"]["effects"], examples).iloc[0]
    p, c, g = effects["raw"], examples["corrupted_baseline"], examples["clean_baseline"]
    assert row["mean"] == pytest.approx((p.mean() - c.mean()) / (g.mean() - c.mean()), rel=1e-12)
    low, high = bootstrap_ratio(effects, examples)
    width = high - low
    assert row["ci_high"] - row["ci_low"] == pytest.approx(width, rel=0.15)
    assert abs(row["ci_low"] - low) < 0.15 * width and abs(row["ci_high"] - high) < 0.15 * width
    assert row["interval"] == "paired delta" and row["n"] == 200


def test_a_negative_gap_keeps_the_interval_in_order():
    effects, examples = paired_examples(50, 3)
    examples[["clean_baseline", "corrupted_baseline"]] = examples[["corrupted_baseline", "clean_baseline"]]
    row = summary_table(effects, SUMMARIES["activation_patching"]["effects"], examples).iloc[0]
    assert row["ci_low"] < row["mean"] < row["ci_high"]


def steering_effects(top1: list[float], kl: float) -> pd.DataFrame:
    n = len(top1)
    return pd.DataFrame({"example": np.arange(n), "layer": 1, "coeff": 0.0, "ablated": False,
                         "metric": np.linspace(-1, 3, n), "top1": top1, "kl": kl})


def test_an_accuracy_gets_wilsons_interval():
    """The ends are where the score test's |p̂ − p| / √(p(1 − p)/n) equals z, the interval's
    definition; all-correct examples still leave room below 1 (a t interval gives [1, 1])."""
    for top1 in ([1.0] * 9 + [0.0], [1.0] * 20, [0.0] * 3 + [1.0] * 2 + [np.nan]):
        summary = summary_table(steering_effects(top1, 0.0), SUMMARIES["steering"]["effects"], pd.DataFrame())
        row = summary[summary["quantity"] == "top1"].iloc[0]
        values = np.array(top1)[np.isfinite(top1)]
        n, share = len(values), values.mean()
        assert row["n"] == n and row["mean"] == pytest.approx(share) and row["interval"] == "wilson"
        for end in (row["ci_low"], row["ci_high"]):
            if 0 < end < 1:
                assert abs(share - end) / np.sqrt(end * (1 - end) / n) == pytest.approx(Z, rel=1e-6)
        assert 0 <= row["ci_low"] < row["ci_high"] <= 1
    assert row["ci_low"] > 0.05  # 2 of 5


def test_a_quantity_measured_once_per_run_is_one_measurement_not_n_examples():
    summary = summary_table(steering_effects([1.0] * 30, 0.25), SUMMARIES["steering"]["effects"], pd.DataFrame())
    kl = summary[summary["quantity"] == "kl"].iloc[0]
    assert kl["mean"] == 0.25 and kl["n"] == 1 and kl["interval"] == "single"
    assert np.isnan(kl["sem"]) and np.isnan(kl["ci_low"]) and np.isnan(kl["ci_high"])
    metric = summary[summary["quantity"] == "metric"].iloc[0]
    half = stats.t.ppf(0.975, 29) * np.linspace(-1, 3, 30).std(ddof=1) / np.sqrt(30)
    assert metric["interval"] == "t" and metric["ci_high"] - metric["mean"] == pytest.approx(half)


def test_a_once_per_run_quantity_that_varies_between_examples_is_refused():
    effects = steering_effects([1.0] * 4, 0.25)
    effects.loc[2, "kl"] = 0.5
    with pytest.raises(ValueError, match="kl"):
        summary_table(effects, SUMMARIES["steering"]["effects"], pd.DataFrame())


@pytest.mark.parametrize("keys", [["layer"], ["layer", "part", "neuron"]])
def test_plain_means_of_every_group_at_once_equal_the_group_by_group_t_intervals(keys):
    """`summarise_means` (one grouped pass) against `summarise` with `mean_interval` (numpy,
    one group at a time): groups of one, groups whose values are all NaN or infinite, a NaN
    key, and float32 values."""
    from analyses.core.summary import mean_interval, summarise, summarise_means

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"example": np.arange(n) % 37, "layer": rng.integers(0, 5, n),
                          "part": rng.choice(["neuron", "rest", "bias"], n),
                          "neuron": rng.integers(-1, 30, n).astype(float),
                          "value": rng.normal(0, 3, n).astype(np.float32)})
    frame.loc[[3, 17], "neuron"] = np.nan
    frame.loc[[5, 9, 11], "value"] = [np.nan, np.inf, -np.inf]
    frame.loc[n] = {"example": 0, "layer": 9, "part": "bias", "neuron": 99.0, "value": np.nan}  # all NaN
    frame.loc[n + 1] = {"example": 0, "layer": 8, "part": "rest", "neuron": 98.0, "value": 1.5}  # alone
    ours = summarise_means(frame, keys, "value")
    theirs = summarise(frame, keys, lambda part: mean_interval(part["value"].to_numpy()))
    assert len(ours) == len(theirs) > 5
    pd.testing.assert_frame_equal(ours, theirs, rtol=1e-12, atol=1e-12)
    assert {0, 1} <= set(ours["n"])  # the all-NaN and the single-value groups are there
def test_plain_means_of_every_group_at_once_equal_one_group_at_a_time():
    """`summarise_means` (grouped reductions) against `summarise` calling `mean_interval` per
    group: NaN and inf dropped, one-value and empty groups, a missing key as its own group."""
    from analyses.core.summary import mean_interval, summarise, summarise_means

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"node": rng.choice(["head", "mlp", "q"], n), "layer": rng.integers(0, 4, n),
                          "position": rng.integers(-1, 5, n).astype(float), "atp": rng.normal(size=n)})
    frame.loc[rng.random(n) < 0.1, "atp"] = np.nan
    frame.loc[3, "atp"] = np.inf
    frame.loc[7, "position"] = np.nan  # a missing key
    frame = pd.concat([frame, pd.DataFrame({"node": ["k", "v", "v"], "layer": [9, 9, 9], "position": [0.0, 0.0, 0.0],
                                            "atp": [1.5, np.nan, np.nan]})], ignore_index=True)  # n = 1, n = 0
    keys = ["node", "layer", "position"]
    got = summarise_means(frame, keys, "atp")
    expected = summarise(frame, keys, lambda part: mean_interval(part["atp"].to_numpy()))
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-12)
