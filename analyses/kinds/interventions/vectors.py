"""Steering vectors: a direction in the residual stream entering a block, built from
contrast texts, added while the model reads and generates.

- `actadd` (Turner et al. 2023, Activation Addition): one pair, the difference of the
  residuals at the texts' last positions;
- `mean_diff` (Rimsky et al. 2024, Contrastive Activation Addition): the mean over pairs of
  that difference (with one pair, the same vector as `actadd`);
- `mean_centred` (Jorgensen et al. 2023): the mean residual over the positive texts minus
  the mean over the neutral text, both over every position after BOS (the negative texts
  are not used).

Whatever `positions=` says, the vector is never added at BOS (`analyses.kinds.bos`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError
from analyses.kinds.bos import first_after_bos, past_bos
from analyses.kinds.interventions.neutral import neutral_tokens
from analyses.kinds.tokens import prompt_tokens, token_texts

RESID = "blocks.{layer}.hook_resid_pre"  # the residual stream entering block `layer`
VECTOR_COLUMNS = CATALOGUE["steering"].tables["vector"]


def resid_hook(layer: int) -> str:
    return RESID.format(layer=layer)


@torch.no_grad()
def read_residuals(bridge, tokens, layers: list[int]) -> dict[int, Float[Tensor, "pos d_model"]]:
    """The residual entering each of `layers` at every position of `tokens` [1, pos]."""
    _, cache = bridge.run_with_cache(tokens, names_filter=[resid_hook(layer) for layer in layers])
    return {layer: cache[resid_hook(layer)][0].float() for layer in layers}


def mean_after_bos(bridge, residual: Float[Tensor, "pos d_model"]) -> Float[Tensor, "d_model"]:  # noqa: F821
    """A text's mean residual over its positions after BOS."""
    return past_bos(residual, first_after_bos(bridge), pos_dim=0).mean(0)


def _texts_residuals(bridge, texts: list[str], field: str, layers: list[int],
                     last: bool) -> dict[int, Float[Tensor, "text d_model"]]:
    """Per text, its residual at its last position (`last`) or its mean after BOS."""
    rows: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    for text in texts:
        read = read_residuals(bridge, prompt_tokens(bridge, text, field), layers)
        for layer in layers:
            rows[layer].append(read[layer][-1] if last else mean_after_bos(bridge, read[layer]))
    return {layer: torch.stack(found) for layer, found in rows.items()}


def steering_vectors(bridge, method: str, positive: list[str], negative: list[str],
                     layers: list[int]) -> dict[int, Float[Tensor, "d_model"]]:  # noqa: F821
    """The vector at each of `layers` (texts are checked first, naming the bad field)."""
    if method == "mean_centred":
        if negative:
            raise SpecError("negative", "mean_centred subtracts the neutral text's mean; it uses "
                                        "no negative texts (leave them out, or use mean_diff)")
        pos = _texts_residuals(bridge, positive, "positive", layers, last=False)
        neutral = read_residuals(bridge, neutral_tokens(bridge), layers)
        return {layer: pos[layer].mean(0) - mean_after_bos(bridge, neutral[layer]) for layer in layers}
    if not negative:
        raise SpecError("negative", f"{method} needs contrasting texts, one per positive text")
    if len(positive) != len(negative):
        raise SpecError("negative", f"{len(negative)} lines for {len(positive)} positive ones; "
                                    f"{method} pairs them line by line")
    if method == "actadd" and len(positive) != 1:
        raise SpecError("positive", f"actadd takes one pair; {len(positive)} were given "
                                    "(mean_diff averages over pairs)")
    pos = _texts_residuals(bridge, positive, "positive", layers, last=True)
    neg = _texts_residuals(bridge, negative, "negative", layers, last=True)
    return {layer: (pos[layer] - neg[layer]).mean(0) for layer in layers}


@torch.no_grad()
def vector_table(bridge, vectors: dict[int, Tensor], top_k: int) -> pd.DataFrame:
    """Each vector's norm and the tokens it most promotes and suppresses when read straight
    through the unembedding (no final norm: the direction alone, as the neuron atlas reads
    a neuron's output)."""
    w_u = bridge.W_U.float()  # [d_model, d_vocab]
    k = min(top_k, int(w_u.shape[1]))
    parts = []
    for layer, vector in vectors.items():
        scores = vector.to(w_u.device) @ w_u  # [d_vocab]
        for direction, ranked in (("promotes", scores), ("suppresses", -scores)):
            ids = ranked.topk(k).indices.cpu().numpy()
            parts.append(pd.DataFrame({
                "layer": layer, "norm": float(vector.norm()), "rank": np.arange(1, k + 1),
                "token_id": ids, "token_str": token_texts(bridge, ids),
                "score": scores[torch.as_tensor(ids, device=scores.device)].cpu().numpy(),
                "direction": direction}))
    return pd.concat(parts, ignore_index=True)[list(VECTOR_COLUMNS)]


def steering_hook(vector: Tensor, coeff: float, where, positions):
    """A hook adding `coeff * vector` to the residual at the positions `where` picks
    (`where(absolute positions) -> bool mask`), never at BOS."""
    def hook(resid: Tensor, hook) -> Tensor:  # [batch, pos, d_model]
        mask = where(positions.current(resid.device)) & positions.changeable(resid.device)  # [pos]
        shift = (coeff * vector).to(device=resid.device, dtype=resid.dtype)
        return resid + mask[None, :, None].to(resid.dtype) * shift
    return hook


def where_added(rule: str, prompt_length: int):
    """The positions rule of `positions=`: every position (BOS aside: `steering_hook` never
    adds there), the prompt's last, or the generated tokens' (from `prompt_length` on)."""
    if rule == "all":
        return lambda pos: torch.ones_like(pos, dtype=torch.bool)
    if rule == "last":
        return lambda pos: pos == prompt_length - 1
    return lambda pos: pos >= prompt_length
