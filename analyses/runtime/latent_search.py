"""Search a stored latent index with SQL (the neuron atlas's way: its tables are real
DuckDB tables, `tbl_latent_index_<table>_v<n>`, one row per table row and `result_key`):

- `promoting(token)`: the latents whose direct logit effect on a token is highest, from the
  `promoters` table (every token's top latents, computed exactly over all latents);
- `firing_on(token)`: the latents whose top-activating contexts land on a token most often,
  from the `contexts` table.
Each reads one index (the `result_key` of its latent_index spec: `service.result_key`).
"""
from __future__ import annotations

import pandas as pd

from analyses.core.catalogue import CATALOGUE
from analyses.runtime.store import table_name


def _table(name: str) -> str:
    return table_name("latent_index", name, CATALOGUE["latent_index"].version)


def promoting(store, index_key: str, token: str, limit: int = 10) -> pd.DataFrame:
    """Columns latent, score, rank: the `limit` latents that most promote `token` (its text,
    leading space kept), strongest first; empty when the index has no such token."""
    return store.sql(f"SELECT latent, score, rank FROM {_table('promoters')} "
                     "WHERE result_key = ? AND token_str = ? ORDER BY score DESC, latent LIMIT ?",
                     [index_key, token, int(limit)])


def firing_on(store, index_key: str, token: str, limit: int = 10) -> pd.DataFrame:
    """Columns latent, contexts, max_value: the latents with the most top contexts on
    `token`, then the strongest."""
    return store.sql(f"SELECT latent, count(*) AS contexts, max(value) AS max_value "
                     f"FROM {_table('contexts')} WHERE result_key = ? AND token_str = ? "
                     "GROUP BY latent ORDER BY contexts DESC, max_value DESC, latent LIMIT ?",
                     [index_key, token, int(limit)])
