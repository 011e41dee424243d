"""Sampled generation draws its randomness from the job's own generator: two jobs on two
models sampling at once get exactly what each gets alone, and the draws follow the
model's distribution at the asked temperature."""
import torch

from analyses.kinds.interventions import generation
from analyses.kinds.tokens import prompt_tokens
from analyses.runtime import models
from helpers import run_concurrently

PROMPT = "When Mary and John went to the store, John gave a drink to"


def sample(bridge, seed: int) -> list[int]:
    tokens = prompt_tokens(bridge, PROMPT)
    return generation.generate(bridge, tokens, lambda counter: [], 24, temperature=1.5, seed=seed).tokens


def test_two_models_sampling_at_once_get_what_each_gets_alone(tiny_model_dir):
    bridges = [models.load(str(tiny_model_dir(arch))).bridge for arch in ("gpt2", "llama")]
    seeds = (3, 11)
    alone = [sample(bridge, seed) for bridge, seed in zip(bridges, seeds)]
    assert all(len(tokens) > 1 for tokens in alone)

    def repeatedly(i: int) -> list[list[int]]:
        return [sample(bridges[i], seeds[i]) for _ in range(4)]

    together = run_concurrently(repeatedly, [(0,), (1,)])
    for i in range(2):
        assert together[i] == [alone[i]] * 4


def test_gumbel_draws_follow_the_softmax_at_the_temperature():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])  # [d_vocab]
    temperature, n = 0.7, 40_000
    generator = torch.Generator().manual_seed(0)
    noise = generation.gumbel_noise((n, len(logits)), generator, logits.device)  # [draw, d_vocab]
    draws = (logits + temperature * noise).argmax(-1)
    frequencies = torch.bincount(draws, minlength=len(logits)).float() / n
    expected = (logits / temperature).softmax(-1)
    assert torch.allclose(frequencies, expected, atol=0.01), (frequencies, expected)


def test_sampled_log_probabilities_are_the_models_without_the_noise(tiny_gpt2_dir):
    bridge = models.load(str(tiny_gpt2_dir)).bridge
    tokens = prompt_tokens(bridge, PROMPT)
    out = generation.generate(bridge, tokens, lambda counter: [], 12, temperature=2.0, seed=5)
    whole = torch.cat([tokens, torch.tensor([out.tokens])], dim=1)  # [1, pos]
    logprobs = generation.forward(bridge, whole, lambda counter: [])[0].float().log_softmax(-1)
    n = tokens.shape[1]
    teacher = logprobs[n - 1: n - 1 + len(out.tokens)].gather(-1, torch.tensor(out.tokens)[:, None])[:, 0]
    assert torch.allclose(torch.tensor(out.logprobs), teacher, atol=1e-4)
    assert torch.allclose(out.last_logits.log_softmax(-1), logprobs[n - 1], atol=1e-4)
