"""Gradient taps: the metric's gradient at hook points, read in one backward pass.

A tapped activation gets a zero tensor added in its hook; the gradient of the metric with
respect to that zero is exactly its gradient with respect to the activation as the model
consumes it downstream, in the hook's own shape, whatever the hook's module does with it (no
`retain_grad` on a tensor the bridge may copy or reshape). Used by attribution patching (AtP,
RelP) and by the circuit's edge scores (EAP, EAP-IG).
"""
from __future__ import annotations

import torch
from torch import Tensor


class GradientTaps:
    """Zero tensors added at hook points, one per name, and their gradients."""

    def __init__(self) -> None:
        self.zeros: dict[str, Tensor] = {}

    def tap(self, activation: Tensor, name: str) -> Tensor:
        """`activation` + a fresh zero that requires grad (call inside the hook)."""
        self.zeros[name] = torch.zeros_like(activation, requires_grad=True)
        return activation + self.zeros[name]

    def fired(self, names: list[str]) -> list[str]:
        """Those of `names` whose hook ran, in order."""
        return [name for name in names if name in self.zeros]

    def gradients(self, total: Tensor, names: list[str]) -> list[Tensor]:
        """d total / d activation for each of `names` (all tapped): zeros where `total` does
        not depend on it (a hook after the metric's last use)."""
        found = torch.autograd.grad(total, [self.zeros[name] for name in names], allow_unused=True)
        return [torch.zeros_like(self.zeros[name]) if g is None else g for name, g in zip(names, found)]
