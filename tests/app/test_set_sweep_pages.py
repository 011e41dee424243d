"""The ablation sweep page under AppTest: a prompt link and the ioi set link each show the
layer × (heads + MLP) grids and a table whose rows link to each component's knock-out; the
attention page's ioi set link shows the last position's means."""
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from analyses import AnalysisSpec
from app.routes import PAGES
from helpers import page_figures

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
TIMEOUT_S = 300  # the CPU is shared; the ioi set is 200 prompts
IOI = dict(prompt="When Mary and John went to the store, John gave a drink to", answer=" Mary", wrong=" John")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))


def open_link(**fields) -> AppTest:
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT_S).run()
    at.switch_page(PAGES["ablation_sweep"])
    at.query_params = dict(parse_qsl(AnalysisSpec(kind="ablation_sweep", **fields).to_query()))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def knockout_links(at: AppTest) -> list[str]:
    table = at.dataframe[0].value
    return list(table["knock-out"])


def test_a_prompts_link_shows_both_grids_and_links_each_component_to_its_knockout():
    at = open_link(**IOI)
    delta, top1 = page_figures(at)[:2]
    assert delta["data"][0]["zmid"] == 0  # signed: centred diverging scale
    assert delta["layout"]["xaxis"]["ticktext"][-1] == "MLP" and delta["layout"]["xaxis"]["ticktext"][0] == "H0"
    assert delta["layout"]["yaxis"]["ticktext"][0] == "L0"
    assert delta["data"][0]["text"][0][0].startswith("L0H0<br>")
    assert top1["data"][0]["zmin"] == 0 and top1["data"][0]["zmax"] == 1
    table = at.dataframe[0].value
    assert table["component"].iloc[0] == "L0H0"  # the largest change first
    query = dict(parse_qsl(urlsplit(table["knock-out"].iloc[0]).query))
    assert urlsplit(table["knock-out"].iloc[0]).path.endswith("/steering")
    assert query["ablate"] == "L0H0" and query["ablation"] == "mean" and query["prompt"] == IOI["prompt"]


def test_the_ioi_sets_link_shows_means_with_intervals_and_set_knockout_links():
    at = open_link(dataset="ioi")
    assert {m.label: m.value for m in at.metric}["Examples run"] == "200"
    figures = page_figures(at)
    delta = next(f for f in figures if "Change in" in f["layout"]["title"]["text"])
    assert "mean over 200 examples" in delta["layout"]["title"]["text"]
    assert "95% interval" in delta["data"][0]["customdata"][0][0]
    links = knockout_links(at)
    query = dict(parse_qsl(urlsplit(links[0]).query))
    assert query["dataset"] == "ioi" and query["ablate"] == "L0H0" and "prompt" not in query


def test_the_attention_pages_ioi_set_link_shows_the_last_positions_means():
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT_S).run()
    at.switch_page(PAGES["attention"])
    at.query_params = dict(parse_qsl(AnalysisSpec(kind="attention", dataset="ioi").to_query()))
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert {m.label: m.value for m in at.metric}["Examples run"] == "200"
    last, answers = page_figures(at)[:2]
    assert "last position" in last["layout"]["title"]["text"] and last["layout"]["yaxis"]["ticktext"][0] == "L0H0"
    assert "wrong answer" in answers["layout"]["title"]["text"]
