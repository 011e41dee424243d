"""The local replacement model of one prompt (Ameisen et al. 2025, "Circuit Tracing").

Each MLP is replaced by its transcoder; every attention pattern and every norm's scale is
frozen at its value on the prompt; an error term per (layer, position) holds what the
transcoder misses (true MLP out - transcoder out). With those frozen, the map from the
*sources* — the prompt's input embeddings, the active latents' activations and the error
terms — to any later latent's pre-activation or to the logits is affine, and on the prompt
it reproduces the model's logits exactly.

Everything runs through the bridge's own hooks, so any architecture the bridge reads works
(LayerNorm or RMSNorm, learned or rotary positions, grouped-query attention):
- `blocks.L.attn.hook_pattern`, `blocks.L.ln{1,2}.hook_scale`, `ln_final.hook_scale` are
  replaced by their cached values (constants: no gradient flows through them);
- `blocks.0.hook_resid_pre` (the input embeddings) and `blocks.L.hook_mlp_out` are replaced
  by what the caller gives (`Sources`), so the MLPs' own nonlinearity never enters;
- a transcoder's linear skip (where it has one) reads `blocks.L.mlp.hook_in`, so it stays a
  live linear path of the residual stream.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from jaxtyping import Float, Int
from torch import Tensor

from analyses.core.errors import UserError
from analyses.dictionaries.coder import SparseCoder


def frozen_hook_names(n_layers: int, has: Callable[[str], bool]) -> list[str]:
    """The hooks whose prompt values are frozen: attention patterns and norm scales."""
    names = [f"blocks.{layer}.{suffix}" for layer in range(n_layers)
             for suffix in ("attn.hook_pattern", "ln1.hook_scale", "ln2.hook_scale")]
    names.append("ln_final.hook_scale")
    return [n for n in names if has(n)]


@dataclass(frozen=True)
class Sources:
    """What the replacement's affine map reads. `acts` are the active latents' values, in the
    order of `Prompt.features`; errors and embeddings are dense."""

    embeddings: Float[Tensor, "pos d_model"]  # blocks.0.hook_resid_pre on the prompt
    acts: Float[Tensor, "feature"]  # noqa: F821 - a jaxtyping shape; each active latent's activation
    errors: Float[Tensor, "layer pos d_model"]  # MLP out - transcoder out


@dataclass(frozen=True)
class Prompt:
    """One prompt's replacement model: what was active, what was frozen, and the sources."""

    tokens: Int[Tensor, "1 pos"]
    features: Int[Tensor, "feature 3"]  # (layer, pos, latent) of every active latent, sorted
    sources: Sources
    frozen: dict[str, Tensor]  # hook name -> its value on the prompt (batch 1)
    mlp_in: Float[Tensor, "layer pos d_model"]  # each MLP's input on the prompt
    logits: Float[Tensor, "pos vocab"]  # the model's own logits

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[1])


def load_transcoders(folders, n_layers: int, d_model: int) -> list[SparseCoder]:
    """One transcoder per layer from `folders` (a list of directories), checked for shape."""
    from analyses.dictionaries import formats

    coders = []
    for layer, folder in enumerate(folders):
        coder = formats.load(folder)
        if not coder.cfg.transcode:
            raise UserError(f"{folder}: a sparse autoencoder, not a transcoder (the graph needs "
                            f"blocks.{layer}.mlp transcoders)")
        if coder.cfg.d_in != d_model:
            raise UserError(f"{folder}: reads width {coder.cfg.d_in}, the model's d_model is {d_model}")
        coders.append(coder.eval())
    if len(coders) != n_layers:
        raise UserError(f"the graph needs a transcoder for each of the model's {n_layers} layers; "
                        f"{len(coders)} given")
    return coders


def _hook_names(bridge) -> set[str]:
    return set(bridge.hook_dict)


@torch.no_grad()
def capture(bridge, tokens: Int[Tensor, "1 pos"], coders: list[SparseCoder]) -> Prompt:
    """One forward of the real model: the frozen values, each MLP's input and output, and
    from them the transcoders' active latents and error terms."""
    n_layers = bridge.cfg.n_layers
    names = _hook_names(bridge)
    frozen_names = frozen_hook_names(n_layers, names.__contains__)
    wanted = set(frozen_names) | {"blocks.0.hook_resid_pre"}
    wanted |= {f"blocks.{layer}.{s}" for layer in range(n_layers) for s in ("mlp.hook_in", "hook_mlp_out")}
    logits, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in wanted)
    mlp_in = torch.stack([cache[f"blocks.{layer}.mlp.hook_in"][0] for layer in range(n_layers)]).float()
    mlp_out = torch.stack([cache[f"blocks.{layer}.hook_mlp_out"][0] for layer in range(n_layers)]).float()
    features, acts, errors = [], [], []
    for layer, coder in enumerate(coders):
        top_acts, top_idx = coder.encode(mlp_in[layer])  # [pos, k] each
        errors.append(mlp_out[layer] - coder(mlp_in[layer]))
        pos, slot = torch.nonzero(top_acts > 0, as_tuple=True)
        order = torch.argsort(pos * coder.num_latents + top_idx[pos, slot], stable=True)
        pos, slot = pos[order], slot[order]
        features.append(torch.stack([torch.full_like(pos, layer), pos, top_idx[pos, slot]], dim=1))
        acts.append(top_acts[pos, slot])
    sources = Sources(embeddings=cache["blocks.0.hook_resid_pre"][0].float(), acts=torch.cat(acts),
                      errors=torch.stack(errors))
    return Prompt(tokens=tokens, features=torch.cat(features), sources=sources,
                  frozen={n: cache[n].detach() for n in frozen_names}, mlp_in=mlp_in,
                  logits=logits[0].float())


def decoder_writes(prompt: Prompt, coders: list[SparseCoder], acts: Tensor
                   ) -> Float[Tensor, "batch layer pos d_model"]:
    """Each layer's transcoder output from the latents (without skip): sum of act x decoder
    row at each latent's position, plus b_dec everywhere. acts: [batch, feature]."""
    n_layers, n_pos = len(coders), prompt.n_pos
    d_model = coders[0].cfg.d_in
    out = acts.new_zeros(acts.shape[0], n_layers, n_pos, d_model)
    for layer, coder in enumerate(coders):
        mask = prompt.features[:, 0] == layer
        pos, latent = prompt.features[mask, 1], prompt.features[mask, 2]
        rows = acts[:, mask, None] * coder.W_dec[latent].float()  # [batch, feature_L, d_model]
        out[:, layer].index_add_(1, pos, rows)
        out[:, layer] += coder.b_dec.float()
    return out


def frozen_hooks(prompt: Prompt, batch: int) -> list[tuple[str, Callable]]:
    """Hooks that replace every frozen hook's value by its prompt value (a constant)."""
    def hook_for(value: Tensor):
        def freeze(current, hook):
            return value.to(current.dtype).expand(batch, *value.shape[1:]).clone()
        return freeze
    return [(name, hook_for(value)) for name, value in prompt.frozen.items()]


def run_frozen(bridge, prompt: Prompt, coders: list[SparseCoder], sources: Sources | None = None,
               batch_acts: Tensor | None = None, keep_graph: bool = False,
               mlp_out_leaves: list[Tensor] | None = None, embedding_leaf: Tensor | None = None,
               read_mlp_in: list | None = None, stop_after: int | None = None
               ) -> Float[Tensor, "batch pos vocab"] | None:
    """The frozen replacement's forward: logits from the sources (default: the prompt's own).

    batch_acts [batch, feature] runs several latent settings at once (errors and embeddings
    shared). mlp_out_leaves / embedding_leaf, when given, are used as the MLP outputs and the
    input embeddings themselves (the attribution pass differentiates with respect to them);
    read_mlp_in, when a list, receives each layer's MLP input (the encoders' read).
    stop_after: end the forward once that layer's MLP input is read (returns None): a pass
    whose targets are all latents of layers up to it needs nothing later."""
    sources = sources or prompt.sources
    acts = batch_acts if batch_acts is not None else sources.acts[None]
    batch = acts.shape[0]
    writes = decoder_writes(prompt, coders, acts) if mlp_out_leaves is None else None
    seen: dict[int, Tensor] = {}

    def set_embeddings(value, hook):
        new = embedding_leaf if embedding_leaf is not None else sources.embeddings.expand(batch, -1, -1)
        return new.to(value.dtype)

    def keep_mlp_in(layer):
        def keep(value, hook):
            seen[layer] = value
            if read_mlp_in is not None:
                read_mlp_in.append(value)
            if layer == stop_after:
                raise _Stopped
            return value
        return keep

    def set_mlp_out(layer):
        coder = coders[layer]

        def swap(value, hook):
            if mlp_out_leaves is not None:
                new = mlp_out_leaves[layer]
            else:
                new = writes[:, layer] + sources.errors[layer]
            if coder.W_skip is not None:  # a live linear path from the MLP's input
                new = new + coder.skip(seen[layer].float())
            return new.to(value.dtype)
        return swap

    hooks = [*frozen_hooks(prompt, batch), ("blocks.0.hook_resid_pre", set_embeddings)]
    for layer in range(len(coders)):
        hooks += [(f"blocks.{layer}.mlp.hook_in", keep_mlp_in(layer)),
                  (f"blocks.{layer}.hook_mlp_out", set_mlp_out(layer))]
    tokens = prompt.tokens.expand(batch, -1)
    context = torch.enable_grad() if keep_graph else torch.no_grad()
    try:
        with context, bridge.hooks(fwd_hooks=hooks), warnings.catch_warnings():
            # the bridge says a hooked norm scale is rebuilt from the hooked value: that is the point
            warnings.filterwarnings("ignore", message="A forward hook edited hook_scale")
            return bridge(tokens).float()
    except _Stopped:
        return None


class _Stopped(Exception):
    """Raised from a hook to end a forward early (run_frozen's stop_after)."""


def with_acts(sources: Sources, acts: Tensor) -> Sources:
    return replace(sources, acts=acts)
