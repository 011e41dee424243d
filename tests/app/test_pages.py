"""Every page under Streamlit's AppTest: default run, preset run, restore from a link,
bad links. Pages run in this process, so the tiny models of conftest (and the
ANALYSES_MODEL_ROOTS the `model_roots` fixture sets) apply to them."""
import base64
import json
import os
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analyses import AnalysisSpec
from analyses.core.catalogue import CATALOGUE
from app import links
from app.routes import DICTIONARIES, HOME, PAGES
from helpers import copy_boxes, page_figures

APP_DIR = Path(__file__).resolve().parents[2] / "app"
MAIN = APP_DIR / "main.py"
DEFAULT_MODEL_CONFIG = APP_DIR.parent / "data" / "models" / "tiny-circuits" / "config.json"
TIMEOUT_S = 180  # the CPU is shared: a model load can take a while
IOI = "When Mary and John went to the store, John gave a drink to"

needs_default_model = pytest.mark.skipif(
    not DEFAULT_MODEL_CONFIG.is_file(),
    reason="the embedded default model is not trained yet (data/models/tiny-circuits/config.json "
           "is missing); the same paths run on a tiny model in the other tests")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test stores results in its own DuckDB file, never in data/cache.duckdb."""
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))


@pytest.fixture(autouse=True)
def known_prompts(tmp_path, monkeypatch):
    """Pages read their examples from a fixed suite here, not the evolving data/prompts.json
    (whose names need not be single tokens of the tiny test models)."""
    from app.components import presets

    suites = {
        "ioi": [{"clean": IOI, "corrupted": IOI.replace("John gave", "Mary gave"),
                 "answer": " Mary", "wrong": " John"}],
        "facts": [{"prompt": "The capital of France is", "answer": " Paris"}],
        "concepts": [{"dataset": "name_concept"}],  # the probe page's (a labelled set)
    }
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(suites))
    monkeypatch.setenv(presets.PROMPTS_ENV, str(path))
    return suites


def open_page(page: str | None = None, query: dict | None = None) -> AppTest:
    """The app after one run of the router, switched to `page` with `query` and run."""
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT_S).run()
    if page is not None:
        at.switch_page(page)
    if query is not None:
        at.query_params = dict(query)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def errors(at: AppTest) -> list[str]:
    return [e.value.replace("\\", "") for e in at.error]


def figures(at: AppTest) -> list[dict]:
    return page_figures(at)


def spec_query(kind: str, model: Path | str, **fields) -> dict:
    spec = AnalysisSpec(kind=kind, model=str(model), **fields)
    return dict(parse_qsl(spec.to_query()))


def ll_query(model: Path | str, **fields) -> dict:
    return spec_query("logit_lens", model, **fields)


def click_preset(at: AppTest, label_start: str, model: Path) -> AppTest:
    """Pick `model` in the sidebar, then click the example whose label starts so."""
    at.text_input(key="_model_input").set_value(str(model)).run()
    assert_clean(at)
    labels = [b.label.replace("\\", "") for b in at.button]
    preset = next((b for b, label in zip(at.button, labels) if label.startswith(label_start)), None)
    assert preset is not None, labels
    preset.click().run()
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.query_params["model"] == str(model)
    return at


def assert_blank(at: AppTest) -> None:
    """A page opened without a link: no error, no figure, a Run button."""
    assert_clean(at)
    assert not at.error or all("embedded default model" in e for e in errors(at))
    assert not figures(at)
    assert any(b.label == "Run" for b in at.button)


def assert_bad_link(at: AppTest) -> None:
    assert_clean(at)
    assert any(e.startswith("This link cannot be opened") for e in errors(at)), errors(at)
    assert not figures(at)


PAIR = {"clean": IOI, "corrupted": IOI.replace("John gave", "Mary gave"), "answer": " Mary",
        "wrong": " John"}


# --------------------------------------------------------------------------- the router

def test_every_registered_kind_has_a_page():
    missing = sorted(set(CATALOGUE) - set(PAGES))
    assert not missing, f"catalogued kinds without a page in app/routes.py PAGES: {missing}"
    unknown = sorted(set(PAGES) - set(CATALOGUE))
    assert not unknown, f"pages for kinds the catalogue does not know: {unknown}"
    for page in (HOME, DICTIONARIES, *PAGES.values()):
        assert (APP_DIR / page).is_file(), page
    assert not (APP_DIR / "pages").exists(), "a pages/ folder switches Streamlit to v1 routing"


def test_pages_never_import_torch():
    for page in (HOME, DICTIONARIES, *PAGES.values()):
        text = (APP_DIR / page).read_text()
        assert "import torch" not in text and "from torch" not in text, page
    for module in (APP_DIR / "components").glob("*.py"):
        assert "import torch" not in module.read_text(), module.name


# --------------------------------------------------------------------------- home

def test_home_default_run(model_roots):
    at = open_page()
    assert_clean(at)
    assert at.title[0].value == "Interpretability workbench"
    assert at.text_input(key="_model_input").value == "default"
    links = [link.proto for link in at.get("page_link")]
    for kind, page in PAGES.items():
        to_page = [link for link in links if link.page.endswith(Path(page).stem)
                   or Path(page).stem in link.page]
        assert to_page, f"no link to the {kind} page"
    for kind in PAGES:
        with_spec = [link for link in links if f"kind={kind}&" in link.query_string]
        assert with_spec, f"no one-click example for the {kind} page"
        assert "model=default" in with_spec[0].query_string


def test_home_runs_a_kind_without_required_inputs_on_its_defaults_when_no_example_fits(
        model_roots, tmp_path, monkeypatch):
    from app.components import presets

    empty = tmp_path / "no-suites.json"
    empty.write_text("{}")
    monkeypatch.setenv(presets.PROMPTS_ENV, str(empty))
    at = open_page()
    assert_clean(at)
    queries = [link.proto.query_string for link in at.get("page_link") if link.proto.query_string]
    from analyses.core.catalogue import CATALOGUE

    needing_nothing = sorted(f"kind={k.name}" for k in CATALOGUE.kinds() if not k.required)
    assert "kind=heads" in needing_nothing and "kind=neurons" in needing_nothing
    assert sorted(q.split("&")[0] for q in queries) == needing_nothing
    assert all(q.endswith("&model=default") for q in queries)


def test_home_model_picker_reports_a_bad_model(model_roots):
    at = open_page()
    at.text_input(key="_model_input").set_value("no-such-org/no-such-model").run()
    assert_clean(at)
    assert any("cannot find model" in e for e in errors(at)), errors(at)


# --------------------------------------------------------------------------- logit lens

LL = PAGES["logit_lens"]


def test_logit_lens_default_run(model_roots):
    at = open_page(LL)
    assert_clean(at)
    assert not at.error or all("embedded default model" in e for e in errors(at))
    assert at.text_area(key="logit_lens:prompt").value == IOI  # the first example, ready to run
    assert at.text_input(key="logit_lens:token").value == " Mary, John"
    assert at.number_input(key="logit_lens:top_k").value == 10
    assert at.checkbox(key="logit_lens:final_norm").value is True
    assert not figures(at)
    assert any(b.label == "Run" for b in at.button)


def test_logit_lens_restores_every_widget_from_a_link_and_shows_the_result(tiny_gpt2_dir):
    query = ll_query(tiny_gpt2_dir, prompt="When Mary and John", token=" Mary, John", top_k=3,
                     final_norm=False)
    at = open_page(LL, query)
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.text_area(key="logit_lens:prompt").value == "When Mary and John"
    assert at.text_input(key="logit_lens:token").value == " Mary, John"
    assert at.number_input(key="logit_lens:top_k").value == 3
    assert at.checkbox(key="logit_lens:final_norm").value is False
    assert at.text_input(key="_model_input").value == str(tiny_gpt2_dir)
    heatmap, ranks = figures(at)
    assert heatmap["data"][0]["type"] == "heatmap"
    assert ranks["layout"]["yaxis"]["type"] == "log"
    share = copy_boxes(at)[0]
    assert share.startswith("http://localhost:8501/logit_lens?kind=logit_lens&")
    assert "token=%20Mary%2C%20John" in share and "final_norm=0" in share
    assert "AnalysisSpec.from_query(" in copy_boxes(at)[1]
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"top.csv", "top.parquet", "targets.csv", "targets.parquet", "heatmap.html"} <= labels
    tables = next(t for t in at.toggle if t.label.startswith("Show the tables"))
    assert not at.dataframe  # drawn on demand: the table viewer's scripts would slow the link
    tables.set_value(True).run()
    assert_clean(at)
    assert len(at.dataframe) == 2 and len(at.dataframe[0].value) > 0  # top, targets


def test_logit_lens_preset_fills_the_widgets_runs_and_writes_the_url(tiny_gpt2_dir):
    at = open_page(LL, {"model": str(tiny_gpt2_dir)})  # a link that only picks the model
    assert_clean(at)
    ioi = next(b for b in at.button if b.label.replace("\\", "").startswith("ioi: When Mary"))
    ioi.click().run()
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.query_params["prompt"] == IOI
    assert at.query_params["token"] == " Mary, John"
    assert at.query_params["model"] == str(tiny_gpt2_dir)
    assert at.text_area(key="logit_lens:prompt").value == IOI
    assert len(figures(at)) == 2


def test_logit_lens_run_button_writes_the_widgets_to_the_url(tiny_gpt2_dir):
    at = open_page(LL, {"model": str(tiny_gpt2_dir)})
    at.text_area(key="logit_lens:prompt").input("Once upon a time")
    at.number_input(key="logit_lens:top_k").set_value(4)
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert not at.error, errors(at)
    spec = AnalysisSpec.from_mapping(dict(at.query_params))
    assert spec == AnalysisSpec(kind="logit_lens", model=str(tiny_gpt2_dir),
                                prompt="Once upon a time", top_k=4, final_norm=True)
    assert len(figures(at)) == 1  # no targets, no rank chart


def test_logit_lens_run_with_an_empty_prompt_says_so(model_roots):
    at = open_page(LL)
    at.text_area(key="logit_lens:prompt").set_value("")  # the page opens on an example: clear it
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert any("prompt" in e and "required" in e for e in errors(at)), errors(at)
    assert "prompt" not in at.query_params


def test_logit_lens_model_and_token_errors_are_shown(tiny_gpt2_dir):
    at = open_page(LL, ll_query("no-such-org/no-such-model", prompt="Hi"))
    assert_clean(at)
    assert any("cannot find model" in e for e in errors(at))
    at = open_page(LL, ll_query(tiny_gpt2_dir, prompt="Hi", token=" Paris"))  # 3 tokens here
    assert_clean(at)
    assert any("it must be exactly one" in e for e in errors(at)), errors(at)
    assert not figures(at)


def test_logit_lens_unexpected_failure_is_one_line_without_traceback(tiny_gpt2_dir, monkeypatch):
    from app.components import run

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nTraceback (most recent call last): secret internals")

    monkeypatch.setattr(run, "compute", broken)
    at = open_page(LL, ll_query(tiny_gpt2_dir, prompt="Hello there"))
    assert_clean(at)
    [message] = errors(at)
    assert "RuntimeError: boom" in message and "Traceback" not in message


@needs_default_model
def test_logit_lens_on_the_default_model(model_roots):
    at = open_page(LL)
    facts = next(b for b in at.button if b.label.replace("\\", "").startswith("facts:"))
    facts.click().run()
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.query_params["model"] == "default"
    assert figures(at)


# --------------------------------------------------------------------------- generic form

def test_fields_with_choices_get_select_boxes_that_round_trip_through_the_url(monkeypatch):
    from analyses.core.catalogue import CATALOGUE, Kind

    fake = Kind(
        name="fake_choice", summary="a test kind", version=1, runner="nowhere:run",
        figures="nowhere:figures", required=("prompt",),
        optional=("detector", "granularity"), tables={}, defaults={"granularity": "x"},
        choices={"detector": ("a", "b", "c"), "granularity": ("x", "y")},
        list_fields=("detector",))
    monkeypatch.setitem(CATALOGUE._kinds, "fake_choice", fake)  # for this test only

    def script():
        import streamlit as st

        from app import links
        from app.components.form import SpecForm

        raw = links.read_query_params(st.query_params)
        form = SpecForm("fake_choice", [])
        form.sync_from_url(raw, links.parse(raw, "fake_choice"))
        form.draw()

    at = AppTest.from_function(script, default_timeout=TIMEOUT_S)
    at.query_params = {"prompt": "Hi", "detector": "a,c", "granularity": "y"}
    at.run()
    assert_clean(at)
    assert at.multiselect(key="fake_choice:detector").value == ["a", "c"]
    assert at.selectbox(key="fake_choice:granularity").value == "y"
    at.multiselect(key="fake_choice:detector").set_value(["b"])
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert at.query_params["detector"] == "b" and at.query_params["granularity"] == "y"


# --------------------------------------------------------------------------- heads

HEADS = PAGES["heads"]


def test_heads_default_run(model_roots):
    at = open_page(HEADS)
    assert_blank(at)  # the first example fills the form; nothing runs before Run
    assert at.multiselect(key="heads:detector").value == ["previous_token"]
    assert at.text_area(key="heads:prompt").value == "The capital of France is"
    assert at.number_input(key="heads:seed").value == 0
    assert at.checkbox(key="heads:ablate").value is False


def test_heads_restores_a_link_and_views_one_head(tiny_gpt2_dir):
    query = spec_query("heads", tiny_gpt2_dir, detector="previous_token,induction",
                       prompt="When Mary and John", seed=3, ablate=True)
    at = open_page(HEADS, query)
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.multiselect(key="heads:detector").value == ["previous_token", "induction"]
    assert at.text_area(key="heads:prompt").value == "When Mary and John"
    assert at.number_input(key="heads:seed").value == 3
    assert at.checkbox(key="heads:ablate").value is True
    previous, induction, profile, ablation = figures(at)
    assert previous["data"][0]["type"] == "heatmap"
    assert "previous_token" in previous["layout"]["title"]["text"]
    assert "induction" in induction["layout"]["title"]["text"]
    assert [bar["x"] for bar in profile["data"]] == [["previous_token", "induction"]]
    assert {trace["name"] for trace in ablation["data"]} == {"top heads", "random sets of as many heads"}
    layer, head = at.selectbox[0], at.selectbox[1]
    layer.set_value(1).run()
    head.set_value(2).run()
    assert_clean(at)
    assert "L1H2" in figures(at)[2]["layout"]["title"]["text"]


def test_heads_preset_runs_the_previous_token_detector_on_its_prompt(tiny_gpt2_dir):
    at = click_preset(open_page(HEADS), "facts: The capital of France", tiny_gpt2_dir)
    assert at.query_params["detector"] == "previous_token"
    assert at.query_params["prompt"] == "The capital of France is"
    assert at.multiselect(key="heads:detector").value == ["previous_token"]
    assert len(figures(at)) == 2  # the heatmap and one head's profile


# --------------------------------------------------------------------------- activation patching

AP = PAGES["activation_patching"]


def test_activation_patching_default_run(model_roots):
    at = open_page(AP)
    assert_blank(at)
    assert at.text_area(key="activation_patching:clean").value == IOI  # the first example
    assert at.selectbox(key="activation_patching:granularity").value == "resid_pre"
    assert at.number_input(key="activation_patching:layer").value is None


def test_activation_patching_restores_a_link_and_labels_positions_by_token(tiny_gpt2_dir):
    at = open_page(AP, spec_query("activation_patching", tiny_gpt2_dir, **PAIR,
                                  granularity="head_out_by_pos", layer=1))
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.text_area(key="activation_patching:corrupted").value == PAIR["corrupted"]
    assert at.text_input(key="activation_patching:answer").value == " Mary"
    assert at.selectbox(key="activation_patching:granularity").value == "head_out_by_pos"
    assert at.number_input(key="activation_patching:layer").value == 1
    [heatmap] = figures(at)
    assert heatmap["layout"]["yaxis"]["ticktext"] == ["L1H0", "L1H1", "L1H2", "L1H3"]
    assert "\u2423John→\u2423Mary" in heatmap["layout"]["xaxis"]["ticktext"]
    clean, corrupted = (m.value for m in at.metric)  # the baselines, also under the title
    assert f"clean {clean}, corrupted {corrupted}" in heatmap["layout"]["title"]["text"]


def test_activation_patching_direct_path_shows_one_heatmap_per_receiver_input(tiny_gpt2_dir):
    at = open_page(AP, spec_query("activation_patching", tiny_gpt2_dir, **PAIR,
                                  granularity="direct_path"))
    assert not at.error, errors(at)
    maps = figures(at)
    assert [m["layout"]["xaxis"]["title"]["text"] for m in maps] == [
        f"receiver head ({name} input)" for name in ("q", "k", "v")]
    assert maps[0]["layout"]["yaxis"]["ticktext"][0] == "L0H0"


def test_activation_patching_preset_runs_the_ioi_pair(tiny_gpt2_dir):
    at = click_preset(open_page(AP), "ioi: When Mary", tiny_gpt2_dir)
    assert {k: at.query_params[k] for k in PAIR} == PAIR
    [heatmap] = figures(at)
    assert heatmap["layout"]["yaxis"]["title"]["text"] == "layer"  # resid_pre: layer × position
    assert len(at.metric) == 2


# --------------------------------------------------------------------------- neurons

NEURONS = PAGES["neurons"]


def test_neurons_default_run(model_roots):
    at = open_page(NEURONS)
    assert_blank(at)
    assert at.text_input(key="neurons:token").value == " Mary"  # the first example
    assert at.number_input(key="neurons:layer").value is None
    assert at.number_input(key="neurons:top_k").value == 10
    assert at.checkbox(key="neurons:final_norm").value is True


def test_neurons_restores_a_link_to_one_neuron(tiny_gpt2_dir):
    at = open_page(NEURONS, spec_query("neurons", tiny_gpt2_dir, token=" Mary",
                                       prompt="When Mary and John", layer=1, neuron=5, top_k=3))
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.text_input(key="neurons:token").value == " Mary"
    assert at.text_area(key="neurons:prompt").value == "When Mary and John"
    assert at.number_input(key="neurons:layer").value == 1
    assert at.number_input(key="neurons:neuron").value == 5
    promoters, tokens, activations = figures(at)
    assert "\u2423Mary" in promoters["layout"]["title"]["text"]
    assert promoters["data"][0]["y"] == ["L1 N5"]  # the scope is the one neuron
    assert "L1 N5" in tokens["layout"]["title"]["text"] and len(tokens["data"]) == 2
    assert [len(t["y"]) for t in tokens["data"]] == [3, 3]
    assert activations["data"][0]["type"] == "bar"


def test_neurons_preset_searches_a_token_and_the_view_picks_another_neuron(tiny_gpt2_dir):
    at = click_preset(open_page(NEURONS), "ioi: When Mary", tiny_gpt2_dir)
    assert at.query_params["token"] == " Mary" and at.query_params["prompt"] == IOI
    shown = figures(at)
    assert "\u2423Mary" in shown[0]["layout"]["title"]["text"]  # the promoters
    assert shown[1]["data"][0]["type"] == "heatmap"  # the most active neurons on the prompt
    top = shown[0]["data"][0]["y"][0]
    assert top in shown[2]["layout"]["title"]["text"]  # the view opens on the top promoter
    view = at.number_input[-1]
    view.set_value(7).run()
    assert_clean(at)
    assert "N7" in figures(at)[2]["layout"]["title"]["text"]


# --------------------------------------------------------------------------- dla

DLA = PAGES["dla"]


def test_dla_default_run(model_roots):
    at = open_page(DLA)
    assert_blank(at)
    assert at.text_area(key="dla:prompt").value == IOI  # the first example
    assert at.text_input(key="dla:answer").value == " Mary" and at.text_input(key="dla:wrong").value == " John"


def test_dla_restores_a_link_and_its_bars_sum_to_the_logit_difference(tiny_gpt2_dir):
    at = open_page(DLA, spec_query("dla", tiny_gpt2_dir, prompt=IOI, answer=" Mary", wrong=" John"))
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.text_input(key="dla:wrong").value == " John"
    components, heads, neurons = figures(at)
    order = components["layout"]["xaxis"]["categoryarray"]  # one bar trace per colour, in this order
    assert order[:2] == ["embed", "pos_embed"] and order[-1] == "bias"
    assert order[2:6] == ["L0 attn", "L0 mlp", "L1 attn", "L1 mlp"]
    title = components["layout"]["title"]["text"]
    total = float(title.split("the bars sum to ")[1].split(";")[0])
    own = float(title.split("own value is ")[1].split("<")[0])
    assert total == pytest.approx(own, abs=1e-3)
    assert heads["data"][0]["type"] == "heatmap"  # layer × head
    assert heads["layout"]["yaxis"]["ticktext"] == ["0", "1"]
    assert heads["layout"]["xaxis"]["ticktext"] == ["H0", "H1", "H2", "H3"]  # a head axis reads H0
    # the last MLP split by neuron: the bars add up to that MLP's bar
    bars = neurons["data"][0]["y"]  # plotly's JSON: a typed array
    parts = np.frombuffer(base64.b64decode(bars["bdata"]), dtype=bars["dtype"]) if isinstance(bars, dict) else bars
    mlp = float(neurons["layout"]["title"]["text"].split("add up to the MLP's ")[1].split(";")[0])
    assert float(np.sum(parts)) == pytest.approx(mlp, abs=1e-3)
    atlas = [link for table in at.dataframe for link in table.value.get("atlas", []) if isinstance(link, str)]
    assert atlas and all("kind=neurons" in link and "neuron=" in link for link in atlas)


def test_dla_preset_fills_prompt_answer_and_wrong(tiny_gpt2_dir):
    at = click_preset(open_page(DLA), "ioi: When Mary", tiny_gpt2_dir)
    assert at.query_params["prompt"] == IOI
    assert (at.query_params["answer"], at.query_params["wrong"]) == (" Mary", " John")
    assert len(figures(at)) == 3  # components, heads, the last MLP by neuron


# --------------------------------------------------------------------------- attribution patching

ATP = PAGES["attribution_patching"]


def test_attribution_patching_default_run(model_roots):
    at = open_page(ATP)
    assert_blank(at)
    assert at.radio(key="attribution_patching:exact").value == "auto"
    assert at.checkbox(key="attribution_patching:qk_fix").value is False
    assert at.checkbox(key="attribution_patching:graddrop").value is False


def test_attribution_patching_restores_a_link_with_exact_beside_atp(tiny_gpt2_dir):
    at = open_page(ATP, spec_query("attribution_patching", tiny_gpt2_dir, **PAIR, exact=True))
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.radio(key="attribution_patching:exact").value == "yes"
    shown = figures(at)
    heatmap, scatter = shown  # one node kind at a time: the head outputs first
    assert heatmap["layout"]["title"]["text"].split(":")[0] == "head"
    assert len(heatmap["data"]) == 2  # AtP beside exact
    picker = at.segmented_control[0]  # the node-kind picker
    assert [o.split(":")[0] for o in picker.options] == ["resid", "head", "mlp", "q", "k", "v"]
    picker.set_value("atp_resid").run()
    heatmap = figures(at)[0]
    assert heatmap["layout"]["title"]["text"].split(":")[0] == "resid"
    assert heatmap["layout"]["yaxis"]["ticktext"][-1] == "final"
    assert scatter["data"][-1]["name"] == "AtP = exact"
    assert "all nodes: r " in scatter["layout"]["title"]["text"]
    assert any("Where to trust AtP" in i.value for i in at.info)
    assert any("On this input AtP matched" in c.value.replace("\\", "") for c in at.caption)


def test_attribution_patching_without_exact_shows_atp_alone(tiny_gpt2_dir):
    at = open_page(ATP, spec_query("attribution_patching", tiny_gpt2_dir, **PAIR, exact=False,
                                   layer=1))
    assert_clean(at)
    assert not at.error, errors(at)
    shown = figures(at)
    assert len(shown) == 1 and len(shown[0]["data"]) == 1  # one node kind, AtP alone, no scatter
    assert any("Exact patching was not run" in c.value.replace("\\", "") for c in at.caption)


def test_attribution_patching_preset_and_the_exact_choice_round_trip(tiny_gpt2_dir):
    at = click_preset(open_page(ATP), "ioi: When Mary", tiny_gpt2_dir)
    assert {k: at.query_params[k] for k in PAIR} == PAIR
    assert "exact" not in at.query_params  # auto: the analysis decides (it runs: few nodes)
    assert len(figures(at)) == 2  # the chosen node kind's heatmaps and the agreement scatter
    at.radio(key="attribution_patching:exact").set_value("no")
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert at.query_params["exact"] == "0"
    assert len(figures(at)) == 1


# --------------------------------------------------------------------------- bad links, every page

BAD_LINKS = [  # (page's kind, query): a wrong value, a stray or repeated field, another kind
    ("logit_lens", {"kind": "logit_lens", "prompt": "Hi", "top_k": "abc"}),
    ("logit_lens", {"kind": "logit_lens", "prompt": "Hi", "top_k": "0"}),
    ("logit_lens", {"kind": "logit_lens", "prompt": "Hi", "bogus": "1"}),
    ("logit_lens", {"kind": "logit_lens", "prompt": ["Hi", "Ho"]}),
    ("logit_lens", {"kind": "logit_lens", "prompt": "Hi", "final_norm": "yes"}),
    ("logit_lens", {"kind": "no_such_kind", "prompt": "Hi"}),
    ("logit_lens", {"kind": "logit_lens", "prompt": "Hi", "clean": "Ho"}),
    ("logit_lens", {"kind": "logit_lens", "prompt": "x" * 20_001}),
    ("heads", {"kind": "heads", "detector": "bogus"}),
    ("heads", {"kind": "heads", "seed": "-1"}),
    ("heads", {"kind": "heads", "layer": "1"}),
    ("activation_patching", {"kind": "activation_patching", **PAIR, "granularity": "heads"}),
    ("activation_patching", {"kind": "activation_patching", **PAIR, "layer": "x"}),
    ("activation_patching", {"kind": "activation_patching", **PAIR, "prompt": "Hi"}),
    ("neurons", {"kind": "neurons", "top_k": "0"}),
    ("neurons", {"kind": "neurons", "neuron": "-3"}),
    ("neurons", {"kind": "neurons", "detector": "induction"}),
    ("dla", {"kind": "dla", "prompt": "Hi", "answer": " Mary", "clean": "Ho"}),
    ("dla", {"kind": "dla", "prompt": ["Hi", "Ho"], "answer": " Mary"}),
    ("dla", {"kind": "logit_lens_typo", "prompt": "Hi", "answer": " Mary"}),
    ("attribution_patching", {"kind": "attribution_patching", **PAIR, "exact": "maybe"}),
    ("attribution_patching", {"kind": "attribution_patching", **PAIR, "granularity": "resid_pre"}),
    ("attribution_patching", {"kind": "attribution_patching", "clean": IOI, "answer": " Mary",
                              "wrong": " John", "qk_fix": "1", "corrupted": ["a", "b"]}),
    ("steering", {"kind": "steering", "prompt": "Hi", "coeff": "1,,2"}),
    ("steering", {"kind": "steering", "prompt": "Hi", "ablate": "L1X"}),
    ("steering", {"kind": "steering", "prompt": "Hi", "positions": "middle"}),
]


@pytest.mark.parametrize("kind, query", BAD_LINKS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BAD_LINKS)])
def test_a_bad_link_shows_an_error_box_and_no_figure(model_roots, kind, query):
    assert_bad_link(open_page(PAGES[kind], query))


def test_long_tables_send_only_their_first_rows_to_the_browser(tiny_gpt2_dir, monkeypatch):
    from app.components import page

    monkeypatch.setattr(page, "MAX_SHOWN_ROWS", 5)
    at = open_page(DLA, spec_query("dla", tiny_gpt2_dir, prompt=IOI, answer=" Mary", wrong=" John"))
    assert_clean(at)
    on_the_page = len(at.dataframe)  # the page's own tables (DLA's neuron links) come first
    next(t for t in at.toggle if t.label.startswith("Show the tables")).set_value(True).run()
    assert any("The first 5 rows" in c.value for c in at.caption)
    tables = at.dataframe[on_the_page:]
    assert len(tables) and all(len(t.value) <= 5 for t in tables) and len(tables[0].value) == 5


@needs_default_model
@pytest.mark.parametrize("kind", sorted(PAGES))
def test_every_page_shows_a_real_figure_from_the_embedded_model_in_one_click(kind, monkeypatch, model_roots):
    """The issue's first-minute promise: open a page, click its first example from the real
    prompt suite (data/prompts.json), get a figure computed by the embedded model."""
    from app.components import presets

    monkeypatch.delenv(presets.PROMPTS_ENV)  # the shipped suite, not the tests' fixed one
    at = open_page(PAGES[kind])
    examples = [b for b in at.button if ":" in b.label]
    assert examples, f"{kind} page shows no examples"
    examples[0].click().run()
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.query_params["model"] == "default"
    assert figures(at), f"{kind}: no figure after clicking {examples[0].label!r}"


@pytest.mark.parametrize("kind", ["logit_lens", "attribution_patching", "heads"])
def test_a_page_shows_exactly_the_figures_of_its_result(kind, tiny_gpt2_dir):
    """The page draws `result.figures()` (the same builders a notebook gets), in that order,
    between its own sections; a view's one-head chart is the only figure it adds."""
    import json

    from analyses import compute

    fields = {"logit_lens": {"prompt": IOI, "token": " Mary"},
              "attribution_patching": {**PAIR, "exact": True},
              "heads": {"detector": "previous_token,induction", "seed": 1}}[kind]
    spec = AnalysisSpec(kind=kind, model=str(tiny_gpt2_dir), **fields)
    at = open_page(PAGES[kind], links.params(spec))
    assert_clean(at)
    expected = compute(spec).figures()
    if kind == "attribution_patching":  # one node kind at a time, the head outputs first
        expected = {name: fig for name, fig in expected.items()
                    if not name.startswith("atp_") or name == "atp_head"}
    expected = [json.loads(fig.to_json()) for fig in expected.values()]
    shown = figures(at)
    if kind == "heads":  # the one-head view's profile chart sits before the ablation chart
        shown = [f for f in shown if "under each detector" not in f["layout"]["title"]["text"]]
    assert [f["data"] for f in shown] == [f["data"] for f in expected]
    assert [f["layout"]["title"] for f in shown] == [f["layout"]["title"] for f in expected]


def test_home_and_every_form_render_before_torch_is_imported(tmp_path):
    """In a fresh process (warm-up off): the home page and each page's form, Run button
    included, draw with torch, transformers and TransformerLens still unimported."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import json, sys
        from streamlit.testing.v1 import AppTest
        from app.routes import PAGES
        at = AppTest.from_file({str(MAIN)!r}, default_timeout=120).run()
        drawn = {{"home": bool(at.title) and not at.exception}}
        for kind, page in PAGES.items():
            at.switch_page(page)
            at.run()
            drawn[kind] = not at.exception and any(b.label == "Run" for b in at.button)
        heavy = [m for m in ("torch", "transformers", "transformer_lens") if m in sys.modules]
        print(json.dumps({{"drawn": drawn, "heavy": heavy}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=APP_DIR.parent, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1", ANALYSES_APP_WARMUP="0",
                                                ANALYSES_CACHE=str(tmp_path / "cache.duckdb")))
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["heavy"] == []
    assert seen["drawn"] == {"home": True, **{kind: True for kind in PAGES}}


def test_an_unknown_models_error_shows_once_without_server_paths(model_roots):
    """Once on the page (the sidebar has one short line), and with the server's folders cut
    to their last part: a visitor sees what was tried, not the server's disk."""
    at = open_page(LL, {"kind": "logit_lens", "model": "no-such-org/no-such-model", "prompt": "Hi"})
    assert_clean(at)
    shown = [e for e in errors(at) if "cannot find model" in e]
    assert len(shown) == 1, errors(at)
    assert "/tmp/" not in shown[0] and "/root/" not in shown[0] and str(APP_DIR.parent) not in shown[0]
    assert any("cannot be loaded" in c.value for c in at.sidebar.caption)
    blank = open_page(LL)
    blank.text_input(key="_model_input").set_value("no-such-org/no-such-model").run()
    assert len([e for e in errors(blank) if "cannot find model" in e]) == 1


def test_without_server_paths_keeps_what_was_tried():
    from app.components.display import without_server_paths

    text = "Tried: a local path (/work/main/x does not exist); the cache (/root/.cache/huggingface/hub)"
    assert without_server_paths(text) == "Tried: a local path (…/x does not exist); the cache (…/hub)"
    assert without_server_paths("gpt2 and EleutherAI/pythia-70m, 1/2") == "gpt2 and EleutherAI/pythia-70m, 1/2"



@pytest.mark.parametrize("kind", sorted(PAGES))
def test_every_page_runs_as_it_opens(kind, model_roots):
    """A page opened without a link starts on a working example: pressing Run shows a result."""
    at = open_page(PAGES[kind])
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert not at.error, errors(at)
    assert figures(at), f"{kind}: Run on the opening form showed no figure"


def test_the_first_paint_starts_the_model_stack_loading_in_the_background(tmp_path):
    """With warm-up on (the app's default), drawing the home page starts importing torch and
    TransformerLens in a background thread, under the lock every job takes, and a job run
    meanwhile gets a whole transformers."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import json, sys, time
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(MAIN)!r}, default_timeout=120).run()
        from analyses import AnalysisSpec, compute
        result = compute(AnalysisSpec(kind="logit_lens", prompt="The capital of France is"), cache=False)
        from analyses.runtime import stack
        print(json.dumps({{"painted": bool(at.title) and not at.exception, "warm": stack._imported.is_set(),
                          "rows": len(result.tables["top"])}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=APP_DIR.parent, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1", ANALYSES_APP_WARMUP="1",
                                                ANALYSES_CACHE=str(tmp_path / "cache.duckdb")))
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["painted"] and seen["warm"] and seen["rows"] > 0


@needs_default_model
def test_a_prompt_set_link_shows_means_with_intervals_and_opens_one_example(tmp_path):
    import plotly.io as pio

    from analyses.core import datasets as ds
    from analyses.runtime import datasets

    rows = list(ds.shipped("ioi").rows[:5]) + [dict(ds.shipped("ioi").rows[5], answer=" Eva Carl")]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    reference = datasets.add_bytes(data, "five.jsonl").reference
    at = open_page(PAGES["activation_patching"],
                   spec_query("activation_patching", "default", dataset=reference, granularity="head_out"))
    assert_clean(at)
    assert not at.error, errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Examples run": "5", "Rows skipped": "1"}
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any("row 5" in w and "tokens" in w for w in warnings), warnings  # the skipped row, why
    captions = [c.value.replace("\\", "") for c in at.caption]
    assert any("ratio of the means" in c and "paired" in c for c in captions), captions  # which interval

    grid, chart = figures(at)
    assert grid["data"][0]["type"] == "heatmap"  # the mean of every head, layer x head
    bars, *dots = pio.from_json(json.dumps(chart)).data  # (arrays come binary-encoded)
    assert bars.type == "bar" and bars.error_x.array is not None and all(d.mode == "markers" for d in dots)
    # every example beside every component (those beyond the axis at its edge)
    assert sum(len(d.y) for d in dots) == 5 * len(bars.y)
    assert bars.y[0] == "head_out · L0H0"  # the card's IOI head restores the most
    example = at.selectbox(key="activation_patching:set:example")
    assert example.options[0].startswith("0: ")
    [button] = at.get("link_button")
    assert "clean=" in button.proto.url and "dataset=" not in button.proto.url


def test_an_uploaded_set_is_checked_stored_and_named_by_its_reference():
    from analyses.core.errors import UserError
    from analyses.runtime import datasets
    from app.components.set_upload import stored_reference

    good = b'{"prompt": "Once upon a time", "answer": " there"}\n'
    reference = stored_reference(good, "mine.jsonl")
    assert datasets.resolve(reference).rows == ({"prompt": "Once upon a time", "answer": " there"},)
    with pytest.raises(UserError, match="line 2: not valid JSON"):
        stored_reference(good + b'{"prompt": \n', "bad.jsonl")
    assert [d["reference"] for d in datasets.listing() if d["origin"] == "stored"] == [reference]
    at = open_page(PAGES["dla"])
    assert_clean(at)
    assert any(e.label.startswith("Add a prompt set") for e in at.expander)


@needs_default_model
def test_the_set_picker_lists_the_sets_a_page_can_run_and_fills_its_input():
    from analyses.runtime import datasets

    reference = datasets.add_bytes(b'{"prompt": "Once upon a time", "answer": " there"}\n', "mine.jsonl").reference
    patching = open_page(PAGES["activation_patching"])
    assert_clean(patching)
    picker = patching.selectbox(key="activation_patching:set_choice")
    assert set(picker.options) == {"ioi — 200 rows (shipped)", "facts — 102 rows (shipped)"}  # pairs only
    lens = open_page(PAGES["logit_lens"])
    picker = lens.selectbox(key="logit_lens:set_choice")
    # every prompt set serves the lens: the four shipped, the two labelled concept sets, the one added here
    assert len(picker.options) == 7 and any("mine.jsonl" in o and "stored" in o for o in picker.options)
    picker.set_value(reference).run()
    assert lens.text_input(key="logit_lens:dataset").value == reference
    next(b for b in lens.button if b.label == "Run").click().run()
    assert_clean(lens)
    assert not lens.error, errors(lens)
    assert {m.label: m.value for m in lens.metric} == {"Examples run": "1", "Rows skipped": "0"}
    assert lens.query_params["dataset"] == reference  # the link holds the set


# --------------------------------------------------------------------------- steering

STEERING_PRESET = {"prompt": "The capital of France is", "positive": "The capital of Germany is",
                   "negative": "The capital of France is", "layer": "2", "coeff": "0,0.5,1",
                   "answer": " Berlin", "wrong": " Paris", "max_new_tokens": 6}


def test_steering_restores_a_link_and_shows_the_steered_text_beside_the_intact(model_roots):
    at = open_page(PAGES["steering"], spec_query("steering", "default", **STEERING_PRESET))
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.text_input(key="steering:layer").value == "2"
    assert at.text_input(key="steering:coeff").value == "0,0.5,1"
    assert at.text_area(key="steering:positive").value == "The capital of Germany is"
    strip, metric, kl, vector = figures(at)
    assert strip["layout"]["yaxis"]["ticktext"] == ["intact", "L2 × 0.5", "L2 × 1"]
    assert metric["layout"]["xaxis"]["ticktext"] == ["0", "0.5", "1"] and metric["data"][0]["zmid"] == 0
    assert "KL" in kl["layout"]["title"]["text"]
    assert "steering vector" in vector["layout"]["title"]["text"]
    marked = [m.value for m in at.markdown if "<mark" in m.value]
    assert marked and "Berlin" in marked[0]  # the steered side, its new answer marked


def test_a_knockout_link_shows_intact_and_ablated(model_roots):
    at = open_page(PAGES["steering"], spec_query("steering", "default", prompt=IOI, answer=" Mary", wrong=" John",
                                                 ablate="L0H0", max_new_tokens=4))
    assert_clean(at)
    assert not at.error, errors(at)
    strip, bars = figures(at)
    assert strip["layout"]["yaxis"]["ticktext"] == ["intact", "ablated"]
    assert bars["data"][0]["x"] == ["intact", "ablated"]
    # no vector: its coefficients, layers and positions are neither drawn nor explained
    drawn = {w.key for w in (*at.text_input, *at.selectbox)}
    assert not drawn & {"steering:coeff", "steering:layer", "steering:method", "steering:positions"}, drawn
    assert not [c.value for c in at.caption if "Added at" in c.value or "coefficient" in c.value.lower()]
    at.text_area(key="steering:positive").set_value("Mary").run()  # texts to steer toward: they come
    assert at.text_input(key="steering:coeff").value == "0,0.5,1,2"


def test_a_steering_error_found_at_run_time_names_the_field(model_roots):
    at = open_page(PAGES["steering"], spec_query("steering", "default", prompt=IOI, ablate="L7H0"))
    assert_clean(at)
    assert any("ablate" in e and "3 layers" in e for e in errors(at)), errors(at)
    assert not figures(at)


def test_the_logit_lens_says_when_it_reads_an_ablated_model(model_roots):
    at = open_page(LL, ll_query("default", prompt="The capital of France is", token=" Paris", ablate="L1H7,L1H6"))
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.text_input(key="logit_lens:ablate").value == "L1H7,L1H6"
    assert any("L1H7,L1H6 knocked out" in i.value for i in at.info)
    assert len(figures(at)) == 2


# --------------------------------------------------------------------------- circuit

def test_circuit_shows_the_graph_the_curve_and_a_path_patching_link(model_roots):
    at = open_page(PAGES["circuit"], spec_query("circuit", "default", **PAIR, method="eap"))
    assert_clean(at)
    assert not at.error, errors(at)
    graph, curve = figures(at)
    assert graph["layout"]["yaxis"]["ticktext"][0] == "embed" and graph["layout"]["yaxis"]["ticktext"][-1] == "logits"
    names = [trace.get("name") for trace in curve["data"]]
    assert "top-k edges by |score|" in names and "random edge sets: mean" in names
    assert curve["layout"]["xaxis"]["type"] == "log"
    slider = at.select_slider[0]
    drawn = sum(1 for trace in graph["data"] if trace.get("mode") == "lines" and trace["x"][0] is not None)
    assert drawn == slider.value
    slider.set_value(3).run()
    assert_clean(at)
    redrawn = figures(at)[0]
    assert sum(1 for t in redrawn["data"] if t.get("mode") == "lines" and t["x"][0] is not None) == 3
    slider.set_value(45).run()  # enough edges to hold some between heads
    queries = [link.proto.query_string for link in at.get("page_link") if link.proto.query_string]
    assert any("granularity=direct_path" in q for q in queries), queries


# --------------------------------------------------------------------------- attention

def test_attention_one_head_view_is_in_the_link(tiny_gpt2_dir):
    """The one-head picker reads its layer and head from the link's `view.*` keys and writes
    them back: the share link reopens the head shown, and the spec (the result) is unchanged."""
    query = spec_query("attention", tiny_gpt2_dir, prompt="When Mary and John went")
    at = open_page(PAGES["attention"], {**query, "view.layer": "1", "view.head": "1"})
    assert_clean(at)
    assert not at.error, errors(at)
    layer, head = (s for s in at.selectbox if s.label in ("Layer", "Head"))
    assert (layer.value, head.value) == (1, 1)
    assert "L1H1" in figures(at)[-1]["layout"]["title"]["text"].replace(" ", "").replace("head", "H")
    head.set_value(0).run()
    assert_clean(at)
    assert at.query_params["view.head"] == "0" and at.query_params["view.layer"] == "1"
    assert {k: at.query_params[k] for k in query} == query  # the spec's keys stay


# --------------------------------------------------------------------------- attention knockout

KNOCKOUT = PAGES["knockout"]


@needs_default_model
def test_knockout_preset_names_the_facts_subject_and_draws_a_line_per_source(model_roots):
    at = click_preset(open_page(KNOCKOUT), "facts: The capital", "default")  # ' Paris': one token
    assert (at.query_params["prompt"], at.query_params["subject"]) == ("The capital of France is", "France")
    (change,) = figures(at)
    assert [trace["name"] for trace in change["data"]] == ["subject → last", "other tokens → last", "last → last"]
    assert all(list(trace["x"]) == ["L0", "L1", "L2"] for trace in change["data"])  # 3 layers, window 1
    assert change["layout"]["yaxis"]["title"]["text"].startswith("relative change")


def test_knockout_restores_a_link_and_shows_a_bad_subject_as_an_error(tiny_gpt2_dir):
    at = open_page(KNOCKOUT, spec_query("knockout", tiny_gpt2_dir, prompt="The capital of France is",
                                        subject="France", source="subject,all", window=2))
    assert_clean(at)
    assert not at.error, errors(at)
    (change,) = figures(at)
    assert [trace["x"] for trace in change["data"]] == [["L0–L1"], ["L0–L1"]]
    at = open_page(KNOCKOUT, spec_query("knockout", tiny_gpt2_dir, prompt="The capital of France is",
                                        subject="Spain"))
    assert_clean(at)
    assert any("subject" in e and "Spain" in e for e in errors(at)), errors(at)
