"""The link to one latent's page (its dashboard), for any code that names a latent: the
prompt view, attribution graphs' nodes, a notebook. Pure and torch-free.

    latent_link("default", "blocks.1.hook_resid_post", 37)
    -> "latent_index?model=default&dictionary=blocks.1.hook_resid_post&view.latent=37"

The page shows the `latent_index` result of (model, dictionary) with its default corpus, so
every link to a latent of one dictionary shares one index (built once, then cached); which
latent is shown is view state (`view.latent`), never part of the spec or the result's key.
The path is the kind's own name, as every page's is (`app.routes.url_path`).
"""
from __future__ import annotations

from .spec import VIEW_PREFIX, AnalysisSpec

LATENT_PAGE = "latent_index"  # app.routes.url_path("latent_index"): tests hold the two equal


def latent_query(model: str, dictionary: str, latent: int) -> dict[str, str]:
    """The page's query parameters (str -> str), as `st.page_link(query_params=...)` takes them."""
    spec = AnalysisSpec(kind=LATENT_PAGE, model=model, dictionary=dictionary)
    return {**{name: str(value) for name, value in spec.items()}, f"{VIEW_PREFIX}latent": str(int(latent))}


def latent_link(model: str, dictionary: str, latent: int, base: str = "") -> str:
    """The latent page's URL: relative (`latent_index?…`) or under `base` (the app's root)."""
    return latent_links(model, dictionary, [latent], base)[0]


def latent_links(model: str, dictionary: str, latents, base: str = "") -> list[str]:
    """`latent_link` of each of `latents` (one dictionary's): the page's spec is made once, so
    a table of thousands of latents (a prompt set's) links them all at the cost of one."""
    spec = AnalysisSpec(kind=LATENT_PAGE, model=model, dictionary=dictionary)
    path = f"{base.rstrip('/')}/{LATENT_PAGE}" if base else LATENT_PAGE
    head = f"{path}?{spec.to_query()}&{VIEW_PREFIX}latent="
    return [head + str(int(latent)) for latent in latents]
