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

Over a prompt set (`dataset=`, `run_set`): every row's three tables (with `example`), and
`set_latents`, one row per latent that fires after BOS anywhere in the set
(`analyses.kinds.features_set`): in how many examples and positions it fires, its mean and
largest activation where it fires, where its largest is, its logit effects and its page's link.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import UserError
from analyses.core.latent_links import latent_links
from analyses.core.progress import Progress, silent, span_of
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.dictionaries import density, readout
from analyses.dictionaries.scan import read_site
from analyses.kinds import row_batches
from analyses.kinds.bos import first_after_bos
from analyses.kinds.tokens import prompt_tokens, token_strings, token_texts

TABLES = CATALOGUE["features"].tables  # the column orders the tables are built in
LOGIT_TOKENS = 8  # promoted and suppressed tokens listed per latent


@torch.no_grad()
def encode_tokens(loaded, dictionary: readout.Dictionary, tokens):
    """(top_acts [batch, pos, k], top_indices [batch, pos, k], y [batch, pos, d], ŷ [batch, pos, d])
    of prompts of one length ([batch, pos] tokens, no padding: each row reads only itself)."""
    site, coder = dictionary.site, dictionary.coder
    values = read_site(loaded.bridge, tokens, site)
    x = values[site.input_hook].float().to(coder.W_dec.device)  # [batch, pos, d_in]
    y = values[site.output_hook].float().to(coder.W_dec.device)  # [batch, pos, d_in]
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


def latents_table(bridge, effects: LogitEffects, shown: np.ndarray, max_values: np.ndarray,
                  rates: np.ndarray) -> pd.DataFrame:
    """Per latent shown (strongest first): density, max on the prompt, and its promoted then
    its suppressed tokens (rank 1 = strongest), built in that order in one frame."""
    top_v, top_i, bottom_v, bottom_i = effects.of(shown)
    k, n = top_v.shape[1], len(shown)
    ids = torch.cat([top_i, bottom_i], dim=1).numpy().ravel()  # [latent * 2k]: promote, then suppress
    per_row = 2 * k
    return pd.DataFrame({
        "latent": np.repeat(shown, per_row), "density": np.repeat(rates[shown], per_row),
        "max_value": np.repeat(max_values, per_row),
        "direction": np.tile(np.repeat(np.array(["promote", "suppress"], dtype=object), k), n),
        "rank": np.tile(np.arange(1, k + 1), 2 * n), "token_id": ids, "token_str": token_texts(bridge, ids),
        "score": torch.cat([top_v, bottom_v], dim=1).numpy().ravel().astype(float)})


@dataclass(frozen=True)
class LogitEffects:
    """Some latents' `LOGIT_TOKENS` most promoted and most suppressed tokens, looked up by
    latent: a set run reads them once for every latent of every row."""

    latents: np.ndarray  # [n], sorted
    top_v: torch.Tensor  # [n, k] scores, strongest first
    top_i: torch.Tensor  # [n, k] token ids
    bottom_v: torch.Tensor  # [n, k] scores, most negative first
    bottom_i: torch.Tensor  # [n, k]

    @staticmethod
    def empty() -> "LogitEffects":
        values = torch.zeros(0, LOGIT_TOKENS)
        return LogitEffects(np.zeros(0, np.int64), values, values.long(), values, values.long())

    def merged(self, other: "LogitEffects") -> "LogitEffects":
        """These latents' effects and `other`'s (disjoint sets), in latent order."""
        latents = np.concatenate([self.latents, other.latents])
        order = torch.from_numpy(np.argsort(latents, kind="stable"))
        parts = (torch.cat([a, b])[order] for a, b in ((self.top_v, other.top_v), (self.top_i, other.top_i),
                                                         (self.bottom_v, other.bottom_v),
                                                         (self.bottom_i, other.bottom_i)))
        return LogitEffects(latents[order.numpy()], *parts)

    def of(self, latents: np.ndarray) -> tuple[torch.Tensor, ...]:
        """(top_v, top_i, bottom_v, bottom_i), each [len(latents), k], of these latents (all listed)."""
        rows = torch.from_numpy(np.searchsorted(self.latents, latents).astype(np.int64))
        return self.top_v[rows], self.top_i[rows], self.bottom_v[rows], self.bottom_i[rows]


_READ: "weakref.WeakKeyDictionary[readout.Dictionary, LogitEffects]" = weakref.WeakKeyDictionary()
_READ_LOCK = threading.Lock()


def logit_effects_of(bridge, dictionary: readout.Dictionary, latents: np.ndarray) -> LogitEffects:
    """Each latent's decoder row as a residual direction, read through the final norm and the
    unembedding (`readout`): its top and bottom `LOGIT_TOKENS` tokens. What a latent writes is
    fixed, so each is read once while its dictionary is loaded (`readout.load_for` keeps a
    few) and kept with it: a run reads only the latents no run has shown before. Returns the
    effects of at least `latents`."""
    latents = np.unique(np.asarray(latents, dtype=np.int64))
    with _READ_LOCK:
        known = _READ.get(dictionary)
        missing = latents if known is None else latents[~np.isin(latents, known.latents)]
        if not len(missing):  # all read before (or nothing fired after BOS: no read-out to make)
            return known if known is not None else LogitEffects.empty()
        rows = dictionary.coder.W_dec[torch.from_numpy(missing).to(dictionary.coder.W_dec.device)]
        directions = readout.residual_directions(bridge, dictionary.site, rows)
        new = LogitEffects(missing, *readout.logit_effects(bridge, directions, LOGIT_TOKENS))
        _READ[dictionary] = new if known is None else known.merged(new)
        return _READ[dictionary]


def strongest_after_bos(top_acts, top_indices, first: int, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """(latents, their largest value) over the positions after BOS, strongest first: the
    latents the `activations` table lists there (each position's first `top_k` of its sorted
    TopK code that fire), read from the code itself rather than the table."""
    values = top_acts[first:, :top_k].numpy().ravel()  # [pos after BOS * top_k]
    fired = values > 0
    latents, where = np.unique(top_indices[first:, :top_k].numpy().ravel()[fired], return_inverse=True)
    peak = np.full(len(latents), -np.inf)
    np.maximum.at(peak, where, values[fired].astype(np.float64))
    order = np.argsort(-peak, kind="stable")
    return latents[order].astype(np.int64), peak[order]


@dataclass(frozen=True)
class Reading:
    """One prompt read through a dictionary: its whole TopK code and its reconstruction."""

    inputs: list[str]  # the prompt's tokens as text, [pos]
    top_acts: torch.Tensor  # [pos, k], each position's code, strongest first (0: fewer fired)
    top_indices: torch.Tensor  # [pos, k], their latents
    errors: pd.DataFrame  # the `errors` table: |y - ŷ| beside |y| per position


def read_prompts(model, dictionary: readout.Dictionary, tokens) -> list[Reading]:
    """Each row of `tokens` ([batch, pos], one length) read through the dictionary."""
    top_acts, top_indices, y, y_hat = encode_tokens(model, dictionary, tokens)
    readings = []
    for i in range(tokens.shape[0]):
        inputs = token_strings(model.bridge, tokens[i])
        readings.append(Reading(inputs, top_acts[i], top_indices[i], errors_table(y[i], y_hat[i], inputs)))
    return readings


def prepared(model, spec: AnalysisSpec, progress: Progress) -> tuple[readout.Dictionary, np.ndarray]:
    """(the dictionary, its latents' densities [latent]): what every prompt's run reads."""
    dictionary = readout.load_for(model, spec.model, spec.dictionary)
    progress(0.05, "reading each latent's density (measured once per dictionary)")
    rates = density.firing_rates(model, dictionary, progress=lambda f, m: progress(0.05 + 0.8 * f, m))
    return dictionary, rates


def result_of(model, spec: AnalysisSpec, dictionary: readout.Dictionary, rates: np.ndarray,
              reading: Reading, effects: LogitEffects | None = None) -> Result:
    """The single-prompt result of `reading` (`spec` with its defaults); `effects`: the logit
    effects of (at least) its latents, read here when not given."""
    bridge = model.bridge
    first = first_after_bos(bridge)
    activations = activations_table(reading.top_acts, reading.top_indices, reading.inputs, spec.top_k)
    shown, peaks = strongest_after_bos(reading.top_acts, reading.top_indices, first, spec.top_k)
    effects = effects if effects is not None else logit_effects_of(bridge, dictionary, shown)
    return Result(spec=spec, tables={  # each built in its catalogued column order
        "activations": activations, "latents": latents_table(bridge, effects, shown, peaks, rates),
        "errors": reading.errors,
    }, meta={**dictionary_meta(dictionary), "first_after_bos": first, "n_tokens": len(reading.inputs)})


def dictionary_meta(dictionary: readout.Dictionary) -> dict:
    return {"site": dictionary.site.name, "site_kind": dictionary.site.kind,
            "num_latents": dictionary.coder.num_latents, "k": dictionary.coder.cfg.k,
            "dictionary_fingerprint": dictionary.fingerprint, "density_tokens": density.DENSITY_TOKENS}


MAX_SET_TOKENS = 4096  # batch rows x positions one forward of a set's rows may take


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    spec = spec.with_defaults()
    tokens = prompt_tokens(model.bridge, spec.prompt)
    dictionary, rates = prepared(model, spec, progress)
    progress(0.9, "encoding the prompt")
    [reading] = read_prompts(model, dictionary, tokens)
    result = result_of(model, spec, dictionary, rates, reading)
    progress(1.0, "done")
    return result


def run_set(model, spec: AnalysisSpec, prompt_set, progress: Progress = silent) -> Result:
    """Every row's single-prompt tables (with `example`; rows of one token length share a
    forward), and `set_latents`: each latent over the whole set, from every row's whole TopK
    code (not only the `top_k` a row's table lists)."""
    from analyses.kinds import features_set, sets

    dictionary, rates = prepared(model, spec.with_defaults(), progress)
    first = first_after_bos(model.bridge)
    codes: dict[str, tuple] = {}  # prompt -> (values [pos, k], latents [pos, k], tokens [pos]) after BOS
    effects: list[LogitEffects] = []  # the rows' latents' logit effects, read once by run_many

    def run_many(model, specs: list[AnalysisSpec], batch_progress) -> list[Result | UserError]:
        outcomes, read = row_batches.read_rows(
            specs, lambda single: (single.with_defaults(), prompt_tokens(model.bridge, single.prompt)))
        batches = row_batches.batches({i: (int(tokens.shape[1]),) for i, (_, tokens) in read.items()},
                                      MAX_SET_TOKENS)
        readings: dict[int, Reading] = {}
        for batch in batches:
            done = len(readings)
            batch_progress(done / len(read), "encoding the set: " + span_of(done, len(batch), len(read)))
            readings.update(zip(batch, read_prompts(model, dictionary, torch.cat([read[i][1] for i in batch]))))
        for i, reading in readings.items():
            codes[read[i][0].prompt] = (reading.top_acts[first:].numpy(), reading.top_indices[first:].numpy(),
                                        reading.inputs[first:])
        # every latent any row fires after BOS: their logit effects read once, not once a row
        effects.append(logit_effects_of(model.bridge, dictionary, np.concatenate(
            [latents[values > 0] for values, latents, _ in codes.values()] or [np.zeros(0, np.int64)])))
        for i, reading in readings.items():
            outcomes[i] = result_of(model, read[i][0], dictionary, rates, reading, effects[-1])
        return outcomes

    def set_progress(fraction: float, message: str) -> None:  # the set's rows: 0.85..0.95; "done" comes last
        if fraction < 1:
            progress(0.85 + 0.1 * fraction, message)

    result = sets.run(run, model, spec, prompt_set, set_progress, run_many)
    examples = result.tables["examples"]
    per_example = [(int(i), *codes[prompt]) for i, prompt in zip(examples["example"], examples["prompt"])]
    progress(0.97, "summarising each latent over the set")
    found = features_set.set_latents_table(model.bridge, effects[-1], per_example, first, rates,
                                           lambda latents: latent_links(spec.model, spec.dictionary, latents))
    progress(1.0, "done")
    return Result(spec=result.spec, tables={**result.tables, "set_latents": found},
                  meta={**result.meta, **dictionary_meta(dictionary), "first_after_bos": first})
