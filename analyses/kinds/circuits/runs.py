"""The circuit run: the model reads its own prompt, except that along chosen edges a
receiver reads the sender's write from another run.

At every receiver's input the hook subtracts, for each swapped edge, the sender's write in
this run and adds its write in the target run: input − Σ_swapped (write_here − write_target).
Senders downstream of a change see the change (their writes are read as this run makes them).
One engine, two uses:
- faithfulness: the clean prompt, target = the corrupted run, swapped = every edge outside the
  circuit (TransformerLens's ablate-outside `faithfulness`, corrupted-run ablation): all edges
  kept gives the clean metric, none the corrupted one;
- exact edge patching: the corrupted prompt, target = the clean run, swapped = one edge.
Rows of a batch each carry their own edge set, so many circuits run in one pass.
"""
from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from analyses.kinds.circuits.activations import EMBED
from analyses.kinds.circuits.graph import QKV, Graph


@torch.no_grad()
def mixed_run(bridge, graph: Graph, tokens: Int[Tensor, "row pos"],
              target: Float[Tensor, "row pos writer d_model"], swapped: Bool[Tensor, "row writer reader"],
              metric) -> Float[Tensor, "row"]:  # noqa: F821 - a jaxtyping shape
    rows, n_pos = tokens.shape
    here = torch.zeros_like(target)  # this run's writes, filled in as the senders fire
    swap = (swapped & torch.as_tensor(graph.valid, device=swapped.device)).to(target.dtype)
    heads = graph.n_heads

    def record_embed(x, hook):
        here[:, :, 0] = x.float()

    def record_heads(x, hook, layer):  # [row, pos, head, d_model]
        first = graph.head_writer(layer, 0)
        here[:, :, first:first + heads] = x.float()

    def record_mlp(x, hook, layer):
        here[:, :, graph.mlp_writer(layer)] = x.float()

    def shift(readers: list[int]) -> Tensor:
        """Σ over swapped senders of (here − target), per reader: [row, pos, reader, d]."""
        return torch.einsum("rpwd,rwk->rpkd", here - target, swap[:, :, readers])

    def read_qkv(x, hook, layer, which):  # [row, pos, head, d_model]
        readers = [graph.qkv_reader(layer, which, h) for h in range(heads)]
        return x - shift(readers).to(x.dtype)

    def read_one(x, hook, reader):  # [row, pos, d_model]
        return x - shift([reader])[:, :, 0].to(x.dtype)

    hooks = [(EMBED, record_embed)]
    for layer in range(graph.n_layers):
        hooks += [(f"blocks.{layer}.attn.hook_{which}_input",
                   lambda x, hook, layer=layer, which=which: read_qkv(x, hook, layer, which)) for which in QKV]
        hooks.append((f"blocks.{layer}.attn.hook_result", lambda x, hook, layer=layer: record_heads(x, hook, layer)))
        hooks.append((f"blocks.{layer}.hook_mlp_in",
                      lambda x, hook, layer=layer: read_one(x, hook, graph.mlp_reader(layer))))
        hooks.append((f"blocks.{layer}.hook_mlp_out", lambda x, hook, layer=layer: record_mlp(x, hook, layer)))
    hooks.append((f"blocks.{graph.n_layers - 1}.hook_resid_post",
                  lambda x, hook: read_one(x, hook, graph.logits_reader)))
    logits = bridge.run_with_hooks(tokens, fwd_hooks=hooks)
    return metric(logits).float()
