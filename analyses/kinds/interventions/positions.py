"""The absolute positions of the tokens a forward pass reads.

Without a KV cache every forward reads the whole sequence from position 0. With one,
generation reads the prompt once and then one token per step, each at the next position:
a hook sees a [batch, 1, d] tensor and cannot tell which position it is. `Positions` is
itself a hook, registered before every other one on the first block's input, and keeps
count; the interventions ask it where the current forward pass starts, and which of its
positions they may change (never BOS: `analyses.kinds.bos`).
"""
from __future__ import annotations

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from analyses.kinds.bos import after_bos, first_after_bos

FIRST_HOOK = "blocks.0.hook_resid_pre"  # runs before anything a later hook can change


class Positions:
    def __init__(self, cached: bool, first: int):
        self.cached = cached  # each forward continues where the last one stopped
        self.first = first  # the first position an intervention may change (after BOS)
        self.start = 0
        self.length = 0

    @classmethod
    def of(cls, bridge, cached: bool) -> Positions:
        """A counter for `bridge`'s prompts, which know whether they begin with BOS."""
        return cls(cached, first_after_bos(bridge))

    def hook(self, resid: Tensor, hook) -> None:  # [batch, pos, d_model]: read, not changed
        self.start = self.start + self.length if self.cached else 0
        self.length = int(resid.shape[1])

    def current(self, device) -> Int[Tensor, "pos"]:  # noqa: F821 - a jaxtyping shape
        """The absolute positions of the forward pass now running."""
        return torch.arange(self.start, self.start + self.length, device=device)

    def changeable(self, device) -> Bool[Tensor, "pos"]:  # noqa: F821 - a jaxtyping shape
        """Which positions of the forward pass now running an intervention may change."""
        return after_bos(self.current(device), self.first)

    def fwd_hook(self) -> tuple[str, object]:
        return FIRST_HOOK, self.hook
