"""Generation under interventions: TransformerLens's own `generate` (with the model's KV
cache) inside `bridge.hooks`, keeping each step's logits: the prompt's last-position logits
and each generated token's log-probability under the intervened model come from them.

`hooks_for(positions)` gives the run's hooks for a position counter (`Positions`): with the
cache it counts one position per step, without it (and in `forward`) it reads the sequence.
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
    a sample's randomness comes from `seed` alone (the global generator is left as it was).

    Each generated token's log-probability comes from the logits of the step that chose it
    (before any temperature), which equal a teacher-forced pass's (a test holds them to
    1e-4): no second pass, so generation costs what plain greedy generation costs."""
    n_prompt = int(prompt.shape[1])
    counter = Positions.of(bridge, cached=use_cache)
    with torch.random.fork_rng(devices=[prompt.device] if prompt.device.type == "cuda" else []):
        torch.manual_seed(seed)
        with bridge.hooks(fwd_hooks=[counter.fwd_hook(), *hooks_for(counter)]):
            out = bridge.generate(prompt, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                                  temperature=temperature if temperature > 0 else 1.0,
                                  use_past_kv_cache=use_cache, stop_at_eos=True, verbose=False,
                                  return_type="tokens", output_logits=True)
    new = out.sequences[0, n_prompt: n_prompt + max_new_tokens]  # [generated]
    if not len(new):  # nothing asked for: the prompt's own prediction from one pass
        return Generated(tokens=[], logprobs=[],
                         last_logits=forward(bridge, prompt, hooks_for)[0, -1].float())
    step_logits = torch.stack(out.logits[: len(new)], dim=1)[0].float()  # [generated, d_vocab]
    chosen = step_logits.log_softmax(-1).gather(-1, new[:, None].to(step_logits.device))[:, 0]
    return Generated(tokens=new.tolist(), logprobs=chosen.tolist(), last_logits=step_logits[0])


@torch.no_grad()
def forward(bridge, tokens: Int[Tensor, "1 pos"], hooks_for: Hooks) -> Float[Tensor, "1 pos d_vocab"]:
    """The model's logits over `tokens` under `hooks_for`'s hooks (one pass, no cache)."""
    counter = Positions.of(bridge, cached=False)
    with bridge.hooks(fwd_hooks=[counter.fwd_hook(), *hooks_for(counter)]):
        return bridge(tokens, return_type="logits")
