"""Probes: the token sequences the head detectors read, built from token ids — never from
re-tokenized text, so random tokens survive exactly — each row beginning with BOS:

- `plain`: the user's prompt, else [BOS, r] with r random tokens (previous-token heads);
- `repeated`: [BOS, r, r] (duplicate-token and induction heads show themselves on the
  second copy);
- `needle`: needle prompts for retrieval heads (`embedded.measures.needle_row`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from analyses.core.errors import SpecError
from analyses.embedded import measures
from analyses.kinds.tokens import device_of, prompt_tokens, text_tokens

N_SEQUENCES = 8  # generated sequences per pattern probe; a score is their mean
COPY_LENGTH = 40  # random tokens per copy in [BOS, r, r] (less when the context is short)
NEEDLE_SEQUENCES = 32  # needle prompts: 3 code tokens each, so up to 96 copy events
HAYSTACK_LENGTH = 256  # tokens of a needle prompt (the model's context, if shorter)
LOGIT_BUDGET = 1 << 28  # bytes of logits per forward chunk (256 MiB): bounds memory on big vocabularies


@dataclass(frozen=True)
class Probe:
    """Token sequences a detector reads; every row has the same length."""

    tokens: Int[Tensor, "batch pos"]
    copy_length: int = 0  # repeated: len(r) in [BOS, r, r]
    needle: measures.NeedleBatch | None = None  # needle: where each row's code was planted and is asked for

    def rows(self, start: int, stop: int) -> Probe:
        needle = self.needle.rows(start, stop) if self.needle is not None else None
        return replace(self, tokens=self.tokens[start:stop], needle=needle)

    def to(self, device) -> Probe:
        needle = self.needle.to(device) if self.needle is not None else None
        return replace(self, tokens=self.tokens.to(device), needle=needle)


def sample_vocab(bridge) -> np.ndarray:
    """Token ids random sequences are drawn from: the tokenizer's, minus special tokens."""
    size = min(bridge.cfg.d_vocab, len(bridge.tokenizer))
    special = set(bridge.tokenizer.all_special_ids or ())
    return np.array([i for i in range(size) if i not in special])


def _random_rows(rng: np.random.Generator, vocab: np.ndarray, n: int, length: int) -> np.ndarray:
    """[n, length] random tokens, distinct within a row when the vocabulary allows."""
    distinct = len(vocab) >= length
    return np.stack([rng.choice(vocab, size=length, replace=not distinct) for _ in range(n)])


def _with_bos(bridge, rows: np.ndarray) -> Int[Tensor, "batch pos"]:
    bos = np.full((len(rows), 1), bos_id(bridge))
    return torch.tensor(np.concatenate([bos, rows], axis=1), dtype=torch.long)


def copy_length(bridge) -> int:
    """len(r) in [BOS, r, r]: COPY_LENGTH, or what fits strictly inside the context
    (TransformerLens's `detect_head` wants fewer than n_ctx tokens)."""
    return max(1, min(COPY_LENGTH, (bridge.cfg.n_ctx - 2) // 2))


def repeated_probe(bridge, rng: np.random.Generator, prompt: str | None = None) -> Probe:
    """[BOS, r, r]: induction and duplicate-token heads show themselves on the second copy."""
    length = copy_length(bridge)
    r = _random_rows(rng, sample_vocab(bridge), N_SEQUENCES, length)
    return Probe(_with_bos(bridge, np.concatenate([r, r], axis=1)), copy_length=length)


def plain_probe(bridge, rng: np.random.Generator, prompt: str | None = None) -> Probe:
    """The user's prompt (BOS first), else [BOS, r] with no repeats to distract."""
    if prompt is not None:
        return Probe(prompt_tokens(bridge, prompt))
    length = 2 * copy_length(bridge)
    return Probe(_with_bos(bridge, _random_rows(rng, sample_vocab(bridge), N_SEQUENCES, length)))


def bos_id(bridge) -> int:
    tokenizer = bridge.tokenizer  # some tokenizers (GPT-NeoX) name only an end-of-text token
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def needle_probe(bridge, rng: np.random.Generator, prompt: str | None = None) -> Probe:
    """NEEDLE_SEQUENCES needle prompts of HAYSTACK_LENGTH tokens (the context, if shorter)
    in the model's own tokenizer: [BOS, "The <key> code: w1 w2 w3.", stories…, "The <key>
    code:", w1 w2 w3]."""
    total = min(HAYSTACK_LENGTH, bridge.cfg.n_ctx)

    def encode(text: str) -> list[int]:
        return text_tokens(bridge, text, prepend_bos=False)[0].tolist()

    try:
        rows = [measures.needle_row(encode, bos_id(bridge), rng, total=total) for _ in range(NEEDLE_SEQUENCES)]
    except ValueError:
        raise SpecError("detector", f"retrieval needs room for a needle, a haystack and its question; "
                                    f"this model's context holds only {bridge.cfg.n_ctx} tokens") from None
    batch = measures.NeedleBatch.of(rows)
    return Probe(batch.tokens, needle=batch)


# name -> builder(bridge, rng, prompt); the position in this list seeds the probe's own
# random stream, so a probe's tokens do not depend on which detectors were asked for
PROBES: dict[str, Callable[..., Probe]] = {
    "plain": plain_probe,
    "repeated": repeated_probe,
    "needle": needle_probe,
}


def build_probe(name: str, bridge, seed: int, prompt: str | None = None) -> Probe:
    rng = np.random.default_rng([seed, list(PROBES).index(name)])
    return PROBES[name](bridge, rng, prompt).to(device_of(bridge))


def chunk_rows(bridge, probe: Probe) -> int:
    """Rows per forward pass so that one chunk's logits stay within LOGIT_BUDGET."""
    per_row = probe.tokens.shape[1] * bridge.cfg.d_vocab * 4
    return max(1, LOGIT_BUDGET // per_row)
