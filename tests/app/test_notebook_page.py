"""The notebook page under AppTest: "Add to notebook" on a result page, the notebook's link,
edits that make a new version, notes that show no HTML, a bad link."""
from pathlib import Path
from urllib.parse import unquote

import pytest
from streamlit.testing.v1 import AppTest

from analyses import AnalysisSpec
from analyses import notebook as nb
from app import links
from app.components.display import md_escape
from app.routes import NOTEBOOK, PAGES
from helpers import copy_boxes, page_figures

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
TIMEOUT_S = 180
PROMPT = "When Mary and John went to the store, John gave a drink to"
ATTACK = "<script>window.pwned=1</script> <img src=x onerror=alert(1)> ![x](http://127.0.0.1:1/x.png) **bold**"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))


def open_page(page: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT_S).run()
    at.switch_page(page)
    if query is not None:
        at.query_params = dict(query)
    return at.run()


def html_bodies(at: AppTest) -> list[str]:
    return [element.proto.body for element in at.main.get("html")]


def lens(model_dir) -> AnalysisSpec:
    return AnalysisSpec(kind="logit_lens", model=str(model_dir), prompt=PROMPT, top_k=2)


def test_add_to_notebook_on_a_result_page_then_the_notebook_page(tiny_gpt2_dir):
    spec = lens(tiny_gpt2_dir)
    at = open_page(PAGES["logit_lens"], links.params(spec))
    assert not at.exception
    add = [b for b in at.button if b.label == "Add to notebook"]
    assert len(add) == 1  # one button, under the result
    add[0].click().run()
    assert not at.exception
    assert any("Added as step 1" in s.value for s in at.success)
    reference = at.session_state["notebook:current"]
    assert nb.resolve(reference).steps[0].link == spec.to_query()
    opener = [link.proto for link in at.get("page_link") if "Open the notebook" in link.proto.label]
    assert opener and unquote(opener[0].query_string) == f"notebook={reference}"

    at.switch_page(NOTEBOOK).run()  # the same session: its notebook, without a link
    assert not at.exception
    assert at.query_params["notebook"] == [reference] or at.query_params["notebook"] == reference
    assert len(page_figures(at)) == 1
    assert links.notebook_url(reference, links.DEFAULT_BASE_URL) in copy_boxes(at)
    assert [b.label for b in at.get("download_button")] == ["Download HTML", "Download Markdown"]


def test_a_note_shows_markdown_and_never_html_or_images(tiny_gpt2_dir):
    book = nb.build([lens(tiny_gpt2_dir).to_query()], notes=[ATTACK], title="Safe <i>notes</i>",
                    intro=ATTACK)
    reference = nb.save(book)
    at = open_page(NOTEBOOK, {"notebook": reference})
    assert not at.exception
    notes = [body for body in html_bodies(at) if "workbench-note" in body]
    assert len(notes) == 2  # the introduction and the step's note
    for body in notes:
        assert "<img" not in body and "<script" not in body and "127.0.0.1:1" not in body
        assert "<strong>bold</strong>" in body and "&lt;script&gt;" in body
    assert at.title[0].value == md_escape("Safe <i>notes</i>")  # shown as text


def test_an_edit_makes_a_new_version_and_points_the_url_at_it(tiny_gpt2_dir):
    book = nb.build([lens(tiny_gpt2_dir).to_query()], title="Edited")
    at = open_page(NOTEBOOK, {"notebook": nb.save(book)})
    note = [t for t in at.text_area if t.label.startswith("Note")][0]
    note.input("L0H0 **matters**").run()
    assert not at.exception
    changed = book.with_edit(0, note="L0H0 **matters**")
    assert at.session_state["notebook:current"] == changed.reference
    assert nb.resolve(changed.reference) == changed
    assert any("<strong>matters</strong>" in body for body in html_bodies(at))
    add_link = at.text_input(key=[k for k in at.session_state if str(k).endswith(":add-link")][0])
    add_link.input("http://x/logit_lens?kind=logit_lens&prompt=Hi&top_k=abc")
    [b for b in at.button if b.label == "Add the step"][0].click().run()
    assert any("expected an integer" in e.value for e in at.error)
    assert at.session_state["notebook:current"] == changed.reference  # nothing changed


def test_a_bad_notebook_link_says_why():
    at = open_page(NOTEBOOK, {"notebook": "sha256:" + "0" * 64})
    assert not at.exception
    assert any("is not in this store" in e.value for e in at.error)
    at = open_page(NOTEBOOK, {"notebook": "<script>"})
    assert any("neither a shipped notebook" in e.value for e in at.error)
