"""The attribution graph page under AppTest: the graph, a node's edges, and pins, groups and
notes kept in the link's view keys (a reopened link shows them)."""
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from streamlit.testing.v1 import AppTest

from analyses import AnalysisSpec
from analyses.dictionaries import formats
from app.components.graph_view_state import format_groups, node_labels, parse_groups, parse_pins
from app.routes import PAGES
from helpers import page_figures
from tests.kinds.graph_helpers import random_transcoders

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
TIMEOUT_S = 240
PROMPT = "When Mary and John went to the store"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))


@pytest.fixture
def query(tiny_gpt2_dir, tmp_path):
    from analyses.runtime import models

    bridge = models.load(str(tiny_gpt2_dir)).bridge
    for layer, coder in enumerate(random_transcoders(bridge)):
        formats.save(coder, tmp_path / "tc" / f"blocks.{layer}.mlp")
    spec = AnalysisSpec(kind="graph", model=str(tiny_gpt2_dir), prompt=PROMPT, transcoders=str(tmp_path / "tc"))
    return dict(parse_qsl(spec.to_query()))


def open_page(query: dict) -> AppTest:
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT_S).run()
    at.switch_page(PAGES["graph"])
    at.query_params = dict(query)
    return at.run()


def test_groups_and_pins_round_trip_through_their_link_text():
    groups = {"names": ["0.1@3", "1.2@4"], "a;b=c": ["err0@1"]}
    assert parse_groups(format_groups(groups)) == {"names": ["0.1@3", "1.2@4"], "a,b-c": ["err0@1"]}
    assert parse_pins(" 0.1@3, ,1.2@4") == ["0.1@3", "1.2@4"]
    notes = "free text: not a node\n0.1@3: S2 via L0H0\nerr0@1:"
    assert node_labels(notes, ["0.1@3", "err0@1"]) == {"0.1@3": "S2 via L0H0"}


def test_the_page_draws_the_graph_and_keeps_pins_groups_and_notes_in_the_link(query):
    at = open_page(query)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    graph = page_figures(at)[0]
    assert graph["layout"]["yaxis"]["ticktext"][0] == "input tokens"
    assert graph["layout"]["yaxis"]["ticktext"][-1] == "logits"
    node_box = next(s for s in at.selectbox if s.label.startswith("Node"))
    choices = node_box.options
    node_box.set_value(choices[1]).run()
    assert at.query_params["view.selected"] == choices[1]
    pins = next(m for m in at.multiselect if m.label == "Pinned nodes")
    pins.set_value(choices[:2]).run()
    assert parse_pins(at.query_params["view.pinned"]) == choices[:2]
    members = next(m for m in at.multiselect if m.label == "Nodes to group")
    members.set_value(choices[:2]).run()
    at.text_input(key=next(t.key for t in at.text_input if t.label == "Group name")).set_value("names").run()
    next(b for b in at.button if b.label == "Group them").click().run()
    assert parse_groups(at.query_params["view.groups"]) == {"names": choices[:2]}
    notes = next(t for t in at.text_area if t.label == "Notes")
    notes.set_value(f"the name mover\n{choices[0]}: top node").run()
    assert at.query_params["view.notes"] == f"the name mover\n{choices[0]}: top node"
    # a reopened link shows the same pins, group and selection
    link = {k: v for k, v in at.query_params.items()}
    again = open_page(link)
    assert not again.exception
    assert next(m for m in again.multiselect if m.label == "Pinned nodes").value == choices[:2]
    assert next(s for s in again.selectbox if s.label.startswith("Node")).value == choices[1]
    assert next(t for t in again.text_area if t.label == "Notes").value == f"the name mover\n{choices[0]}: top node"
    redrawn = page_figures(again)[0]
    assert any(a.get("text") == "names" for a in redrawn["layout"].get("annotations", []))
    hovers = [h for trace in redrawn["data"] if trace.get("hovertext") for h in trace["hovertext"]]
    assert any("note: top node" in h for h in hovers)
