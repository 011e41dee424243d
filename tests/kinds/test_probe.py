"""Linear probes and GCAV steering, each held against an independent re-derivation: the
probe against a Newton fit of the same L2 logistic objective in plain numpy on activations
read one prompt at a time, its interval against Wilson's formula written out, GCAV's
strength against the probe's probability of the steered residual read back from the model,
and the shipped concept sets read at ≥ 0.9 held-out accuracy by the embedded model."""
import math

import numpy as np
import pytest
import torch

from analyses import AnalysisSpec
from analyses.core import datasets as ds
from analyses.core.errors import SpecError
from analyses.kinds import linear_probe, probe, steering
from analyses.kinds.interventions import cav, generation, vectors
from analyses.kinds.tokens import prompt_tokens
from analyses.runtime import models
from conftest import TINY_ARCHS

pytestmark = pytest.mark.usefixtures("private_cache")

FRANCE, GERMANY = "The capital of France is", "The capital of Germany is"
PRESET = dict(prompt=FRANCE, positive=GERMANY, negative=FRANCE, layer="2", answer=" Berlin", wrong=" Paris")


def newton_logistic(x: np.ndarray, y: np.ndarray, c: float = linear_probe.C, steps: int = 50):
    """argmin ½‖w‖² + C Σ log(1 + exp(−s·(w·x + b))) (s = ±1; b unpenalised), the objective of
    scikit-learn's L2 LogisticRegression, by Newton's method in float64."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros(xb.shape[1])
    penalty = np.eye(xb.shape[1])
    penalty[-1, -1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-xb @ theta))
        gradient = penalty @ theta + c * xb.T @ (p - y)
        hessian = penalty + c * (xb.T * (p * (1 - p))) @ xb
        theta -= np.linalg.solve(hessian, gradient)
    return theta[:-1], theta[-1]


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    centre = (k + z * z / 2) / (n + z * z)
    half = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return centre - half, centre + half


def small_set(n_per_class: int = 12) -> ds.PromptSet:
    rows = ds.shipped("capital_concept").rows
    ones = [r for r in rows if r["label"] == "1"][:n_per_class]
    zeros = [r for r in rows if r["label"] == "0"][:n_per_class]
    return ds.PromptSet(name="small", rows=tuple(ones + zeros))


# --------------------------------------------------------------------------- the math alone

def test_the_probe_is_the_l2_logistic_optimum_a_newton_fit_finds():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0.3, 1, (40, 6)), rng.normal(-0.3, 1, (40, 6))])
    y = np.array([1] * 40 + [0] * 40)
    found = linear_probe.fit(x, y, seed=0)
    w, b = newton_logistic(x, y)
    np.testing.assert_allclose(found.weight, w, rtol=1e-3, atol=1e-4)
    assert found.bias == pytest.approx(b, abs=1e-4)
    np.testing.assert_allclose(found.probability(x), 1 / (1 + np.exp(-(x @ w + b))), atol=1e-5)
    with pytest.raises(ValueError, match="both classes"):
        linear_probe.fit(x[:5], np.ones(5, dtype=int))


def test_gcav_strength_lands_on_the_target_and_never_pushes_the_wrong_way():
    rng = np.random.default_rng(1)
    found = linear_probe.Probe(weight=rng.normal(size=8), bias=0.3)
    x = rng.normal(size=(50, 8)) * 2
    for target in (0.01, 0.2, 0.5, 0.9, 0.999):
        exact = linear_probe.strength(found, x, target, clip=False)
        steered = x + exact[:, None] * found.direction[None, :]
        np.testing.assert_allclose(found.probability(steered), target, atol=1e-9)
        clipped = linear_probe.strength(found, x, target)
        after = found.probability(x + clipped[:, None] * found.direction[None, :])
        before = found.probability(x)
        if target >= 0.5:  # adding: up to the target, never down
            assert (clipped >= 0).all()
            np.testing.assert_allclose(after, np.maximum(before, target), atol=1e-9)
        else:  # removing: down to the target, never up
            assert (clipped <= 0).all()
            np.testing.assert_allclose(after, np.minimum(before, target), atol=1e-9)
        torch_c = linear_probe.strength_torch(torch.tensor(found.weight), found.bias,
                                              torch.tensor(x), target).numpy()
        np.testing.assert_allclose(torch_c, clipped, atol=1e-9)
    with pytest.raises(ValueError, match="strictly between"):
        linear_probe.strength(found, x, 1.0)


# --------------------------------------------------------------------------- the kind

def test_probe_layers_equal_a_newton_fit_on_activations_read_one_prompt_at_a_time(embedded):
    bridge = embedded.bridge
    prompt_set = small_set(16)
    result = probe.run_set(embedded, AnalysisSpec(kind="probe", dataset="capital_concept", seed=3), prompt_set)
    layers, examples = result.tables["layers"], result.tables["examples"]
    labels = examples["label"].to_numpy()
    train = (examples["split"] == "train").to_numpy()
    assert train.sum() == 24 and (~train).sum() == 8
    assert (labels[~train] == 1).sum() == 4  # stratified
    for layer in range(bridge.cfg.n_layers):
        name = f"blocks.{layer}.hook_resid_post"
        x = np.stack([bridge.run_with_cache(prompt_tokens(bridge, text), names_filter=[name])[1][name][0, -1]
                      .double().numpy() for text in examples["prompt"]])  # [example, d_model]
        w, b = newton_logistic(x[train], labels[train])
        row = layers.iloc[layer]
        assert row["norm"] == pytest.approx(np.linalg.norm(w), rel=1e-3)
        assert row["bias"] == pytest.approx(b, abs=1e-3 * max(1, abs(b)))
        correct = int(((x[~train] @ w + b > 0).astype(int) == labels[~train]).sum())
        assert row["accuracy"] == correct / 8
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson(correct, 8), abs=1e-9)
        diff = x[train][labels[train] == 1].mean(0) - x[train][labels[train] == 0].mean(0)
        cosine = w @ diff / np.linalg.norm(w) / np.linalg.norm(diff)
        assert row["cosine_mean_diff"] == pytest.approx(cosine, abs=1e-3)
        assert row["agrees"] == (row["cosine_mean_diff"] >= probe.AGREEMENT)
        direction = result.tables["directions"].query("layer == @layer")
        np.testing.assert_allclose(direction["probe"], w / np.linalg.norm(w), atol=1e-3)
        np.testing.assert_allclose(direction["mean_diff"], diff / np.linalg.norm(diff), atol=1e-5)


def test_the_embedded_model_reads_the_shipped_name_concept_at_its_best_layer(embedded):
    result = probe.run_set(embedded, AnalysisSpec(kind="probe", dataset="name_concept"), ds.shipped("name_concept"))
    layers = result.tables["layers"]
    assert layers["accuracy"].max() >= 0.9
    assert layers["n_test"].iloc[0] == 60 and result.meta["best_accuracy"] == layers["accuracy"].max()
    assert (layers["ci_low"] <= layers["accuracy"]).all() and (layers["accuracy"] <= layers["ci_high"]).all()


@pytest.mark.parametrize("name", ["capital_concept", "name_concept"])
def test_a_shipped_concept_sets_label_cannot_be_read_from_its_length(embedded, name):
    """Position embeddings make a text's length readable at its last token: the two classes
    must have the same token lengths, text for text (else a probe reads the length)."""
    from collections import Counter

    rows = ds.shipped(name).rows
    lengths = {label: Counter(int(prompt_tokens(embedded.bridge, r["prompt"]).shape[1])
                              for r in rows if r["label"] == label) for label in ("0", "1")}
    assert lengths["0"] == lengths["1"] and sum(lengths["1"].values()) == len(rows) // 2


@pytest.mark.parametrize("arch", TINY_ARCHS[:3])
def test_probe_and_cav_steering_run_on_every_tiny_architecture(tiny_model_dir, arch):
    model = models.load(str(tiny_model_dir(arch)))
    for site in ("resid_post", "mlp_out"):
        result = probe.run_set(model, AnalysisSpec(kind="probe", dataset="capital_concept", site=site),
                               small_set(8))
        assert len(result.tables["layers"]) == model.bridge.cfg.n_layers
        assert result.tables["layers"]["accuracy"].between(0, 1).all()
    steered = steering.run(model, AnalysisSpec(kind="steering", prompt="The capital of", positive="Paris is big",
                                               negative="a dog ran", method="cav", layer="1", coeff="1",
                                               p_target="0.8", max_new_tokens=3))
    table = steered.tables["cav"]
    assert table["p_after"].iloc[0] == pytest.approx(max(0.8, table["p_before"].iloc[0]), abs=1e-4)


def test_probe_and_gcav_run_on_stories260k(stories260k_dir):
    model = models.load(str(stories260k_dir / "stories260K.bin"))
    result = probe.run_set(model, AnalysisSpec(kind="probe", dataset="name_concept"), small_set(10))
    assert len(result.tables["layers"]) == model.bridge.cfg.n_layers
    steered = steering.run(model, AnalysisSpec(kind="steering", prompt="Once upon a time, Lily saw a",
                                               positive="Lily was happy", negative="Lily was sad", method="cav",
                                               layer="2", coeff="1", p_target="0.9", max_new_tokens=3))
    table = steered.tables["cav"]
    assert table["p_after"].iloc[0] == pytest.approx(max(0.9, table["p_before"].iloc[0]), abs=1e-4)


def test_a_set_without_labels_is_refused_and_a_bad_label_names_its_line(embedded):
    with pytest.raises(SpecError, match="label"):
        probe.run(embedded, AnalysisSpec(kind="probe", dataset="capital_concept"))
    unlabelled = ds.PromptSet(name="x", rows=tuple({"prompt": f"text {i}"} for i in range(10)))
    with pytest.raises(SpecError, match="at least"):
        probe.run_set(embedded, AnalysisSpec(kind="probe", dataset="capital_concept"), unlabelled)
    with pytest.raises(ds.DatasetError, match="line 2: label must be 0 or 1"):
        ds.parse(b'{"prompt": "a", "label": 1}\n{"prompt": "b", "label": 2}\n', "x.jsonl")
    assert ds.parse(b'{"prompt": "a", "label": 1}\n', "x.jsonl").rows == ({"prompt": "a", "label": "1"},)
    assert ds.parse(b"prompt,label\na,0\n", "x.csv").rows == ({"prompt": "a", "label": "0"},)


def test_only_labelled_sets_serve_the_probe():
    from analyses.core.catalogue import kind

    assert ds.serves(kind("probe"), ds.shipped("name_concept").fields)
    assert not ds.serves(kind("probe"), ds.shipped("ioi").fields)
    assert not ds.serves(kind("dla"), ds.shipped("name_concept").fields)  # no answer


# --------------------------------------------------------------------------- steering, method=cav

def test_gcav_steered_residual_reads_the_target_probability(embedded):
    """The residual entering block 2 with GCAV's addition, read back by a hook of the test's
    own after the steering hook: the probe's probability there is the target (to 1e-4) at
    every position after BOS where the probe was on the other side of it, else unchanged."""
    bridge = embedded.bridge
    spec = AnalysisSpec(kind="steering", method="cav", p_target="0.9,0.05", coeff="1", max_new_tokens=4, **PRESET)
    plan = steering.prepare(bridge, spec)
    concept = plan.probes[2]
    prompt = prompt_tokens(bridge, "Once upon a time, the capital of France is")
    site = vectors.resid_hook(2)
    for cell in (c for c in plan.cells if c.p_target is not None):
        before, after = [], []
        where = vectors.where_added("all", prompt.shape[1])

        def hooks(counter, cell=cell, where=where, before=before, after=after):
            return [(site, cav.capture_hook(before)), *steering.hooks_for(plan, cell, where)(counter),
                    (site, cav.capture_hook(after))]
        generation.forward(bridge, prompt, hooks)
        p_before = concept.probe.probability(before[0][0, 1:].numpy())
        p_after = concept.probe.probability(after[0][0, 1:].numpy())
        bound = np.maximum if cell.p_target >= 0.5 else np.minimum
        np.testing.assert_allclose(p_after, bound(p_before, cell.p_target), atol=1e-4)
        torch.testing.assert_close(after[0][0, 0], before[0][0, 0], rtol=0, atol=0)  # BOS untouched
    result = steering.run_prompt(bridge, plan, spec)
    table = result.tables["cav"]
    assert list(table["p_target"]) == [0.9, 0.05]
    np.testing.assert_allclose(table["p_after"], [max(0.9, table["p_before"][0]), min(0.05, table["p_before"][1])],
                               atol=1e-4)
    last = vectors.read_residuals(bridge, prompt_tokens(bridge, FRANCE), [2])[2][-1].double().numpy()
    expected = (linear_probe.logit(0.9) - concept.probe.logits(last)) / concept.probe.norm
    assert table["strength"][0] == pytest.approx(max(0.0, expected), abs=1e-4)
    assert table["coeff"][0] == pytest.approx(table["strength"][0] / float(concept.vector.norm()))
    effects = result.tables["effects"]
    assert effects["coeff"].isna().sum() == 2 and effects["p_target"].notna().sum() == 2


def test_the_cav_vector_has_mean_diffs_norm_and_the_probes_direction(embedded):
    bridge = embedded.bridge
    positive = [GERMANY, "The capital of Italy is", "Tom went to Berlin with his dog"]
    negative = [FRANCE, "The capital of Spain is", "Tom went to the park with his dog"]
    trained = cav.train(bridge, positive, negative, [1, 2], seed=0)
    mean_diff = vectors.steering_vectors(bridge, "mean_diff", positive, negative, [1, 2])
    for layer in (1, 2):
        x = torch.cat([vectors._texts_residuals(bridge, texts, "positive", [layer], last=True)[layer]
                       for texts in (positive, negative)]).double().numpy()
        w, _ = newton_logistic(x, np.array([1, 1, 1, 0, 0, 0]))
        vector = trained[layer].vector.double().numpy()
        assert np.linalg.norm(vector) == pytest.approx(float(mean_diff[layer].norm()), rel=1e-5)
        np.testing.assert_allclose(vector / np.linalg.norm(vector), w / np.linalg.norm(w), atol=1e-3)


def test_the_preset_with_cav_beside_mean_diff_flips_the_answer(embedded):
    base = dict(PRESET, coeff="0,1", max_new_tokens=4)
    with_cav = steering.run(embedded, AnalysisSpec(kind="steering", method="cav", p_target="0.99", **base))
    effects = with_cav.tables["effects"].set_index(["coeff", "p_target"], drop=False)
    assert effects["metric"].iloc[0] < 0 < effects["metric"].iloc[1]  # Paris, then Berlin at coefficient 1
    assert effects.query("p_target == 0.99")["top_token"].iloc[0] == " Berlin"


@pytest.mark.parametrize("fields, field, words", [
    (dict(PRESET, p_target="0.9"), "p_target", "method=cav"),
    (dict(PRESET, method="cav", p_target="1"), "p_target", "strictly between"),
    (dict(PRESET, method="cav", p_target="0.5,x"), "p_target", ""),
])
def test_bad_gcav_fields_are_refused_naming_the_field(embedded, fields, field, words):
    with pytest.raises(SpecError) as err:
        steering.run(embedded, AnalysisSpec(kind="steering", **fields))
    assert err.value.field == field and words in str(err.value)


def test_gcav_and_probe_results_round_trip_through_the_store():
    import json

    from analyses import compute

    for spec in (AnalysisSpec(kind="steering", method="cav", p_target="0.9", coeff="1", max_new_tokens=3, **PRESET),
                 AnalysisSpec(kind="probe", dataset="name_concept", site="mlp_out")):
        assert AnalysisSpec.from_query(spec.to_query()) == spec
        first, again = compute(spec), compute(spec)
        assert again.meta["cache_hit"]
        for name in first.tables:
            left, right = first.tables[name], again.tables[name]
            assert list(left.columns) == list(right.columns), name
            assert json.loads(left.to_json()) == json.loads(right.to_json()), name
