"""The edge graph: who writes into the residual stream and who reads it.

Senders (writers), in residual-stream order: the token embedding, then per layer each head's
output (`attn.hook_result`: the head's own write, W_O applied) and the MLP's output.
Receivers (readers): per layer each head's q, k and v input (the residual as that head's
query, key or value reads it, before the layer norm: `attn.hook_q_input`, …), the MLP's input
(`hook_mlp_in`), and the logits (the final residual, `blocks.{last}.hook_resid_post`).

An edge joins a sender to a later receiver: every earlier layer, plus a layer's own heads
into its own MLP (unless attention and MLP run in parallel). Edges are over components, not
positions: an edge carries its sender's write at every position, so one graph serves prompts
of any length. This is TransformerLens's edge graph (`tools.analysis.attribution_patching`)
with its positions summed.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np

QKV = ("q", "k", "v")


@dataclass(frozen=True)
class Graph:
    n_layers: int
    n_heads: int
    parallel: bool = False  # attention and MLP read the same residual (GPT-J, NeoX, …)

    # --- senders -------------------------------------------------------------------
    @property
    def per_layer_writers(self) -> int:
        return self.n_heads + 1

    @property
    def n_writers(self) -> int:
        return 1 + self.n_layers * self.per_layer_writers

    def head_writer(self, layer: int, head: int) -> int:
        return 1 + layer * self.per_layer_writers + head

    def mlp_writer(self, layer: int) -> int:
        return 1 + layer * self.per_layer_writers + self.n_heads

    @cached_property
    def writers(self) -> tuple[str, ...]:
        names = ["embed"]
        for layer in range(self.n_layers):
            names += [f"L{layer}H{h}" for h in range(self.n_heads)] + [f"L{layer}.mlp"]
        return tuple(names)

    @cached_property
    def writer_layer(self) -> np.ndarray:
        """The layer of each sender (-1: the embedding)."""
        return np.array([-1] + [layer for layer in range(self.n_layers) for _ in range(self.per_layer_writers)])

    # --- receivers -----------------------------------------------------------------
    @property
    def per_layer_readers(self) -> int:
        return 3 * self.n_heads + 1

    @property
    def n_readers(self) -> int:
        return self.n_layers * self.per_layer_readers + 1

    def qkv_reader(self, layer: int, which: str, head: int) -> int:
        return layer * self.per_layer_readers + QKV.index(which) * self.n_heads + head

    def mlp_reader(self, layer: int) -> int:
        return layer * self.per_layer_readers + 3 * self.n_heads

    @property
    def logits_reader(self) -> int:
        return self.n_layers * self.per_layer_readers

    @cached_property
    def readers(self) -> tuple[tuple[str, str], ...]:
        """(component, input) of each receiver: ("L1H3", "q"), ("L0.mlp", "in"), ("logits", "")."""
        found = []
        for layer in range(self.n_layers):
            found += [(f"L{layer}H{h}", which) for which in QKV for h in range(self.n_heads)]
            found.append((f"L{layer}.mlp", "in"))
        return (*found, ("logits", ""))

    @cached_property
    def reader_layer(self) -> np.ndarray:
        return np.array([layer for layer in range(self.n_layers) for _ in range(self.per_layer_readers)]
                        + [self.n_layers])

    # --- edges ---------------------------------------------------------------------
    @cached_property
    def valid(self) -> np.ndarray:
        """[writer, reader]: whether that edge exists."""
        earlier = self.writer_layer[:, None] < self.reader_layer[None, :]
        if not self.parallel:  # a layer's heads write before its MLP reads
            heads = np.ones(self.n_writers, dtype=bool)
            heads[0] = False
            heads[[self.mlp_writer(layer) for layer in range(self.n_layers)]] = False
            for layer in range(self.n_layers):
                same = (self.writer_layer == layer) & heads
                earlier[same, self.mlp_reader(layer)] = True
        return earlier

    @cached_property
    def edges(self) -> np.ndarray:
        """[edge, 2]: (writer, reader) of every edge, writer-major order."""
        return np.argwhere(self.valid)

    @property
    def n_edges(self) -> int:
        return len(self.edges)


def graph_of(bridge) -> Graph:
    cfg = bridge.cfg
    return Graph(int(cfg.n_layers), int(cfg.n_heads), bool(getattr(cfg, "parallel_attn_mlp", False)))


@contextmanager
def edge_hooks(bridge):
    """The bridge with its per-head writes (`hook_result`), split q/k/v inputs and MLP-input
    hook on for the duration, then the caller's settings back (flags on shared modules: the
    model lock is held by every job)."""
    cfg = bridge.cfg
    saved = (cfg.use_attn_result, cfg.use_split_qkv_input, cfg.use_hook_mlp_in,
             bool(getattr(cfg, "use_attn_in", False)))
    try:
        if saved[3]:
            bridge.set_use_attn_in(False)  # exclusive with split q/k/v inputs
        bridge.set_use_attn_result(True)
        bridge.set_use_split_qkv_input(True)
        bridge.set_use_hook_mlp_in(True)
        yield bridge
    finally:
        bridge.set_use_attn_result(saved[0])
        bridge.set_use_split_qkv_input(saved[1])
        bridge.set_use_hook_mlp_in(saved[2])
        if saved[3]:
            bridge.set_use_attn_in(True)
