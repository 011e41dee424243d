"""Generation under interventions: TransformerLens's own `generate` (with the model's KV
cache) inside `bridge.hooks`, then one teacher-forced forward pass over the prompt and the
generated tokens, under the same hooks, for each generated token's log-probability and
the prompt's last-position logits.

`hooks_for(positions)` gives the run's hooks for a position counter (`Positions`): the
generation's counts cached steps, the teacher-forced pass's reads the whole sequence.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from analyses.kinds.interventions.positions import Positions

Hooks = Callable[[Positions], list[tuple[str, object]]]


@dataclass(frozen=True)
class Generated:
    tokens: list[int]  # the generated ids (an end-of-text token, if one came, last)
    logprobs: list[float]  # each one's log-probability under the intervened model
    last_logits: Float[Tensor, "d_vocab"]  # noqa: F821 - at the prompt's last position


def room(bridge, prompt_length: int) -> int:
    """How many tokens fit after the prompt in the model's context."""
    return int(bridge.cfg.n_ctx) - prompt_length


@torch.no_grad()
def generate(bridge, prompt: Int[Tensor, "1 pos"], hooks_for: Hooks, max_new_tokens: int,
             temperature: float = 0.0, seed: int = 0, use_cache: bool = True) -> Generated:
    """Greedy (temperature 0) or sampled continuation of `prompt` under `hooks_for`'s hooks;
    a sample's randomness comes from `seed` alone (the global generator is left as it was)."""
    n_prompt = int(prompt.shape[1])
    counter = Positions(cached=use_cache)
    with torch.random.fork_rng(devices=[prompt.device] if prompt.device.type == "cuda" else []):
        torch.manual_seed(seed)
        with bridge.hooks(fwd_hooks=[counter.fwd_hook(), *hooks_for(counter)]):
            out = bridge.generate(prompt, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                                  temperature=temperature if temperature > 0 else 1.0,
                                  use_past_kv_cache=use_cache, stop_at_eos=True, verbose=False,
                                  return_type="tokens")
    sequence = out[:, : n_prompt + max_new_tokens]  # [1, prompt + generated]
    logits = forward(bridge, sequence, hooks_for)  # [1, pos, d_vocab]
    new = sequence[0, n_prompt:]
    log_probs = logits[0, n_prompt - 1: -1].float().log_softmax(-1)  # predicts each new token
    chosen = log_probs.gather(-1, new[:, None])[:, 0] if len(new) else log_probs[:0, 0]
    return Generated(tokens=new.tolist(), logprobs=chosen.tolist(),
                     last_logits=logits[0, n_prompt - 1].float())


@torch.no_grad()
def forward(bridge, tokens: Int[Tensor, "1 pos"], hooks_for: Hooks) -> Float[Tensor, "1 pos d_vocab"]:
    """The model's logits over `tokens` under `hooks_for`'s hooks (one pass, no cache)."""
    counter = Positions(cached=False)
    with bridge.hooks(fwd_hooks=[counter.fwd_hook(), *hooks_for(counter)]):
        return bridge(tokens, return_type="logits")
