"""Where a graph's latent node links to: the latent's own page (its dashboard).

One small function, so the graph page never spells another page's link: the latent page
(the `features` kind's, issue 27) plugs in here when it is registered; until then there is
no link and the caller says so.
"""
from __future__ import annotations

from urllib.parse import urlencode

from app.routes import PAGES, url_path

LATENT_KIND = "features"


def latent_url(model: str, layer: int, latent: int, prompt: str | None = None, base: str = "") -> str | None:
    """The latent page's URL for `latent` of layer `layer`'s transcoder, or None where the app
    has no latent page yet."""
    if LATENT_KIND not in PAGES:
        return None
    query = {"kind": LATENT_KIND, "model": model, "dictionary": f"blocks.{int(layer)}.mlp",
             "latent": int(latent)}
    if prompt:
        query["prompt"] = prompt
    return f"{base.rstrip('/')}/{url_path(LATENT_KIND)}?{urlencode(query)}"
