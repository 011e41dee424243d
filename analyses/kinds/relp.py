"""Relevance patching (RelP; Jafari et al. 2025): attribution patching with the gradient
replaced by layer-wise relevance propagation, at the same cost of one forward and one backward
pass.

The propagation rules are applied as modified gradients (the forward values are unchanged;
only what flows backward differs), by forward hooks on the corrupted run:
- normalisation (LayerNorm, RMSNorm) is linear at its cached scale: `hook_scale` detached;
- attention patterns are held fixed: `hook_pattern` detached, so a head is linear in its
  values (queries and keys then receive no relevance: RelP does not score q and k nodes);
- the MLP's nonlinearity passes relevance unchanged (the identity rule): act(x) is rebuilt as
  x · (act(x) / x) with the ratio detached, so its backward factor is act(x) / x;
- a multiplicative gate act(gate) · up splits relevance evenly between its two inputs (the
  uniform rule): half of the product with each factor detached in turn.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
               "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
               "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
               "silu": F.silu, "swish": F.silu, "relu": F.relu}


def ratio(numerator: Tensor, x: Tensor, at_zero: float = 0.5) -> Tensor:
    """act(x) / x, detached; `at_zero` where x is 0 (the limit of GELU's and SiLU's ratio)."""
    safe = torch.where(x.abs() > 1e-6, x, torch.ones_like(x))
    return torch.where(x.abs() > 1e-6, numerator / safe, torch.full_like(x, at_zero)).detach()


def relp_hooks(bridge) -> list[tuple[str, object]]:
    """Forward hooks that turn the backward pass into RelP's relevance propagation."""
    n_layers = int(bridge.cfg.n_layers)
    names = set(bridge.hook_dict)
    detach = lambda x, hook: x.detach()  # noqa: E731 - one-line hook
    hooks = [(name, detach) for name in sorted(names) if name.endswith(".hook_scale")]
    hooks += [(f"blocks.{layer}.attn.hook_pattern", detach) for layer in range(n_layers)]
    gated = "blocks.0.mlp.hook_pre_linear" in names
    act = ACTIVATIONS.get(str(bridge.cfg.act_fn))
    if gated and act is None:
        raise ValueError(f"RelP has no rule for the activation {bridge.cfg.act_fn!r}")
    for layer in range(n_layers):
        hooks += _mlp_hooks(f"blocks.{layer}.mlp", gated, act)
    return hooks


def _mlp_hooks(prefix: str, gated: bool, act) -> list[tuple[str, object]]:
    seen: dict[str, Tensor] = {}

    def keep(name):
        def hook(x, hook):
            seen[name] = x
        return hook

    def identity_rule(post, hook):  # post = act(pre)
        pre = seen.pop("pre")
        return pre * ratio(post, pre)

    def gate_rules(post, hook):  # post = act(gate) · up
        gate, up = seen.pop("pre"), seen.pop("up")
        activated = gate * ratio(act(gate), gate)  # the identity rule, forward value act(gate)
        return 0.5 * activated * up.detach() + 0.5 * activated.detach() * up

    hooks = [(f"{prefix}.hook_pre", keep("pre"))]
    if gated:
        hooks.append((f"{prefix}.hook_pre_linear", keep("up")))
    hooks.append((f"{prefix}.hook_post", gate_rules if gated else identity_rule))
    return hooks
