"""The sparsity page on the tiny GPT-2: its figures drawn, and links from the neurons that
fire most and least often to their neuron-atlas entries."""
from urllib.parse import parse_qsl

from test_pages import assert_clean, errors, figures, open_page, spec_query

from app.routes import PAGES


def test_sparsity_page_draws_and_links_neurons_to_the_atlas(tiny_gpt2_dir, private_cache):
    query = spec_query("sparsity", tiny_gpt2_dir, prompt="Once upon a time there was a little girl named Lily.",
                       p="5,20")
    at = open_page(PAGES["sparsity"], query)
    assert_clean(at)
    assert not at.error, errors(at)
    titles = [fig["layout"]["title"]["text"] for fig in figures(at)]
    assert any(t.startswith("PPL-p% sparsity by layer") for t in titles)
    assert any(t.startswith("How often each neuron fires") for t in titles)
    atlas = [dict(parse_qsl(link.proto.query_string)) for link in at.get("page_link")
             if "kind=neurons" in link.proto.query_string]
    assert len(atlas) == 16  # 8 that fire most often, 8 least
    assert all({"layer", "neuron"} <= set(q) and q["model"] == str(tiny_gpt2_dir) for q in atlas)
