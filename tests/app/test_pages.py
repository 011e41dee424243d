"""Every page under Streamlit's AppTest: default run, preset run, restore from a link,
bad links. Pages run in this process, so the tiny models of conftest (and the
ANALYSES_MODEL_ROOTS the `model_roots` fixture sets) apply to them."""
import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from streamlit.testing.v1 import AppTest

from analyses import AnalysisSpec
from analyses.registry import analyses
from app.main import HOME, PAGES

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
def known_prompts(tmp_path, monkeypatch):
    """Pages read their examples from a fixed suite here, not the evolving data/prompts.json
    (whose names need not be single tokens of the tiny test models)."""
    from app.components import presets

    suites = {
        "ioi": [{"clean": IOI, "corrupted": IOI.replace("John gave", "Mary gave"),
                 "answer": " Mary", "wrong": " John"}],
        "facts": [{"prompt": "The capital of France is", "answer": " Paris"}],
    }
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(suites))
    monkeypatch.setattr(presets, "PROMPTS_FILE", path)
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
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def ll_query(model: Path | str, **fields) -> dict:
    spec = AnalysisSpec(kind="logit_lens", model=str(model), **fields)
    return dict(parse_qsl(spec.to_query()))


# --------------------------------------------------------------------------- the router

def test_every_registered_kind_has_a_page():
    missing = sorted(set(analyses()) - set(PAGES))
    assert not missing, f"registered kinds without a page in app/main.py PAGES: {missing}"
    unknown = sorted(set(PAGES) - set(analyses()))
    assert not unknown, f"pages for kinds the registry does not know: {unknown}"
    for page in (HOME, *PAGES.values()):
        assert (APP_DIR / page).is_file(), page
    assert not (APP_DIR / "pages").exists(), "a pages/ folder switches Streamlit to v1 routing"


def test_pages_never_import_torch():
    for page in (HOME, *PAGES.values()):
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
    with_spec = [link for link in links if "kind=logit_lens" in link.query_string]
    assert with_spec, "no one-click example for the logit lens"
    assert "model=default" in with_spec[0].query_string


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
    assert at.text_area(key="logit_lens:prompt").value == ""
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
    share = at.code[0].value
    assert share.startswith("http://localhost:8501/logit_lens?kind=logit_lens&")
    assert "token=%20Mary%2C%20John" in share and "final_norm=0" in share
    assert "AnalysisSpec.from_query(" in at.code[1].value
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"top.csv", "top.parquet", "targets.csv", "targets.parquet", "heatmap.html"} <= labels
    assert at.expander  # the tables


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
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert any("prompt" in e and "required" in e for e in errors(at)), errors(at)
    assert "prompt" not in at.query_params


@pytest.mark.parametrize("query", [
    {"kind": "logit_lens", "prompt": "Hi", "top_k": "abc"},
    {"kind": "logit_lens", "prompt": "Hi", "top_k": "0"},
    {"kind": "logit_lens", "prompt": "Hi", "bogus": "1"},
    {"kind": "logit_lens", "prompt": ["Hi", "Ho"]},
    {"kind": "logit_lens", "prompt": "Hi", "final_norm": "yes"},
    {"kind": "no_such_kind", "prompt": "Hi"},
    {"kind": "logit_lens", "prompt": "Hi", "clean": "Ho"},
    {"kind": "logit_lens", "prompt": "x" * 20_001},
])
def test_logit_lens_bad_link_shows_an_error_box_and_no_exception(model_roots, query):
    at = open_page(LL, query)
    assert_clean(at)
    assert any(e.startswith("This link cannot be opened") for e in errors(at)), errors(at)
    assert not figures(at)


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
