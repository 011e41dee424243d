"""The text sparsity is measured on, as a right-padded batch of documents with a mask.

Three sources: the shipped corpus sample (default; the embedded model's training mixture of
stories, IOI sentences and facts, drawn fresh by `seed` and encoded by the model's own
tokenizer, so any model with a BOS token reads the same kinds of text), a prompt set (each row's
prompt, or a pair's clean prompt, one document each), or typed text (one document). Padding
sits after each document's end; a causal model's earlier positions never see it, and the mask
keeps it out of every loss, CETT and ratio.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from analyses.core.errors import UserError

SAMPLE_DOCUMENTS = 16  # documents in the corpus sample
SAMPLE_LENGTH = 128  # tokens each (BOS included), or the model's context where shorter


@dataclass(frozen=True)
class TextBatch:
    tokens: Int[Tensor, "doc pos"]  # right-padded with the BOS id
    mask: Bool[Tensor, "doc pos"]  # True on each document's own tokens
    source: str  # what the text is, for the meta

    def __post_init__(self):
        assert self.tokens.shape == self.mask.shape, (self.tokens.shape, self.mask.shape)
        if int(self.mask.sum(1).min()) < 2:
            raise UserError("a document needs at least two tokens (BOS and one more) for a "
                            "perplexity: give longer text")

    @property
    def n_tokens(self) -> int:
        return int(self.mask.sum())

    def targets(self) -> Bool[Tensor, "doc pos"]:
        """Where a next token is predicted: position i predicts i + 1 while both are text."""
        shifted = torch.zeros_like(self.mask)
        shifted[:, :-1] = self.mask[:, 1:]
        return shifted


def padded(documents: list[list[int]], pad: int, device, source: str) -> TextBatch:
    length = max(len(d) for d in documents)
    tokens = torch.full((len(documents), length), pad, dtype=torch.long)
    mask = torch.zeros((len(documents), length), dtype=torch.bool)
    for i, doc in enumerate(documents):
        tokens[i, : len(doc)] = torch.tensor(doc, dtype=torch.long)
        mask[i, : len(doc)] = True
    return TextBatch(tokens.to(device), mask.to(device), source)


def corpus_sample(bridge, seed: int, n_documents: int = SAMPLE_DOCUMENTS,
                  length: int = SAMPLE_LENGTH) -> TextBatch:
    """`n_documents` documents of the embedded corpus's mixed text (stories, IOI sentences,
    facts), `length` tokens each with BOS, drawn with `seed`."""
    from analyses.dictionaries.tokens import builder_for

    length = min(length, int(bridge.cfg.n_ctx))
    builder = builder_for(bridge.tokenizer, length)
    rng = np.random.default_rng([seed, 29])  # 29: apart from the trainer's and dictionaries' seeds
    documents = [builder.mixed_document(rng)[0] for _ in range(n_documents)]
    return padded(documents, builder.bos, bridge.cfg.device,
                  f"corpus sample (seed {seed}: {n_documents} documents of {length} tokens)")


def prompts_batch(bridge, prompts: list[str], source: str) -> TextBatch:
    """Each prompt as one document, BOS first (checked against the model's context)."""
    from analyses.kinds.tokens import prompt_tokens

    documents = [prompt_tokens(bridge, text)[0].tolist() for text in prompts]
    pad = bridge.tokenizer.bos_token_id if bridge.tokenizer.bos_token_id is not None else 0
    return padded(documents, pad, bridge.cfg.device, source)
