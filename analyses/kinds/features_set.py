"""A dictionary's latents over a prompt set: which fire, how often, how strongly, where.

Every example's whole TopK code after BOS (each position's `k` latents, not only the
`top_k` a single run lists) pooled into one row per latent that fires anywhere: the number
and share of examples it fires in (at one position at least), of positions (over every
example's positions after BOS), its mean activation where it fires and its largest (with the
example, position and token of that largest), their product share of examples × mean (the
order of the rows and of the page's figure: frequent *and* strong first), its density on
held-out text, its most promoted and suppressed tokens (the prompt view's logit effects,
`features.logit_effects_of`) and the link to its dashboard (`analyses.core.latent_links`).
Activation values are in the dictionary's own units (its code), as in `activations.value`.
"""
from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from analyses.core.catalogue import CATALOGUE
from analyses.kinds.tokens import token_texts

COLUMNS = CATALOGUE["features"].tables["set_latents"]
SHOWN_TOKENS = 5  # promoted and suppressed tokens listed per latent (JSON lists of their text)

# one example's code after BOS: (example, values [pos, k], latents [pos, k], tokens [pos])
ExampleCode = tuple[int, np.ndarray, np.ndarray, list[str]]


def firings(codes: list[ExampleCode], first: int) -> pd.DataFrame:
    """One row per (example, position, latent) that fires: `value` > 0 (TopK keeps zeros
    where fewer than k latents are positive). Positions are the prompt's own (BOS included)."""
    parts = []
    for example, values, latents, tokens in codes:
        position, _ = np.meshgrid(np.arange(values.shape[0]), np.arange(values.shape[1]), indexing="ij")
        fired = values.ravel() > 0
        where = position.ravel()[fired]
        parts.append(pd.DataFrame({"example": example, "position": where + first,
                                   "token": np.array(tokens, dtype=object)[where],
                                   "latent": latents.ravel()[fired].astype(np.int64),
                                   "value": values.ravel()[fired].astype(np.float64)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["example", "position", "token", "latent", "value"])


def latent_statistics(fired: pd.DataFrame, n_examples: int, n_positions: int) -> pd.DataFrame:
    """Per latent: examples and positions it fires at, mean and max where it fires, and where
    its max is (the first such place, in example then position order, on a tie)."""
    stats = fired.groupby("latent").agg(n_examples=("example", "nunique"), n_positions=("value", "size"),
                                        mean_value=("value", "mean"), max_value=("value", "max"))
    strongest = (fired.sort_values("value", ascending=False, kind="stable").drop_duplicates("latent")
                 .set_index("latent")[["example", "position", "token"]]
                 .rename(columns={"example": "max_example", "position": "max_position", "token": "max_token"}))
    stats = stats.join(strongest).reset_index()
    stats["share_of_examples"] = stats["n_examples"] / max(n_examples, 1)
    stats["share_of_positions"] = stats["n_positions"] / max(n_positions, 1)
    stats["share_x_mean"] = stats["share_of_examples"] * stats["mean_value"]
    return stats.sort_values(["share_x_mean", "latent"], ascending=[False, True], ignore_index=True)


def set_latents_table(bridge, effects, codes: list[ExampleCode], first: int, rates: np.ndarray,
                      links: Callable[[np.ndarray], list[str]]) -> pd.DataFrame:
    """The `set_latents` table (columns as catalogued), strongest share × mean first; `effects`
    (`features.LogitEffects`) holds the logit effects of every latent that fires; `links(latents)`
    their pages' links."""
    n_positions = sum(values.shape[0] for _, values, _, _ in codes)
    stats = latent_statistics(firings(codes, first), len(codes), n_positions)
    latents = stats["latent"].to_numpy(dtype=np.int64)
    if len(latents):
        top_v, top_i, _, bottom_i = effects.of(latents)
        promotes = token_texts(bridge, top_i[:, :SHOWN_TOKENS].numpy())
        suppresses = token_texts(bridge, bottom_i[:, :SHOWN_TOKENS].numpy())
        stats["promotes"] = [json.dumps(list(row), ensure_ascii=False) for row in promotes]
        stats["suppresses"] = [json.dumps(list(row), ensure_ascii=False) for row in suppresses]
        stats["top_promote_score"] = top_v[:, 0].numpy().astype(np.float64)
    else:
        stats = stats.assign(promotes=[], suppresses=[], top_promote_score=[])
    stats["density"] = rates[latents] if len(latents) else []
    stats["dashboard"] = links(latents) if len(latents) else []
    return stats[list(COLUMNS)]
