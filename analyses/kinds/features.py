"""A prompt read through a sparse dictionary (an SAE or a transcoder): which latents fire at
each position, what each writes toward, and what the dictionary leaves unexplained.

One forward caches the dictionary's site (its input and output hooks, `dictionaries.sites`);
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
from analyses.dictionaries import sites as st
from analyses.kinds.bos import first_after_bos
from analyses.kinds.tokens import prompt_tokens, token_strings, token_texts

TABLES = CATALOGUE["features"].tables
LOGIT_TOKENS = 8  # promoted and suppressed tokens listed per latent


@torch.no_grad()
def encode_prompt(loaded, dictionary: readout.Dictionary, tokens):
    """(top_acts [pos, k], top_indices [pos, k], y [pos, d], ŷ [pos, d]) on one prompt."""
    site, coder = dictionary.site, dictionary.coder
    values = st.read(loaded.bridge, tokens, [site])
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
    frame = pd.DataFrame({"position": position.ravel(), "token": np.array(inputs, dtype=object)[position.ravel()],
                          "rank": rank.ravel(), "latent": latents.ravel(), "value": values.ravel().astype(float)})
    return frame[frame["value"] > 0].reset_index(drop=True)


def errors_table(y, y_hat, inputs: list[str]) -> pd.DataFrame:
    error = (y - y_hat).double().norm(dim=-1).numpy()  # [pos]
    norm = y.double().norm(dim=-1).numpy()
    return pd.DataFrame({"position": np.arange(len(inputs)), "token": inputs, "error_norm": error,
                         "norm": norm, "relative": error / np.where(norm > 0, norm, np.nan)})


def latents_table(bridge, dictionary: readout.Dictionary, shown: np.ndarray, max_values: np.ndarray,
                  rates: np.ndarray) -> pd.DataFrame:
    """Per latent shown (strongest first): density, max on the prompt, logit effects."""
    rows = dictionary.coder.W_dec[torch.tensor(shown, device=dictionary.coder.W_dec.device)]
    directions = readout.residual_directions(bridge, dictionary.site, rows)
    top_v, top_i, bottom_v, bottom_i = readout.logit_effects(bridge, directions, LOGIT_TOKENS)
    k = top_v.shape[1]
    frames = []
    for direction, values, ids in (("promote", top_v, top_i), ("suppress", bottom_v, bottom_i)):
        frames.append(pd.DataFrame({
            "latent": np.repeat(shown, k), "density": np.repeat(rates[shown], k),
            "max_value": np.repeat(max_values, k), "direction": direction,
            "rank": np.tile(np.arange(1, k + 1), len(shown)), "token_id": ids.numpy().ravel(),
            "token_str": token_texts(bridge, ids.numpy().ravel()), "score": values.numpy().ravel().astype(float)}))
    order = {latent: i for i, latent in enumerate(shown)}
    table = pd.concat(frames, ignore_index=True)
    table["_order"] = table["latent"].map(order)
    table = table.sort_values(["_order", "direction", "rank"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


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
    activations = activations_table(top_acts, top_indices, inputs, spec.top_k)
    ranked = activations[activations["position"] >= first_after_bos(bridge)]
    strongest = ranked.groupby("latent")["value"].max().sort_values(ascending=False, kind="stable")
    latents = latents_table(bridge, dictionary, strongest.index.to_numpy(dtype=np.int64),
                            strongest.to_numpy(dtype=float), rates)
    progress(1.0, "done")
    return Result(spec=spec, tables={
        "activations": activations.loc[:, list(TABLES["activations"])],
        "latents": latents.loc[:, list(TABLES["latents"])],
        "errors": errors_table(y, y_hat, inputs).loc[:, list(TABLES["errors"])],
    }, meta={"site": dictionary.site.name, "site_kind": dictionary.site.kind,
             "num_latents": dictionary.coder.num_latents, "k": dictionary.coder.cfg.k,
             "dictionary_fingerprint": dictionary.fingerprint, "density_tokens": density.DENSITY_TOKENS,
             "first_after_bos": first_after_bos(bridge)})
