"""The prompt view and the latent page under AppTest, on the embedded model's shipped
dictionaries: a link draws the figures, the prompt view links each latent to its page, the
latent page shows its contexts and finds latents by SQL; the latent link is one pure function."""
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analyses import AnalysisSpec
from analyses.core.latent_links import LATENT_PAGE, latent_link, latent_links, latent_query
from analyses.dictionaries import density
from app import links
from app.routes import PAGES, url_path
from helpers import page_figures

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PROMPT = "When Mary and John went to the store, John gave a drink to"
SMALL_INDEX = {"corpus_tokens": 1000, "top_k": 3}  # one chunk of documents: seconds, not minutes


@pytest.fixture(autouse=True)
def quick(tmp_path, monkeypatch):
    """Own cache; densities as a known vector (measuring them reads 100k tokens)."""
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))
    monkeypatch.setenv("ANALYSES_ACTIVATIONS", str(tmp_path / "activations"))
    monkeypatch.setattr(density, "firing_rates", lambda loaded, d, **_: np.full(d.coder.num_latents, 0.01))


def open_link(kind: str, query: dict) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300).run()
    at.switch_page(PAGES[kind])
    at.query_params = query
    return at.run()


def test_the_latent_link_opens_the_latent_page_on_its_latent():
    link = latent_link("default", "blocks.1.attn.hook_z", 37, base="http://host:8501/")
    parts = urlsplit(link)
    assert parts.path == "/" + url_path(LATENT_PAGE)
    raw = {name: [value] for name, value in parse_qsl(parts.query)}
    assert links.parse(raw, LATENT_PAGE).spec == AnalysisSpec(kind=LATENT_PAGE, dictionary="blocks.1.attn.hook_z")
    assert links.view_state(raw) == {"latent": "37"}
    assert latent_query("default", "blocks.1.attn.hook_z", 37) == {name: values[0] for name, values in raw.items()}
    # a table's links, the page's spec made once, are each latent's own link
    many = latent_links("default", "blocks.1.attn.hook_z", np.array([37, 0, 2047]), base="http://host:8501/")
    assert many == [latent_link("default", "blocks.1.attn.hook_z", v, base="http://host:8501/") for v in (37, 0, 2047)]


def test_the_prompt_view_draws_its_figures_and_links_every_latent_to_its_page():
    spec = AnalysisSpec(kind="features", prompt=PROMPT, dictionary="blocks.1.hook_resid_post")
    at = open_link("features", links.params(spec))
    assert not at.exception and not at.error, [e.value for e in at.error]
    titles = [f["layout"]["title"]["text"] for f in page_figures(at)]
    assert any(t.startswith("Latents of blocks.1.hook_resid_post") for t in titles), titles
    assert any(t.startswith("What the dictionary leaves unexplained") for t in titles), titles
    to_latents = [link.proto.query_string for link in at.get("page_link") if "view.latent=" in link.proto.query_string]
    assert to_latents and all("kind=latent_index" in q and "dictionary=blocks.1.hook_resid_post" in q
                              for q in to_latents)


def test_the_prompt_view_over_a_set_shows_each_latent_pooled_and_links_it_to_its_page():
    spec = AnalysisSpec(kind="features", dataset="facts", dictionary="blocks.1.hook_resid_post")
    at = open_link("features", links.params(spec))
    assert not at.exception and not at.error, [e.value for e in at.error]
    titles = [f["layout"]["title"]["text"] for f in page_figures(at)]
    assert any(t.startswith("Latents of blocks.1.hook_resid_post over") for t in titles), titles
    [table] = [d.value for d in at.dataframe if "page" in d.value.columns]
    assert len(table) and table["share_of_examples"].between(0, 1).all()
    for latent, url in table[["latent", "page"]].head(5).itertuples(index=False):
        query = dict(parse_qsl(urlsplit(url).query))
        assert urlsplit(url).path.endswith("/" + url_path(LATENT_PAGE))
        assert query["dictionary"] == "blocks.1.hook_resid_post" and query["view.latent"] == str(latent)


def test_the_latent_page_shows_a_latents_contexts_and_searches_the_stored_index():
    spec = AnalysisSpec(kind="latent_index", dictionary="blocks.1.attn.hook_z", **SMALL_INDEX)
    at = open_link("latent_index", {**links.params(spec), "view.latent": "5"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert next(box for box in at.number_input if box.label.startswith("Latent (")).value == 5
    assert any(m.value.startswith("Latent 5 of") for m in at.subheader)
    at.query_params["view.latent"] = "7"  # a link to another latent of this index (a search result)
    at.run()
    assert next(box for box in at.number_input if box.label.startswith("Latent (")).value == 7
    assert any(m.value.startswith("Latent 7 of") for m in at.subheader)
    titles = [f["layout"]["title"]["text"] for f in page_figures(at)]
    assert any("which heads it reads from" in t for t in titles), titles  # an attention-output dictionary
    promote = next(box for box in at.text_input if box.label.startswith("Latents that promote"))
    promote.set_value(" Mary").run()  # latents that promote ' Mary': SQL over the stored index
    assert not at.exception
    found = [link.proto.query_string for link in at.get("page_link") if "view.latent=" in link.proto.query_string]
    assert len(found) == 10, found
