"""The steering page offers a dictionary latent (method=feature, clamp) and the attribution
page shows a dictionary's latents, from their links, on the embedded model."""
import pytest
from test_pages import DEFAULT_MODEL_CONFIG, assert_clean, errors, figures, open_page, spec_query

from app.routes import PAGES

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL_CONFIG.is_file(), reason="the embedded model is not there")
FRANCE, GERMANY = "The capital of France is", "The capital of Germany is"
SITE = "blocks.1.hook_resid_post"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))


def titles(at) -> list[str]:
    return [f["layout"]["title"]["text"] for f in figures(at)]


def test_a_feature_link_steers_with_the_latent_and_names_it(model_roots):
    at = open_page(PAGES["steering"], spec_query("steering", "default", prompt=FRANCE, method="feature",
                                                 dictionary=SITE, latent=872, coeff="0,10", answer=" Berlin",
                                                 wrong=" Paris", max_new_tokens=3))
    assert_clean(at)
    assert not at.error, errors(at)
    assert at.selectbox(key="steering:method").value == "feature"  # drawn without contrast texts
    assert at.text_input(key="steering:dictionary").value == SITE
    assert any("latent 872" in t and "decoder direction" in t for t in titles(at)), titles(at)
    assert any("latent 872 of" in c.value.replace("\\", "") for c in at.caption)


def test_a_clamp_link_knocks_the_latent_out(model_roots):
    at = open_page(PAGES["steering"], spec_query("steering", "default", prompt=FRANCE, dictionary=SITE,
                                                 latent=872, clamp="0", answer=" Berlin", wrong=" Paris",
                                                 max_new_tokens=3))
    assert_clean(at)
    assert not at.error, errors(at)
    assert any("latent 872 of blocks.1.hook_resid_post zeroed" in c.value.replace("\\", "") for c in at.caption)


def test_the_attribution_page_shows_a_dictionarys_latents(model_roots):
    at = open_page(PAGES["attribution_patching"], spec_query(
        "attribution_patching", "default", clean=GERMANY, corrupted=FRANCE, answer=" Berlin", wrong=" Paris",
        dictionary=SITE))
    assert_clean(at)
    assert not at.error, errors(at)
    shown = titles(at)
    assert any(t.startswith("Latents of blocks.1.hook_resid_post") for t in shown), shown
    assert any("largest |AtP|" in t for t in shown)
    assert any("AtP estimate against exact patching" in t for t in shown)
