"""The token stream a dictionary trains and is evaluated on: the embedded model's training
mixture (stories, IOI sentences, facts, needles, repeated-token induction documents), drawn
fresh from its generators and encoded by the model's own tokenizer, so any model with a
tokenizer (the embedded one, stories260K, a hub model) gets the same kinds of text.

Chunk i of a split is a pure function of (seed, split, i): a resumed run regenerates exactly
the chunks it lacks, and the evaluation split never overlaps the training one (other seeds
of the same generators: held-out draws of the same mixture).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = {"train": 0, "eval": 1}


def default_mixture() -> dict[str, float]:
    from analyses.embedded.train import TrainConfig

    return dict(TrainConfig().main_mixture)  # {"repeat": .15, "needle": .3, "mixed": .55}


@dataclass(frozen=True)
class TokenStream:
    n_ctx: int = 256  # document length (the embedded model's context)
    docs_per_chunk: int = 32  # 32 x 255 non-BOS tokens = 8,160 tokens a chunk
    seed: int = 0
    mixture: dict = field(default_factory=default_mixture)

    def rng(self, split: str, chunk: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLITS[split], chunk])

    def tokens_per_chunk(self) -> int:
        return self.docs_per_chunk * (self.n_ctx - 1)  # BOS positions are never read

    def doc_kinds(self, split: str, index: int) -> list[str]:
        """The document type of each row of chunk `index` ("repeat", "needle", "mixed", ...):
        the first draw `SequenceBuilder.batch` makes from the chunk's generator, replayed."""
        kinds = list(self.mixture)
        weights = np.array([self.mixture[k] for k in kinds], dtype=float)
        draws = self.rng(split, index).choice(len(kinds), size=self.docs_per_chunk, p=weights / weights.sum())
        return [kinds[d] for d in draws]

    def chunk(self, builder, split: str, index: int) -> np.ndarray:
        """[docs_per_chunk, n_ctx] token ids of chunk `index` of `split`."""
        tokens, _ = builder.batch(self.rng(split, index), self.docs_per_chunk, self.mixture)
        return tokens


def builder_for(tokenizer, n_ctx: int):
    """The embedded corpus's SequenceBuilder around any tokenizer with a BOS token."""
    from analyses.core.errors import UserError
    from analyses.embedded.data import SequenceBuilder

    if tokenizer.bos_token_id is None:
        raise UserError("the model's tokenizer has no BOS token: documents start with one")
    return SequenceBuilder(tokenizer, n_ctx)
