"""One pass of a dictionary over held-out corpus text: what every latent's dashboard reads.

The text is the eval split of the dictionary token stream (`tokens.TokenStream`: held-out
draws of the embedded corpus's mixture, encoded by the model's own tokenizer), read in chunks
of documents. For each chunk: one forward to the site, the TopK code of every token, then
- firing counts and activation sums (density: the share of tokens a latent fires on);
- every nonzero activation kept as (latent, value) for the histograms (k per token);
- each latent's best `top_k` tokens so far, merged with the chunk's own best (a running top-k
  over the whole corpus, equal to sorting every activation at the end), each carrying the
  latent's values and the token ids of its neighbours (`window` each side) to highlight.

BOS tokens are never ranked nor counted (`analyses.kinds.bos`): their activations are the
attention sink's outliers, and the dictionaries never saw them in training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from analyses.core.progress import Progress, silent
from analyses.dictionaries import sites as st
from analyses.dictionaries.coder import SparseCoder
from analyses.dictionaries.tokens import TokenStream, builder_for

WINDOW = 8  # neighbours shown each side of an activating token


@dataclass(frozen=True)
class Scan:
    n_tokens: int  # tokens read (BOS excluded)
    fires: np.ndarray  # [latent] tokens each latent fired on
    sums: np.ndarray  # [latent] sum of its activations
    active_latents: np.ndarray  # [n] int: every nonzero activation's latent...
    active_values: np.ndarray  # [n] float: ...and its value
    top_values: Float[Tensor, "k latent"] | None  # best activations, descending (0: none)
    top_docs: Int[Tensor, "k latent"] | None  # their document (global index in the split)
    top_positions: Int[Tensor, "k latent"] | None  # their position in the document (0: BOS)
    window_values: Float[Tensor, "k latent w"] | None  # the latent's value at each neighbour
    window_tokens: Int[Tensor, "k latent w"] | None  # the neighbours' token ids (-1: off the document)

    @property
    def density(self) -> np.ndarray:
        return self.fires / max(self.n_tokens, 1)


def chunk_tokens(loaded, n_tokens: int, seed: int, n_ctx: int | None = None):
    """[docs, n_ctx] token chunks of the eval split covering `n_tokens` (BOS excluded)."""
    cfg = loaded.bridge.cfg
    stream = TokenStream(n_ctx=min(n_ctx or 256, cfg.n_ctx), seed=seed)
    builder = builder_for(loaded.tokenizer, stream.n_ctx)
    n_chunks = max(1, math.ceil(n_tokens / stream.tokens_per_chunk()))
    for index in range(n_chunks):
        yield index, n_chunks, torch.from_numpy(stream.chunk(builder, "eval", index))


@torch.no_grad()
def read_site(bridge, tokens: Int[Tensor, "doc pos"], site: st.Site) -> dict[str, Tensor]:
    """The site's input and output hooks ({name: [doc, pos, d]}, heads flattened), from a
    forward that stops after the site's block: nothing later changes them, and a dictionary
    read needs no logits."""
    return st.captured(bridge, tokens, {site.input_hook, site.output_hook}, stop_at_layer=site.layer + 1)


@torch.no_grad()
def codes(bridge, site: st.Site, coder: SparseCoder, tokens: Int[Tensor, "doc pos"]
          ) -> Float[Tensor, "doc pos latent"]:
    """Every token's TopK code as a dense tensor; zero at BOS tokens (never ranked)."""
    x = read_site(bridge, tokens.to(next(bridge.parameters()).device), site)[site.input_hook]
    dense = coder.dense(*coder.encode(x.float().to(coder.W_dec.device)))
    bos = bridge.tokenizer.bos_token_id
    if bos is not None:
        dense[(tokens == bos).to(dense.device)] = 0.0
    return dense


@torch.no_grad()
def scan(loaded, site: st.Site, coder: SparseCoder, n_tokens: int, seed: int = 0, top_k: int = 0,
         window: int = WINDOW, progress: Progress = silent, chunks=None) -> Scan:
    """The pass of the module docstring over `n_tokens` held-out tokens (`chunks`: an iterable
    of (index, total, [docs, pos] tokens) to read instead). top_k 0: counts only."""
    bridge = loaded.bridge
    bos = bridge.tokenizer.bos_token_id
    L = coder.num_latents
    fires = torch.zeros(L, dtype=torch.long)
    sums = torch.zeros(L, dtype=torch.float64)
    active_l, active_v = [], []
    best = None  # (values, docs, positions, window values, window tokens)
    offsets = torch.arange(-window, window + 1)  # [w]
    counted, doc_base = 0, 0
    for index, total, tokens in chunks if chunks is not None else chunk_tokens(loaded, n_tokens, seed):
        dense = codes(bridge, site, coder, tokens).cpu()  # [doc, pos, latent]
        docs, positions = tokens.shape
        counted += int((tokens != bos).sum()) if bos is not None else tokens.numel()
        fired = dense > 0
        fires += fired.sum((0, 1))
        sums += dense.double().sum((0, 1))
        where = fired.nonzero()  # [n, 3]: doc, pos, latent
        active_l.append(where[:, 2].numpy())
        active_v.append(dense[fired].numpy())
        if top_k:
            flat = dense.reshape(docs * positions, L)
            values, flat_idx = flat.topk(min(top_k, flat.shape[0]), dim=0)  # [k, latent]
            doc, pos = flat_idx // positions, flat_idx % positions
            around = pos.unsqueeze(-1) + offsets  # [k, latent, w]
            inside = (around >= 0) & (around < positions)
            clamped = around.clamp(0, positions - 1)
            doc_w = doc.unsqueeze(-1).expand_as(clamped)
            latent_w = torch.arange(L).view(1, L, 1).expand_as(clamped)
            win_values = torch.where(inside, dense[doc_w, clamped, latent_w], 0.0)
            win_tokens = torch.where(inside, tokens[doc_w, clamped], -1)
            found = (values, doc + doc_base, pos, win_values, win_tokens)
            best = found if best is None else _merge(best, found, top_k)
        doc_base += docs
        progress((index + 1) / total, f"corpus chunk {index + 1}/{total} ({counted:,} tokens)")
    values = best or (None,) * 5
    return Scan(counted, fires.numpy(), sums.numpy(), np.concatenate(active_l), np.concatenate(active_v),
                *values)


def _merge(best: tuple, found: tuple, k: int) -> tuple:
    """The best `k` per latent of two candidate sets (aligned tensors, first dim = candidate)."""
    joined = [torch.cat([a, b]) for a, b in zip(best, found)]
    order = joined[0].topk(min(k, joined[0].shape[0]), dim=0).indices  # [k, latent]
    out = []
    for tensor in joined:
        index = order.view(*order.shape, *([1] * (tensor.ndim - 2))).expand(order.shape[0], *tensor.shape[1:])
        out.append(tensor.gather(0, index))
    return tuple(out)


def histograms(latents: np.ndarray, values: np.ndarray, num_latents: int, bins: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per latent, counts of its nonzero activations in `bins` equal bins from 0 to its own
    maximum ([latent, bins]), and that maximum ([latent]; 0 for a latent that never fired)."""
    top = np.zeros(num_latents)
    np.maximum.at(top, latents, values)
    scaled = values / np.where(top[latents] > 0, top[latents], 1.0)
    which = np.minimum((scaled * bins).astype(np.int64), bins - 1)  # the maximum goes in the last bin
    counts = np.bincount(latents * bins + which, minlength=num_latents * bins).reshape(num_latents, bins)
    return counts, top
