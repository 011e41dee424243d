"""Where a graph's latent node links to: the latent's own page (its dashboard), through the
one link function every page uses (`analyses.core.latent_links`), so the graph page never
spells another page's link."""
from __future__ import annotations

from pathlib import Path

from analyses.core.latent_links import latent_link


def latent_url(model: str, layer: int, latent: int, transcoders: str | None = None, base: str = "") -> str:
    """The latent page's URL for `latent` of layer `layer`'s transcoder: the model's own
    (`blocks.L.mlp`), or the one in the graph's `transcoders` folder."""
    site = f"blocks.{int(layer)}.mlp"
    dictionary = str(Path(transcoders) / site) if transcoders else site
    return latent_link(model, dictionary, latent, base)
