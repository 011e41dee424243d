"""The absolute positions of the tokens a forward pass reads.

Without a KV cache every forward reads the whole sequence from position 0. With one,
generation reads the prompt once and then one token per step, each at the next position:
a hook sees a [batch, 1, d] tensor and cannot tell which position it is. `Positions` is
itself a hook, registered before every other one on the first block's input, and keeps
count; the interventions ask it where the current forward pass starts.
"""
from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

FIRST_HOOK = "blocks.0.hook_resid_pre"  # runs before anything a later hook can change


class Positions:
    def __init__(self, cached: bool):
        self.cached = cached  # each forward continues where the last one stopped
        self.start = 0
        self.length = 0

    def hook(self, resid: Tensor, hook) -> None:  # [batch, pos, d_model]: read, not changed
        self.start = self.start + self.length if self.cached else 0
        self.length = int(resid.shape[1])

    def current(self, device) -> Int[Tensor, "pos"]:  # noqa: F821 - a jaxtyping shape
        """The absolute positions of the forward pass now running."""
        return torch.arange(self.start, self.start + self.length, device=device)

    def fwd_hook(self) -> tuple[str, object]:
        return FIRST_HOOK, self.hook
