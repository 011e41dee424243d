"""What edge scores are made of, read with the per-head hooks `graph.edge_hooks` turns on:
every sender's write at every position, and the metric's gradient at every receiver's input.
Call these inside `edge_hooks(bridge)`."""
from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from analyses.kinds.circuits.graph import QKV, Graph
from analyses.kinds.patching.taps import GradientTaps

EMBED = "hook_embed"


def writer_hooks(graph: Graph) -> list[str]:
    names = [EMBED]
    for layer in range(graph.n_layers):
        names += [f"blocks.{layer}.attn.hook_result", f"blocks.{layer}.hook_mlp_out"]
    return names


def reader_hooks(graph: Graph) -> list[str]:
    names = []
    for layer in range(graph.n_layers):
        names += [f"blocks.{layer}.attn.hook_{which}_input" for which in QKV] + [f"blocks.{layer}.hook_mlp_in"]
    return [*names, f"blocks.{graph.n_layers - 1}.hook_resid_post"]


def stack_writers(graph: Graph, found: dict[str, Tensor]) -> Float[Tensor, "batch pos writer d_model"]:
    """The senders' writes in graph order, from hook name -> activation."""
    parts = [found[EMBED][:, :, None]]
    for layer in range(graph.n_layers):
        parts += [found[f"blocks.{layer}.attn.hook_result"], found[f"blocks.{layer}.hook_mlp_out"][:, :, None]]
    return torch.cat(parts, dim=2)


def stack_readers(graph: Graph, found: dict[str, Tensor]) -> Float[Tensor, "batch pos reader d_model"]:
    parts = []
    for layer in range(graph.n_layers):
        parts += [found[f"blocks.{layer}.attn.hook_{which}_input"] for which in QKV]
        parts.append(found[f"blocks.{layer}.hook_mlp_in"][:, :, None])
    parts.append(found[f"blocks.{graph.n_layers - 1}.hook_resid_post"][:, :, None])
    return torch.cat(parts, dim=2)


@torch.no_grad()
def writer_outputs(bridge, graph: Graph, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos writer d_model"]:
    _, cache = bridge.run_with_cache(tokens, names_filter=writer_hooks(graph))
    return stack_writers(graph, {name: cache[name].float() for name in writer_hooks(graph)})


Metric = Callable[[Tensor], Tensor]  # logits [batch, pos, vocab] -> [batch]


def reader_gradients(bridge, graph: Graph, tokens: Int[Tensor, "batch pos"], metric: Metric,
                     embed: Float[Tensor, "batch pos d_model"] | None = None, writes: dict | None = None
                     ) -> tuple[Float[Tensor, "batch pos reader d_model"], Tensor]:
    """The gradient of each row's metric at every receiver's input (rows are independent:
    their metrics are summed), and the metrics. `embed` replaces the token embedding (the
    integrated-gradients path); the gradient of an input is read by a tap
    (`patching.taps`). `writes`, when given, receives the senders' writes of this same pass
    (hook name -> activation): no forward of their own."""
    taps = GradientTaps()

    def read(activation: Tensor, hook, name: str) -> Tensor:
        return taps.tap(activation, name)

    def keep(activation: Tensor, hook, name: str) -> None:
        writes[name] = activation.detach().float()

    hooks = [(name, lambda a, hook, name=name: read(a, hook, name)) for name in reader_hooks(graph)]
    if writes is not None:
        hooks += [(name, lambda a, hook, name=name: keep(a, hook, name)) for name in writer_hooks(graph)]
    if embed is not None:
        hooks.insert(0, (EMBED, lambda a, hook: embed.to(a.dtype)))
    with torch.enable_grad():
        logits = bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        values = metric(logits)
        names = reader_hooks(graph)
        missing = sorted(set(names) - set(taps.fired(names)))
        if missing:
            raise ValueError(f"the hooks {missing[:2]} did not fire on this model")
        grads = taps.gradients(values.sum(), names)
    return stack_readers(graph, {n: g.float() for n, g in zip(names, grads)}), values.detach().float()
