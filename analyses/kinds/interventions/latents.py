"""Interventions with one latent of a sparse dictionary, at the dictionary's own site.

- feature addition (`method=feature`): add coeff × the latent's decoder row to the site's
  output. The row is a unit vector in the site's space: the residual stream for a
  `hook_resid_post` SAE, the MLP's output for a transcoder, and for an attention-output SAE
  the concatenated z (all heads' outputs before W_O), where it is added as it is — the same
  as adding its image through W_O to the attention output, since W_O is linear (a test holds
  the two equal), and it keeps each head's share visible. `coeff` is in the latent's own
  activation units: adding coeff × row is what the latent firing `coeff` higher would write.
- clamping: set the latent to `value` with the dictionary's error term kept,

      x' = x + (decode(z with latent j set to value) − decode(z)) = x + (value − z_j(x)) · W_dec[j]

  where z = the TopK code of the site's input (z_j = 0 when j is not among the k chosen).
  Only that latent changes: the rest of the code and whatever the dictionary fails to
  reconstruct pass through untouched (so clamping a latent to its own value changes
  nothing, and a dictionary's imperfection never leaks into the intervention). Zeroing is
  clamping to 0. For a transcoder z reads the MLP's input and x is the MLP's output.

Positions follow `positions=` like a steering vector's (never BOS: `analyses.kinds.bos`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from analyses.core.errors import SpecError
from analyses.dictionaries.lookup import Dictionary
from analyses.dictionaries.sites import flat


def check_latent(dictionary: Dictionary, latent: int | None, field: str = "latent") -> int:
    if latent is None:
        raise SpecError(field, f"missing: which latent of {dictionary.site.name} "
                               f"(0..{dictionary.coder.num_latents - 1})")
    if not 0 <= latent < dictionary.coder.num_latents:
        raise SpecError(field, f"{latent} is out of range: {dictionary.site.name}'s dictionary has "
                               f"latents 0..{dictionary.coder.num_latents - 1}")
    return latent


def decoder_row(dictionary: Dictionary, latent: int) -> Float[Tensor, "d_in"]:  # noqa: F821
    """The latent's decoder direction in the site's space (flattened heads for hook_z)."""
    return dictionary.coder.W_dec[latent].detach().float()


def in_residual(bridge, dictionary: Dictionary, direction: Float[Tensor, "d_in"]) -> Float[Tensor, "d_model"]:  # noqa: F821
    """What the direction writes to the residual stream: itself, or through W_O for hook_z."""
    if dictionary.site.kind != "attn":
        return direction
    w_o = bridge.W_O[dictionary.site.layer].float()  # [head, d_head, d_model]
    return torch.einsum("hd,hdm->m", direction.reshape(w_o.shape[0], w_o.shape[1]).to(w_o.device), w_o)


def residual_hook(dictionary: Dictionary) -> str:
    """Where the site's output is in the residual stream's space (`in_residual`'s image): the
    site's own output hook, or the attention output for hook_z."""
    site = dictionary.site
    return f"blocks.{site.layer}.hook_attn_out" if site.kind == "attn" else site.output_hook


def latent_value(dictionary: Dictionary, x: Float[Tensor, "... d_in"], latent: int) -> Float[Tensor, "..."]:
    """z_latent(x): the latent's activation in the TopK code of x (0 where not among the k)."""
    acts, indices = dictionary.coder.encode(x.float())  # [..., k] each
    return (acts * (indices == latent)).sum(-1)


def clamp_shift(dictionary: Dictionary, x: Float[Tensor, "... d_in"], latent: int,
                value: float) -> Float[Tensor, "... d_in"]:
    """(value − z_latent(x)) · W_dec[latent]: what clamping adds to the site's output."""
    return (value - latent_value(dictionary, x, latent))[..., None] * decoder_row(dictionary, latent).to(x.device)


def _mask(where, positions, value: Tensor) -> Tensor:
    """[1, pos, 1(, 1)]: the positions rule and never BOS, shaped to broadcast over `value`."""
    pos = where(positions.current(value.device)) & positions.changeable(value.device)
    return pos.view(1, -1, *([1] * (value.ndim - 2))).to(value.dtype)


def feature_hooks(dictionary: Dictionary, direction: Tensor, coeff: float, where, positions) -> list:
    """A hook adding coeff × direction at the site's output, at the positions `where` picks."""
    def hook(value: Tensor, hook) -> Tensor:  # [batch, pos, d] or [batch, pos, head, d_head]
        shift = (coeff * direction).to(device=value.device, dtype=value.dtype).reshape(value.shape[2:])
        return value + _mask(where, positions, value) * shift
    return [(dictionary.site.output_hook, hook)]


@dataclass(frozen=True)
class Clamp:
    dictionary: Dictionary
    latent: int
    value: float

    @property
    def label(self) -> str:
        verb = "zeroed" if self.value == 0 else f"clamped to {self.value:g}"
        return f"latent {self.latent} of {self.dictionary.site.name} {verb}"


def clamp_hooks(clamp: Clamp, where, positions) -> list:
    """Hooks that clamp the latent at the positions `where` picks; the site's input is read
    where it is encoded (a transcoder's MLP input), the shift added to its output."""
    site, seen = clamp.dictionary.site, {}

    def keep_input(value: Tensor, hook) -> Tensor:
        seen["x"] = flat(value)
        return value

    def hook(value: Tensor, hook) -> Tensor:
        x = seen.pop("x", None) if site.transcode else flat(value)  # [batch, pos, d_in]
        shift = clamp_shift(clamp.dictionary, x, clamp.latent, clamp.value).to(value.dtype)
        return value + _mask(where, positions, value) * shift.reshape(value.shape)

    hooks = [(site.output_hook, hook)]
    return [(site.input_hook, keep_input), *hooks] if site.transcode else hooks
