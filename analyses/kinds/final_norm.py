"""The final norm as a linear map, written once for the analyses that read a direction or a
component's output through it (direct logit attribution, the neuron atlas).

LayerNorm and RMSNorm are x -> centre(x) / scale(x) * weight + bias, centring only for
LayerNorm. With the scale fixed (DLA: its cached value at the position read; the neuron
atlas: left out, since it divides every direction alike) the map is affine, and its linear
part splits a sum of component outputs into one term per component (Elhage et al. 2021, "A
Mathematical Framework for Transformer Circuits").
"""
from __future__ import annotations

from jaxtyping import Float
from torch import Tensor


class FinalNorm:
    """A bridge's final norm: its weight (Gemma's RMSNorm offset applied), bias and
    whether it centres. A model without a final norm reads as the identity."""

    def __init__(self, bridge):
        norm = getattr(bridge, "ln_final", None)
        weight = getattr(norm, "weight", None) if norm is not None else None
        if weight is not None and getattr(bridge.cfg, "rmsnorm_uses_offset", False):
            weight = weight + 1.0  # Gemma's RMSNorm multiplies by (1 + weight)
        self.weight = weight  # [d_model] or None
        self.bias = getattr(norm, "bias", None) if norm is not None else None  # [d_model] or None
        self.centre = str(bridge.cfg.normalization_type or "").startswith("LN")

    def linear(self, x: Float[Tensor, "... d_model"], scale: Tensor | None = None
               ) -> Float[Tensor, "... d_model"]:
        """The norm's linear part applied to `x`: centred (LayerNorm), divided by `scale`
        when given, multiplied by the weight."""
        if self.centre:
            x = x - x.mean(-1, keepdim=True)
        if scale is not None:
            x = x / scale
        return x * self.weight.to(x.dtype) if self.weight is not None else x
