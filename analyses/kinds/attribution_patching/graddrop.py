"""AtP*'s GradDrop (Kramár et al. 2024): an effect can cancel between paths, so for each
layer l one more backward pass drops the gradient through block l's writes to the residual
stream (its attention and MLP outputs), and atp(n) = 1/(L-1) * sum_l |atp_l(n)| — an
estimate of the effect's *size*. All L passes are rows of one batch: row 1 + l drops block l
(row 0 keeps every gradient)."""
from __future__ import annotations

import torch
from torch import Tensor


def dropped_rows(n_layers: int) -> dict[str, int]:
    """Hook name of each block's residual write -> the batch row that drops its gradient."""
    return {f"blocks.{layer}.{write}": 1 + layer for layer in range(n_layers)
            for write in ("hook_attn_out", "hook_mlp_out")}


def drop_gradient(activation: Tensor, row: int) -> Tensor:
    """`activation` [rows, ...] with row `row` detached: the same values, no gradient back."""
    keep = torch.ones(activation.shape[0], dtype=torch.bool, device=activation.device)
    keep[row] = False
    keep = keep.view(-1, *([1] * (activation.ndim - 1)))
    return torch.where(keep, activation, activation.detach())


def size_estimate(per_row: Tensor, n_layers: int) -> Tensor:
    """[rows, ...] AtP per gradient row -> the GradDrop estimate 1/(L-1) Σ_l |atp_l| [...]."""
    return per_row[1:].abs().sum(0) / (n_layers - 1)
