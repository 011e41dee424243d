"""A prompt read through a sparse dictionary (an SAE or a transcoder): which latents fire at
each position, what each writes toward, and what the dictionary leaves unexplained.

One forward, stopped after the site's block, caches the site (its input and output hooks,
`dictionaries.sites`);
the dictionary encodes the input (TopK: `k` latents a token) and reconstructs the output.
Tables:
- `activations`: per position, its `top_k` latents by activation (rank 1 = strongest; only
  latents that fire). BOS is shown, never ranked elsewhere (`analyses.kinds.bos`): no
  dictionary here saw BOS in training.
- `latents`: every latent that is among the top at some position after BOS, with its density
  on held-out text (`dictionaries.density`, the latent index's measure), its largest
  activation on the prompt, and its top and bottom logit effects: its decoder row as a
  residual direction (through W_O for attention-output SAEs) read through the final norm
  and the unembedding, as the neuron atlas reads a neuron (`dictionaries.readout`).
- `errors`: the reconstruction error's norm |y - ŷ| per position, the site's own norm |y|
  and their ratio (the part the dictionary cannot explain, never hidden). For an attention
  output the norms are of hook_z, all heads concatenated; for a transcoder, of the MLP's output.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analyses.core.catalogue import CATALOGUE
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.dictionaries import density, readout
from analyses.dictionaries.scan import read_site
from analyses.kinds.bos import first_after_bos
from analyses.kinds.tokens import prompt_tokens, token_strings, token_texts

TABLES = CATALOGUE["features"].tables  # the column orders the tables are built in
LOGIT_TOKENS = 8  # promoted and suppressed tokens listed per latent


@torch.no_grad()
def encode_prompt(loaded, dictionary: readout.Dictionary, tokens):
    """(top_acts [pos, k], top_indices [pos, k], y [pos, d], ŷ [pos, d]) on one prompt."""
    site, coder = dictionary.site, dictionary.coder
    values = read_site(loaded.bridge, tokens, site)
    x = values[site.input_hook][0].float().to(coder.W_dec.device)  # [pos, d_in]
    y = values[site.output_hook][0].float().to(coder.W_dec.device)  # [pos, d_in]
    top_acts, top_indices = coder.encode(x)
    y_hat = coder.decode(top_acts, top_indices) + coder.skip(x)
    return top_acts.cpu(), top_indices.cpu(), y.cpu(), y_hat.cpu()


def activations_table(top_acts, top_indices, inputs: list[str], top_k: int) -> pd.DataFrame:
    """Each position's `top_k` firing latents (the TopK code is sorted already)."""
    k = min(top_k, top_acts.shape[1])
    values, latents = top_acts[:, :k].numpy(), top_indices[:, :k].numpy()  # [pos, k]
    position, rank = np.meshgrid(np.arange(values.shape[0]), np.arange(1, k + 1), indexing="ij")
    fired = values.ravel() > 0  # TopK picks zeros where fewer than k latents fire
    where = position.ravel()[fired]
    return pd.DataFrame({"position": where, "token": np.array(inputs, dtype=object)[where],
                         "rank": rank.ravel()[fired], "latent": latents.ravel()[fired],
                         "value": values.ravel()[fired].astype(float)})


def errors_table(y, y_hat, inputs: list[str]) -> pd.DataFrame:
    error = (y - y_hat).double().norm(dim=-1).numpy()  # [pos]
    norm = y.double().norm(dim=-1).numpy()
    return pd.DataFrame({"position": np.arange(len(inputs)), "token": inputs, "error_norm": error,
                         "norm": norm, "relative": error / np.where(norm > 0, norm, np.nan)})


def latents_table(bridge, dictionary: readout.Dictionary, shown: np.ndarray, max_values: np.ndarray,
                  rates: np.ndarray) -> pd.DataFrame:
    """Per latent shown (strongest first): density, max on the prompt, and its promoted then
    its suppressed tokens (rank 1 = strongest), built in that order in one frame."""
    rows = dictionary.coder.W_dec[torch.tensor(shown, device=dictionary.coder.W_dec.device)]
    directions = readout.residual_directions(bridge, dictionary.site, rows)
    top_v, top_i, bottom_v, bottom_i = readout.logit_effects(bridge, directions, LOGIT_TOKENS)
    k, n = top_v.shape[1], len(shown)
    ids = torch.cat([top_i, bottom_i], dim=1).numpy().ravel()  # [latent * 2k]: promote, then suppress
    per_row = 2 * k
    return pd.DataFrame({
        "latent": np.repeat(shown, per_row), "density": np.repeat(rates[shown], per_row),
        "max_value": np.repeat(max_values, per_row),
        "direction": np.tile(np.repeat(np.array(["promote", "suppress"], dtype=object), k), n),
        "rank": np.tile(np.arange(1, k + 1), 2 * n), "token_id": ids, "token_str": token_texts(bridge, ids),
        "score": torch.cat([top_v, bottom_v], dim=1).numpy().ravel().astype(float)})


def strongest_after_bos(activations: pd.DataFrame, first: int) -> tuple[np.ndarray, np.ndarray]:
    """(latents, their largest value) over the positions after BOS, strongest first."""
    after = activations[activations["position"] >= first]
    latents, where = np.unique(after["latent"].to_numpy(), return_inverse=True)
    peak = np.full(len(latents), -np.inf)
    np.maximum.at(peak, where, after["value"].to_numpy())
    order = np.argsort(-peak, kind="stable")
    return latents[order].astype(np.int64), peak[order]


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    spec = spec.with_defaults()
    bridge = model.bridge
    tokens = prompt_tokens(bridge, spec.prompt)
    dictionary = readout.load_for(model, spec.model, spec.dictionary)
    progress(0.05, "reading each latent's density (measured once per dictionary)")
    rates = density.firing_rates(model, dictionary, progress=lambda f, m: progress(0.05 + 0.8 * f, m))
    progress(0.9, "encoding the prompt")
    top_acts, top_indices, y, y_hat = encode_prompt(model, dictionary, tokens)
    inputs = token_strings(bridge, tokens[0])
    first = first_after_bos(bridge)
    activations = activations_table(top_acts, top_indices, inputs, spec.top_k)
    latents = latents_table(bridge, dictionary, *strongest_after_bos(activations, first), rates)
    progress(1.0, "done")
    return Result(spec=spec, tables={  # each built in its catalogued column order
        "activations": activations, "latents": latents, "errors": errors_table(y, y_hat, inputs),
    }, meta={"site": dictionary.site.name, "site_kind": dictionary.site.kind,
             "num_latents": dictionary.coder.num_latents, "k": dictionary.coder.cfg.k,
             "dictionary_fingerprint": dictionary.fingerprint, "density_tokens": density.DENSITY_TOKENS,
             "first_after_bos": first})
