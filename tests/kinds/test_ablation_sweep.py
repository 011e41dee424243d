"""The ablation sweep: every head and MLP knocked out in turn equals the steering kind's
knock-out of that component (on a prompt, on the ioi set, on every tiny architecture), the
resumed passes equal full ones, the set's summary pairs each delta with its own intact run,
and on the ioi set L0H0 alone among the heads is far from zero."""
import numpy as np
import pandas as pd
import pytest

from analyses import AnalysisSpec, compute
from analyses.core.errors import SpecError
from analyses.core.summary import mean_interval, proportion_interval
from analyses.kinds import ablation_sweep, steering
from analyses.runtime import models
from conftest import TINY_ARCHS

pytestmark = pytest.mark.usefixtures("private_cache")

IOI = dict(prompt="When Mary and John went to the store, John gave a drink to", answer=" Mary", wrong=" John")


def sweep(model, **fields) -> pd.DataFrame:
    return ablation_sweep.run(model, AnalysisSpec(kind="ablation_sweep", **fields)).tables["effects"]


def knockout(model, component: str, **fields) -> pd.Series:
    """The steering kind's knock-out of one component: its ablated cell's effects row."""
    effects = steering.run(model, AnalysisSpec(kind="steering", ablate=component, max_new_tokens=1,
                                               **fields)).tables["effects"]
    return effects[effects["ablated"]].iloc[0]


@pytest.fixture(scope="module")
def ioi_sweep():
    return compute(AnalysisSpec(kind="ablation_sweep", dataset="ioi"))


def test_every_head_and_mlp_is_swept_once_beside_the_intact_model(embedded):
    cfg = embedded.bridge.cfg
    effects = sweep(embedded, **IOI)
    assert len(effects) == 1 + cfg.n_layers * (cfg.n_heads + 1)
    assert effects["component"].is_unique
    intact = effects.iloc[0]
    assert intact["component"] == "intact" and intact["delta"] == 0 and intact["layer"] == -1
    mlps = effects[effects["site"] == "mlp"]
    assert list(mlps["component"]) == [f"L{layer}.mlp" for layer in range(cfg.n_layers)]
    assert (mlps["head"] == -1).all()
    np.testing.assert_allclose(effects["delta"], effects["metric"] - intact["metric"], atol=1e-12)


@pytest.mark.parametrize("how", ["mean", "zero"])
def test_each_cell_equals_the_steering_knockout_of_its_component(embedded, how):
    effects = sweep(embedded, **IOI, ablation=how).set_index("component")
    for component in ("L0H0", "L1H3", "L2H7", "L0.mlp", "L2.mlp"):
        expected = knockout(embedded, component, **IOI, ablation=how)
        assert effects.loc[component, "metric"] == pytest.approx(expected["metric"], abs=1e-5), component
        assert effects.loc[component, "top1"] == expected["top1"]
        assert effects.loc[component, "top_token"] == expected["top_token"]


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_each_cell_equals_the_steering_knockout_on_every_architecture(tiny_model_dir, arch):
    model = models.load(str(tiny_model_dir(arch)))
    fields = dict(prompt="When Mary and John went to the store, John gave", answer=" a", wrong=" the")
    effects = sweep(model, **fields).set_index("component")
    for component in ("L0H0", "L1H1", "L0.mlp", "L1.mlp"):
        expected = knockout(model, component, **fields)
        assert effects.loc[component, "metric"] == pytest.approx(expected["metric"], abs=1e-5), component


def test_resumed_passes_equal_full_passes(embedded, monkeypatch):
    resumed = sweep(embedded, **IOI)
    monkeypatch.setattr(ablation_sweep.resume, "reproduces", lambda resumed, full: False)
    full = sweep(embedded, **IOI)
    np.testing.assert_allclose(resumed["metric"], full["metric"], atol=1e-5)


def test_without_a_wrong_token_the_metric_is_the_answers_log_probability(embedded):
    effects = sweep(embedded, prompt=IOI["prompt"], answer=" Mary").set_index("component")
    expected = knockout(embedded, "L0H0", prompt=IOI["prompt"], answer=" Mary")
    assert effects.loc["L0H0", "metric"] == pytest.approx(expected["metric"], abs=1e-5)
    assert (effects["metric"] <= 0).all()  # log-probabilities


def test_on_the_ioi_set_l0h0_alone_among_the_heads_is_far_from_zero(ioi_sweep):
    summary = ioi_sweep.tables["effects_summary"]
    deltas = summary[(summary["quantity"] == "delta") & (summary["site"] == "head")].set_index("component")
    l0h0 = deltas.loc["L0H0"]
    assert l0h0["ci_high"] < -3  # the logit difference mostly gone, and surely so
    others = deltas.drop(index="L0H0")
    assert (others["mean"].abs() < abs(l0h0["mean"]) / 4).all(), others["mean"].abs().max()
    assert ioi_sweep.meta["n_examples"] == 200


def test_the_set_summary_pairs_each_delta_and_gives_top1_wilsons_interval(ioi_sweep):
    effects, summary = ioi_sweep.tables["effects"], ioi_sweep.tables["effects_summary"]
    rows = summary.set_index(["component", "quantity"])
    deltas = effects[effects["component"] == "L1H3"]["delta"].to_numpy()
    expected = mean_interval(deltas)  # the t interval of the per-example (paired) deltas
    got = rows.loc[("L1H3", "delta")]
    assert got["interval"] == "t" and got["n"] == 200
    assert got["ci_low"] == pytest.approx(expected["ci_low"]) and got["ci_high"] == pytest.approx(expected["ci_high"])
    top1 = rows.loc[("L0H0", "top1")]
    expected = proportion_interval(effects[effects["component"] == "L0H0"]["top1"].to_numpy())
    assert top1["interval"] == "wilson" and top1["ci_low"] == pytest.approx(expected["ci_low"])
    assert rows.loc[("intact", "top1"), "mean"] > top1["mean"]


def test_the_set_equals_the_steering_knockout_of_l0h0_on_the_same_set(ioi_sweep):
    knocked = compute(AnalysisSpec(kind="steering", dataset="ioi", ablate="L0H0", max_new_tokens=1))
    expected = knocked.tables["effects"].query("ablated").set_index("example")
    ours = ioi_sweep.tables["effects"].query("component == 'L0H0'").set_index("example")
    assert len(ours) == len(expected) == 200
    np.testing.assert_allclose(ours["metric"], expected.loc[ours.index, "metric"], atol=1e-5)
    np.testing.assert_array_equal(ours["top1"], expected.loc[ours.index, "top1"])
    summary = knocked.tables["effects_summary"].set_index(["quantity", "ablated"])
    mine = ioi_sweep.tables["effects_summary"].set_index(["quantity", "component"])
    assert mine.loc[("metric", "L0H0"), "mean"] == pytest.approx(summary.loc[("metric", True), "mean"], abs=1e-5)


@pytest.mark.parametrize(("fields", "field"), [
    (dict(IOI, answer=" Mary Mary"), "answer"),
    (dict(IOI, wrong=" John John"), "wrong"),
])
def test_bad_answers_are_refused_naming_the_field(embedded, fields, field):
    with pytest.raises(SpecError) as err:
        sweep(embedded, **fields)
    assert err.value.field == field


@pytest.mark.parametrize(("query", "field"), [
    ("prompt=x&answer=%20a&ablation=half", "ablation"),
    ("prompt=x", "answer"),
    ("prompt=x&answer=%20a&ablate=L0H0", "ablate"),
])
def test_bad_specs_are_refused_before_any_model_loads(query, field):
    with pytest.raises(SpecError) as err:
        AnalysisSpec.from_query(f"kind=ablation_sweep&{query}")
    assert err.value.field == field
