"""Where a dictionary reads a model: site names, their TransformerLens hooks, reading and splicing.

Three kinds of site, named as TransformerLens names hooks (checked on the bridge of the
embedded GPT-2 and of a llama2.c model):
- `blocks.L.hook_resid_post`  the residual stream after block L (SAE);
- `blocks.L.attn.hook_z`      attention output before W_O, all heads concatenated
                              ([pos, n_heads, d_head] read as [pos, n_heads * d_head]), so a
                              latent's decoder row splits by head (Kissane et al. 2024) (SAE);
- `blocks.L.mlp`              the MLP as a transcoder: input `blocks.L.mlp.hook_in` (the
                              normalised residual the MLP reads) -> output `blocks.L.hook_mlp_out`.
"""
from __future__ import annotations

import itertools
import re
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from analyses.core.errors import UserError

KINDS = {"hook_resid_post": "resid", "attn.hook_z": "attn", "mlp": "mlp"}
_PATTERN = re.compile(r"^blocks\.(\d+)\.(hook_resid_post|attn\.hook_z|mlp)$")


@dataclass(frozen=True)
class Site:
    name: str  # canonical: blocks.1.hook_resid_post, blocks.1.attn.hook_z, blocks.1.mlp
    layer: int
    kind: str  # "resid" | "attn" | "mlp"

    @property
    def transcode(self) -> bool:
        return self.kind == "mlp"

    @property
    def input_hook(self) -> str:
        """The hook whose value the dictionary encodes."""
        return f"blocks.{self.layer}.mlp.hook_in" if self.transcode else self.name

    @property
    def output_hook(self) -> str:
        """The hook whose value the dictionary reconstructs (and a splice replaces)."""
        return f"blocks.{self.layer}.hook_mlp_out" if self.transcode else self.name

    @property
    def directory(self) -> str:
        return self.name  # dots are fine in directory names; one directory per site


def parse(name: str, n_layers: int | None = None) -> Site:
    match = _PATTERN.match(name.strip())
    if not match:
        raise UserError(f"site {name!r}: expected blocks.L.hook_resid_post, blocks.L.attn.hook_z "
                        "or blocks.L.mlp (a transcoder)")
    layer = int(match.group(1))
    if n_layers is not None and layer >= n_layers:
        raise UserError(f"site {name!r}: the model has layers 0..{n_layers - 1}")
    return Site(name=name.strip(), layer=layer, kind=KINDS[match.group(2)])


def every_site(n_layers: int) -> list[Site]:
    """Every layer's residual, attention-output and MLP sites: the shipped set."""
    return [parse(f"blocks.{layer}.{suffix}") for layer in range(n_layers)
            for suffix in ("hook_resid_post", "attn.hook_z", "mlp")]


def flat(value: Tensor) -> Float[Tensor, "batch pos d_in"]:
    """hook_z's [batch, pos, n_heads, d_head] as [batch, pos, n_heads * d_head]; others as they are."""
    return value.flatten(-2) if value.ndim == 4 else value


def site_width(site: Site, cfg) -> int:
    """d_in of a dictionary at `site` on a model with TransformerLens config `cfg`."""
    return cfg.n_heads * cfg.d_head if site.kind == "attn" else cfg.d_model


def head_shares(W_dec: Float[Tensor, "latent d_in"], n_heads: int) -> Float[Tensor, "latent head"]:
    """Each attention-output latent's decoder norm split by head (squared norms, rows sum to 1)."""
    per_head = W_dec.reshape(W_dec.shape[0], n_heads, -1).pow(2).sum(-1)
    return per_head / per_head.sum(-1, keepdim=True).clamp_min(1e-30)


# TransformerLens context levels of our own for captures: its `hooks()` counts up from 0, so
# removing a level of ours removes only our hooks (never a splice or steering hook beside them)
_CAPTURE_LEVELS = itertools.count(1 << 40)


@torch.no_grad()
def captured(bridge, tokens: Tensor, names: set[str], stop_at_layer: int | None = None) -> dict[str, Tensor]:
    """One forward (stopped before block `stop_at_layer` where given); the value each hook in
    `names` saw, flattened: {hook name: [batch, pos, d]}. Hooks go on the hook points directly
    (TransformerLens's `add_hook`, which applies the bridge's shape conversions as
    `run_with_cache` does), appended after any already there, so a splice's output is what is
    read; without `run_with_cache`'s cache machinery, a stopped forward that reads one site
    takes a sixth less time."""
    level = next(_CAPTURE_LEVELS)
    seen: dict[str, Tensor] = {}
    points = {name: bridge.hook_dict[name] for name in names}
    try:
        for name, point in points.items():
            point.add_hook(lambda value, hook, name=name: seen.__setitem__(name, value.detach()), level=level)
        bridge(tokens, stop_at_layer=stop_at_layer)
    finally:
        for point in points.values():
            point.remove_hooks("fwd", level=level)
    return {name: flat(seen[name]) for name in names}


def read(bridge, tokens: Tensor, sites: list[Site]) -> dict[str, Tensor]:
    """One forward; every hook the sites need, flattened: {hook name: [batch, pos, d]}."""
    return captured(bridge, tokens, {h for s in sites for h in (s.input_hook, s.output_hook)})


@contextmanager
def spliced(bridge, site: Site, replace, mask: Bool[Tensor, "batch pos"] | None = None):
    """Hooks that replace the site's output by `replace(input)` at the positions in `mask`
    (all where None), for one `with` block; the bridge is left unhooked on exit.

    replace: [batch, pos, d_in] -> [batch, pos, d_in] (flattened heads for hook_z)."""
    seen: dict[str, Tensor] = {}

    def keep_input(value, hook):
        seen["x"] = flat(value)
        return value

    def swap(value, hook):
        x = seen.get("x", flat(value))
        new = replace(x).to(value.dtype).reshape(value.shape)
        if mask is not None:
            new = torch.where(mask.reshape(*mask.shape, *([1] * (value.ndim - 2))), new, value)
        return new

    hooks = [(site.output_hook, swap)]
    if site.transcode:
        hooks.insert(0, (site.input_hook, keep_input))
    with bridge.hooks(fwd_hooks=hooks):
        yield
