"""The latent index: every latent's dashboard, built once per dictionary over held-out text
(Bricken et al. 2023, "Towards Monosemanticity", and Neuronpedia's feature dashboards).

One pass over `corpus_tokens` tokens of the eval split (`dictionaries.scan`) gives, per latent:
- `latents`: density (share of tokens it fires on), firing count, max and mean activation;
- `contexts`: its `top_k` top-activating tokens (document, position, value), and
  `context_tokens`: each with `WINDOW` neighbours each side and the latent's value on each
  (offset 0 is the activating token), to highlight;
- `histogram`: its nonzero activations in `HISTOGRAM_BINS` bins from 0 to its maximum;
and from the weights alone (`dictionaries.readout`):
- `logit_effects`: its top and bottom tokens by direct logit effect (decoder row through W_O
  for attention outputs, the final norm and W_U), as the neuron atlas reads neurons;
- `promoters`: for every token, the `PROMOTERS` latents that most promote it — the reverse
  search as a real table, so "which latents promote ' Paris'" is one SQL query
  (`analyses.runtime.latent_search`);
- `heads` (attention-output dictionaries): each latent's decoder norm split by head
  (`sites.head_shares`; shares sum to 1).
The result is stored like any other (`tbl_latent_index_<table>_v<n>`): the latent page and
the searches read it from the store.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analyses.core.catalogue import CATALOGUE
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.dictionaries import readout
from analyses.dictionaries import sites as st
from analyses.dictionaries.scan import WINDOW, histograms, scan
from analyses.kinds.tokens import token_texts

TABLES = CATALOGUE["latent_index"].tables
HISTOGRAM_BINS = 24
LOGIT_TOKENS = 10  # promoted and suppressed tokens listed per latent
PROMOTERS = 10  # latents kept per token for the reverse search


def latents_table(found) -> pd.DataFrame:
    fires = found.fires.astype(np.int64)
    return pd.DataFrame({"latent": np.arange(len(fires)), "density": found.density, "fires": fires,
                         "max_value": histograms(found.active_latents, found.active_values, len(fires), 1)[1],
                         "mean_value": found.sums / np.maximum(fires, 1)})


def contexts_tables(bridge, found) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The top contexts (value > 0 only) and their neighbourhoods, in long form."""
    values = found.top_values.numpy()  # [k, latent]
    rank, latent = np.nonzero(values > 0)
    doc, pos = found.top_docs.numpy()[rank, latent], found.top_positions.numpy()[rank, latent]
    centre = found.window_tokens.numpy()[rank, latent, WINDOW]
    contexts = pd.DataFrame({"latent": latent, "rank": rank + 1, "doc": doc, "position": pos,
                             "value": values[rank, latent].astype(float), "token_id": centre,
                             "token_str": token_texts(bridge, centre)})
    contexts = contexts.sort_values(["latent", "rank"], kind="stable").reset_index(drop=True)
    win_tokens = found.window_tokens.numpy()[contexts["rank"] - 1, contexts["latent"]]  # [context, w]
    win_values = found.window_values.numpy()[contexts["rank"] - 1, contexts["latent"]]
    width = win_tokens.shape[1]
    row, col = np.nonzero(win_tokens >= 0)  # off-document neighbours left out
    ids = win_tokens[row, col]
    neighbours = pd.DataFrame({
        "latent": contexts["latent"].to_numpy()[row], "rank": contexts["rank"].to_numpy()[row],
        "offset": col - WINDOW, "position": contexts["position"].to_numpy()[row] + col - WINDOW,
        "token_id": ids, "token_str": token_texts(bridge, ids),
        "value": win_values[row, col].astype(float)})
    assert width == 2 * WINDOW + 1
    return contexts, neighbours


def histogram_table(found, num_latents: int) -> pd.DataFrame:
    counts, top = histograms(found.active_latents, found.active_values, num_latents, HISTOGRAM_BINS)
    alive = np.nonzero(top > 0)[0]
    latent, b = np.repeat(alive, HISTOGRAM_BINS), np.tile(np.arange(HISTOGRAM_BINS), len(alive))
    width = top[latent] / HISTOGRAM_BINS
    return pd.DataFrame({"latent": latent, "bin": b, "low": b * width, "high": (b + 1) * width,
                         "count": counts[latent, b]})


def effects_tables(bridge, dictionary: readout.Dictionary) -> tuple[pd.DataFrame, pd.DataFrame]:
    directions = readout.residual_directions(bridge, dictionary.site, dictionary.coder.W_dec)
    top_v, top_i, bottom_v, bottom_i = readout.logit_effects(bridge, directions, LOGIT_TOKENS)
    n, k = top_v.shape
    frames = [pd.DataFrame({"latent": np.repeat(np.arange(n), k), "direction": direction,
                            "rank": np.tile(np.arange(1, k + 1), n), "token_id": ids.numpy().ravel(),
                            "token_str": token_texts(bridge, ids.numpy().ravel()),
                            "score": values.numpy().ravel().astype(float)})
              for direction, values, ids in (("promote", top_v, top_i), ("suppress", bottom_v, bottom_i))]
    effects = pd.concat(frames, ignore_index=True).sort_values(["latent", "direction", "rank"], kind="stable")
    values, latents = readout.token_promoters(bridge, directions, PROMOTERS)  # [k, vocab]
    k, vocab = values.shape
    token = np.tile(np.arange(vocab), k)
    promoters = pd.DataFrame({"token_id": token, "token_str": token_texts(bridge, token),
                              "rank": np.repeat(np.arange(1, k + 1), vocab), "latent": latents.numpy().ravel(),
                              "score": values.numpy().ravel().astype(float)})
    return effects.reset_index(drop=True), promoters.sort_values(["token_id", "rank"]).reset_index(drop=True)


def heads_table(bridge, dictionary: readout.Dictionary) -> pd.DataFrame:
    if dictionary.site.kind != "attn":
        return pd.DataFrame(columns=list(TABLES["heads"]))
    shares = st.head_shares(dictionary.coder.W_dec.detach().float().cpu(), bridge.cfg.n_heads).numpy()
    latent, head = np.meshgrid(np.arange(shares.shape[0]), np.arange(shares.shape[1]), indexing="ij")
    return pd.DataFrame({"latent": latent.ravel(), "head": head.ravel(), "share": shares.ravel().astype(float)})


@torch.no_grad()
def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    spec = spec.with_defaults()
    bridge = model.bridge
    dictionary = readout.load_for(model, spec.model, spec.dictionary)
    num_latents = dictionary.coder.num_latents
    found = scan(model, dictionary.site, dictionary.coder, spec.corpus_tokens, spec.seed, spec.top_k,
                 progress=lambda f, m: progress(0.9 * f, m))
    progress(0.9, f"logit effects of {num_latents:,} latents")
    contexts, neighbours = contexts_tables(bridge, found)
    effects, promoters = effects_tables(bridge, dictionary)
    tables = {"latents": latents_table(found), "contexts": contexts, "context_tokens": neighbours,
              "histogram": histogram_table(found, num_latents), "logit_effects": effects,
              "promoters": promoters}
    if dictionary.site.kind == "attn":  # a decoder row splits by head only before W_O
        tables["heads"] = heads_table(bridge, dictionary)
    progress(1.0, "done")
    return Result(spec=spec, tables={name: frame.loc[:, list(TABLES[name])] for name, frame in tables.items()},
                  meta={"site": dictionary.site.name, "site_kind": dictionary.site.kind,
                        "num_latents": num_latents, "k": dictionary.coder.cfg.k, "tokens": found.n_tokens,
                        "dead_share": float((found.fires == 0).mean()), "window": WINDOW,
                        "dictionary_fingerprint": dictionary.fingerprint, "n_heads": bridge.cfg.n_heads})
