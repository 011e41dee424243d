"""Resuming a forward pass at a block: the residual stream entering block k, cached from an
earlier pass, goes in, and only blocks k onwards run.

An intervention at layer k leaves everything below it as it was, so recomputing blocks
0..k-1 is waste. TransformerLens's `start_at_layer` swaps the residual in at block k but
still runs the blocks below (their output discarded); `skipping_blocks_below` makes them
pass their input through instead. The patching engine (`patching/engine.py`) and the
ablation sweep resume their passes through it.

A batched pass whose rows differ from the corrupted run from different layers (row r patched
at layer l_r) need not run every row from the lowest of them: `joining_rows` lets row r enter
the pass at block l_r with its cached residual, so a block runs only the rows that already
differ (a sweep over all layers evaluates about half the blocks a pass from layer 0 would).

Callers check once that a resumed pass reproduces the full one on their model (to 1e-4)
and fall back to full passes where it does not (`reproduces`).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from jaxtyping import Float
from torch import Tensor

TOLERANCE = 1e-4  # relative: a resumed pass must give the full pass's numbers to this


def full_pass(bridge, tokens) -> tuple[Tensor, dict[str, Tensor], bool]:
    """One full pass over `tokens` [batch, pos] caching the residual entering every block:
    (logits [batch, pos, d_vocab], {hook name: [batch, pos, d_model]}, whether a block
    returns a tuple — what a skipped block must return in its place)."""
    names = [resid_name(layer) for layer in range(int(bridge.cfg.n_layers))]
    outputs: list[bool] = []
    probe = bridge.blocks[0].register_forward_hook(
        lambda module, args, output: outputs.append(isinstance(output, tuple)))
    try:
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(tokens, names_filter=names)
    finally:
        probe.remove()
    return logits, {name: cache[name] for name in names}, bool(outputs and outputs[0])


def resid_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


@contextmanager
def skipping_blocks_below(bridge, start: int, returns_tuple: bool):
    """Blocks below `start` pass their input through while the context is open.

    Set with object.__setattr__ because the bridge forwards ordinary attribute writes to
    the wrapped Hugging Face module."""
    def passthrough(*args, **kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden,) if returns_tuple else hidden

    skipped = list(bridge.blocks)[:start]
    try:
        for block in skipped:
            object.__setattr__(block, "forward", passthrough)
        yield
    finally:
        for block in skipped:
            if "forward" in block.__dict__:
                object.__delattr__(block, "forward")


@contextmanager
def joining_rows(bridge, first_rows: int, arrivals: dict[int, Float[Tensor, "row pos d_model"]]):
    """While the context is open, block L appends `arrivals[L]` (the residual entering block
    L of rows that join the pass there) to the rows it receives, so the pass leaves block L
    with more rows than it entered with (blocks after the first arrival without arrivals of
    their own still widen their arguments). The caller orders rows by the block they join at and
    gives the pass (its residual of `first_rows` rows, key/value cache layers and hooks) only
    the rows present at each block.

    Other per-row arguments a block receives (an attention mask, position ids: the Hugging
    Face model builds them once for the `first_rows` the pass started with) are widened with
    copies of their first row: the rows of one pass share their positions and have no padding."""
    def joining(forward, arriving: Tensor | None):
        def block_forward(*args, **kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            if arriving is not None:
                hidden = torch.cat([hidden, arriving.to(hidden.dtype)])
            rows = hidden.shape[0]
            kwargs = {name: hidden if name == "hidden_states" else _widened(value, first_rows, rows)
                      for name, value in kwargs.items()}
            if args:
                args = (hidden, *(_widened(a, first_rows, rows) for a in args[1:]))
            return forward(*args, **kwargs)
        return block_forward

    arriving = {layer: rows for layer, rows in arrivals.items() if len(rows)}
    blocks = list(bridge.blocks)
    joined = [(block, arriving.get(layer)) for layer, block in enumerate(blocks)
              if arriving and layer >= min(arriving)]
    try:
        for block, rows in joined:
            object.__setattr__(block, "forward", joining(block.forward, rows))
        yield
    finally:
        for block, _ in joined:
            if "forward" in block.__dict__:
                object.__delattr__(block, "forward")


def _widened(value, before: int, after: int):
    """A per-row argument of `before` rows (a tensor or a tuple of them) -> `after` rows, the
    new ones copies of the first; anything else as it is (size-1 batch axes broadcast)."""
    if isinstance(value, tuple):
        return tuple(_widened(v, before, after) for v in value)
    if isinstance(value, Tensor) and value.dim() >= 2 and value.shape[0] == before > 1:
        return torch.cat([value, value[:1].expand(after - before, *value.shape[1:])])
    return value


@torch.no_grad()
def last_logits_from(bridge, residual: Float[Tensor, "batch pos d_model"], start: int, hooks: list,
                     returns_tuple: bool) -> Float[Tensor, "batch d_vocab"]:
    """The last position's logits of a pass resumed at block `start` from `residual` (the
    residual entering that block), with `hooks` on for this pass only."""
    with skipping_blocks_below(bridge, start, returns_tuple):
        logits = bridge.run_with_hooks(residual, fwd_hooks=hooks, start_at_layer=start, logits_to_keep=1)
    return logits[:, -1]


def reproduces(resumed: Tensor, full: Tensor) -> bool:
    """Whether resumed logits [batch, d_vocab] equal a full pass's, to TOLERANCE relative."""
    scale = max(1.0, float(full.abs().max()))
    return float((resumed.float() - full.float()).abs().max()) <= TOLERANCE * scale
