"""What a dictionary's latents write, read like neurons: each latent's decoder row as a
residual-stream direction, read through the final norm and the unembedding.

- residual SAE (`hook_resid_post`): the decoder row is a residual direction already;
- transcoder (`mlp`): the row is written to the MLP's output, which the residual adds as it is;
- attention-output SAE (`attn.hook_z`): the row lives before the output projection, all heads
  concatenated ([n_heads * d_head]); the residual receives sum_h row_h @ W_O[h] (Kissane et
  al. 2024), so the row goes through W_O first.

The read-out is the neuron atlas's (`analyses.kinds.neurons`): the final norm's centring and
scale weight (`final_norm_reader`), then W_U, in bounded chunks (`chunk_size`); the score is
the direct effect on each token's logit per unit of the latent's activation.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from analyses.core.errors import SpecError, UserError
from analyses.dictionaries import formats, reference
from analyses.dictionaries import sites as st
from analyses.dictionaries.coder import SparseCoder
from analyses.kinds.neurons import chunk_size, final_norm_reader


@dataclass(frozen=True)
class Dictionary:
    """A dictionary loaded for one model: where it reads and its weights."""

    site: st.Site
    coder: SparseCoder
    fingerprint: str  # reference.fingerprint: its config and weights


_LOADED: OrderedDict[tuple, Dictionary] = OrderedDict()  # a few recent dictionaries, by content
_LOADED_LOCK = threading.Lock()
KEEP = 4


def load_for(loaded, model: str, name: str) -> Dictionary:
    """The dictionary `name` (a site or a directory) checked against the loaded model: its
    site is one of the model's, its width fits, and the weights it was trained on (when its
    config names them) are the model's (SpecErrors name `dictionary`). The last
    few are kept, by the model's and the files' content (read-only: nothing writes to them)."""
    key = (loaded.fingerprint, str(next(loaded.bridge.parameters()).device), reference.fingerprint(model, name))
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    dictionary = _load(loaded, model, name)
    with _LOADED_LOCK:
        _LOADED[key] = dictionary
        while len(_LOADED) > KEEP:
            _LOADED.popitem(last=False)
    return dictionary


def _load(loaded, model: str, name: str) -> Dictionary:
    folder = reference.resolve(model, name)
    coder = formats.load(folder)
    cfg = loaded.bridge.cfg
    if not coder.cfg.site:
        raise SpecError("dictionary", f"{folder}: its cfg.json names no site (hook_name)")
    try:
        site = st.parse(coder.cfg.site, cfg.n_layers)
    except UserError as err:  # the site's own message
        raise SpecError("dictionary", str(err)) from None
    trained_on = coder.cfg.model_fingerprint
    if trained_on and trained_on != loaded.fingerprint:  # its latents would mean nothing here
        raise SpecError("dictionary", f"{folder}: trained on other weights (model fingerprint "
                                      f"{trained_on[:12]}, this model's {loaded.fingerprint[:12]})")
    width = st.site_width(site, cfg)
    if width != coder.cfg.d_in:
        raise SpecError("dictionary", f"{folder}: d_in {coder.cfg.d_in} does not fit {site.name} of this "
                                      f"model (width {width}): it belongs to another model")
    device = next(loaded.bridge.parameters()).device
    coder.requires_grad_(False)  # shared between runs: gradients are taken on activations only
    return Dictionary(site, coder.to(device).eval(), reference.fingerprint(model, name))


@torch.no_grad()
def residual_directions(bridge, site: st.Site, W_dec: Float[Tensor, "latent d_in"]
                        ) -> Float[Tensor, "latent d_model"]:
    """What one unit of each latent adds to the residual stream."""
    if site.kind != "attn":
        return W_dec
    W_O = bridge.blocks[site.layer].attn.W_O  # [n_heads, d_head, d_model]
    per_head = W_dec.reshape(W_dec.shape[0], W_O.shape[0], W_O.shape[1])  # [latent, head, d_head]
    return torch.einsum("lhd,hdm->lm", per_head.to(W_O.dtype), W_O)


def _score_chunks(bridge, directions: Tensor):
    """(start, [chunk, d_vocab] direct logit effects) over the latents in bounded chunks."""
    read: Callable[[Tensor], Tensor] = final_norm_reader(bridge, True)
    w_u = bridge.W_U  # [d_model, d_vocab]
    step = chunk_size(w_u.shape[1])
    for start in range(0, directions.shape[0], step):
        yield start, (read(directions[start:start + step].to(w_u.dtype)) @ w_u).float()


@torch.no_grad()
def logit_effects(bridge, directions: Float[Tensor, "latent d_model"], k: int
                  ) -> tuple[Float[Tensor, "latent k"], Int[Tensor, "latent k"],
                             Float[Tensor, "latent k"], Int[Tensor, "latent k"]]:
    """Each latent's `k` most promoted tokens (scores, ids; strongest first) and `k` most
    suppressed (most negative first)."""
    k = min(k, bridge.W_U.shape[1])
    parts = [[], [], [], []]
    for _, scores in _score_chunks(bridge, directions):
        top, bottom = scores.topk(k, dim=-1), scores.topk(k, dim=-1, largest=False)
        for part, value in zip(parts, (top.values, top.indices, bottom.values, bottom.indices)):
            part.append(value.cpu())
    return tuple(torch.cat(p) for p in parts)


@torch.no_grad()
def token_promoters(bridge, directions: Float[Tensor, "latent d_model"], k: int
                    ) -> tuple[Float[Tensor, "k vocab"], Int[Tensor, "k vocab"]]:
    """For every token, the `k` latents whose direct effect on its logit is highest (scores,
    latent ids; strongest first): the reverse search, kept whole for SQL."""
    k = min(k, directions.shape[0])
    best_values = best_ids = None
    for start, scores in _score_chunks(bridge, directions):
        ids = torch.arange(start, start + scores.shape[0]).unsqueeze(1).expand_as(scores)  # [chunk, vocab]
        values = scores.cpu() if best_values is None else torch.cat([best_values, scores.cpu()])
        latents = ids if best_ids is None else torch.cat([best_ids, ids])
        top = values.topk(min(k, values.shape[0]), dim=0)  # over latents, per token
        best_values, best_ids = top.values, latents.gather(0, top.indices)
    return best_values, best_ids
