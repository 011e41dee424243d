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
    a sample's randomness comes from `seed` alone, through a generator of this call's own
    (`GumbelSampler`): the process's global generator is neither read nor changed, so jobs
    sampling at once on other threads cannot draw from each other's stream.

    Each generated token's log-probability comes from the logits of the step that chose it
    (before any temperature), which equal a teacher-forced pass's (a test holds them to
    1e-4): no second pass, so generation costs what plain greedy generation costs."""
    n_prompt = int(prompt.shape[1])
    counter = Positions.of(bridge, cached=use_cache)
    sampler = GumbelSampler(temperature, seed) if temperature > 0 else None
    handle = bridge.register_forward_hook(sampler) if sampler else None
    try:
        with bridge.hooks(fwd_hooks=[counter.fwd_hook(), *hooks_for(counter)]):
            # greedy: with the sampler's noise on the logits, the argmax is the sample
            out = bridge.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False,
                                  use_past_kv_cache=use_cache, stop_at_eos=True, verbose=False,
                                  return_type="tokens", output_logits=True)
    finally:
        if handle is not None:
            handle.remove()
    new = out.sequences[0, n_prompt: n_prompt + max_new_tokens]  # [generated]
    if not len(new):  # nothing asked for: the prompt's own prediction from one pass
        return Generated(tokens=[], logprobs=[],
                         last_logits=forward(bridge, prompt, hooks_for)[0, -1].float())
    steps = sampler.clean if sampler else out.logits  # each [1, d_vocab], without the noise
    step_logits = torch.stack(steps[: len(new)], dim=1)[0].float()  # [generated, d_vocab]
    chosen = step_logits.log_softmax(-1).gather(-1, new[:, None].to(step_logits.device))[:, 0]
    return Generated(tokens=new.tolist(), logprobs=chosen.tolist(), last_logits=step_logits[0])


def gumbel_noise(shape: tuple, generator: torch.Generator, device) -> Float[Tensor, "..."]:
    """Standard Gumbel noise, -log(-log U), drawn from `generator` alone."""
    uniform = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(uniform.clamp_(min=torch.finfo(uniform.dtype).tiny)))


class GumbelSampler:
    """A forward hook on the bridge that turns its greedy generation into sampling at
    `temperature` from a generator seeded with `seed` (the Gumbel-max trick: the argmax of
    logits + temperature * Gumbel noise is a draw from softmax(logits / temperature)).

    TransformerLens's `generate` samples with torch's global generator and takes none of
    its own; seeding the global one (even inside `fork_rng`) lets a job on another thread
    draw from the same stream between two of our steps. The hook sees each step's logits
    (the whole prompt's on the first step, one position's after, with the KV cache), keeps
    the last position's as they were (`clean`: the log-probabilities come from them) and
    adds the noise there."""

    def __init__(self, temperature: float, seed: int):
        self.temperature, self.seed = temperature, seed
        self.generator: torch.Generator | None = None  # made on the logits' device
        self.clean: list[Tensor] = []  # each step's last-position logits, [1, d_vocab]

    def __call__(self, module, args, logits: Float[Tensor, "1 pos d_vocab"]) -> Tensor:
        if self.generator is None:
            self.generator = torch.Generator(device=logits.device).manual_seed(self.seed)
        last = logits[:, -1].float()  # [1, d_vocab]
        self.clean.append(last.clone())
        noisy = logits.float()  # a copy whatever the dtype: the noise is not rounded away
        noisy = noisy.clone() if noisy is logits else noisy
        noisy[:, -1] = last + self.temperature * gumbel_noise(last.shape, self.generator, last.device)
        return noisy


@torch.no_grad()
def forward(bridge, tokens: Int[Tensor, "1 pos"], hooks_for: Hooks) -> Float[Tensor, "1 pos d_vocab"]:
    """The model's logits over `tokens` under `hooks_for`'s hooks (one pass, no cache)."""
    counter = Positions.of(bridge, cached=False)
    with bridge.hooks(fwd_hooks=[counter.fwd_hook(), *hooks_for(counter)]):
        return bridge(tokens, return_type="logits")
