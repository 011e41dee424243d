"""Training sequences for the embedded model: token ids, one fixed length each.

Three document types, all starting with BOS:
- `repeated_tokens`: a random token sequence repeated to fill the context: the
  fastest way to grow induction heads (measured: ~30 s for a 2-layer model);
- `needle_document`: a story with a code planted near its start and asked for
  at its end, the distance varying over the whole context;
- `mixed_document`: stories, IOI sentences and facts interleaved.
"""
from __future__ import annotations

import numpy as np

from analyses.embedded import corpus


class SequenceBuilder:
    """Builds token sequences of exactly `n_ctx` ids with a fixed tokenizer."""

    def __init__(self, tokenizer, n_ctx: int):
        self.tokenizer = tokenizer
        self.n_ctx = n_ctx
        self.bos = tokenizer.bos_token_id
        self.split = corpus.ioi_split()
        self.vocab = np.array([i for i in range(len(tokenizer)) if i != self.bos])

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def repeated_tokens(self, rng: np.random.Generator, min_period=6, max_period=100) -> list[int]:
        period = int(rng.integers(min_period, max_period + 1))
        pattern = rng.choice(self.vocab, size=period)
        body = np.resize(pattern, self.n_ctx - 1)  # repeats `pattern` until the length fits
        return [self.bos, *body.tolist()]

    def stories_tokens(self, rng: np.random.Generator, n_tokens: int, lead_space: bool) -> list[int]:
        """At least `n_tokens` of story text, cut to exactly that many."""
        ids: list[int] = []
        while len(ids) < n_tokens:
            text = corpus.story(rng, int(rng.integers(4, 12)))
            ids += self.encode((" " if ids or lead_space else "") + text)
        return ids[:n_tokens]

    def needle_document(self, rng: np.random.Generator) -> list[int]:
        planted = corpus.needle(rng)
        statement = self.encode(" " + planted.statement)
        question = self.encode(" " + planted.query) + self.encode(" " + " ".join(planted.code) + ".")
        room = self.n_ctx - 1 - len(statement) - len(question)
        before = int(rng.integers(0, min(40, room) + 1))
        after = int(rng.integers(0, room - before + 1))
        tail = room - before - after  # story text after the answer fills the context
        ids = [self.bos]
        ids += self.stories_tokens(rng, before, lead_space=False) if before else []
        ids += statement if before else self.encode(planted.statement)
        ids += self.stories_tokens(rng, after, lead_space=True)
        ids += question
        ids += self.stories_tokens(rng, tail, lead_space=True)
        return ids

    def ioi_sentence(self, rng: np.random.Generator, lead_space: bool) -> tuple[list[int], int]:
        """One training IOI sentence and the index of its answer (the IO) token."""
        item = corpus.ioi_item(rng, self.split.train_pairs, self.split.train_templates)
        ids = self.encode((" " if lead_space else "") + item.prompt)
        answer_at = len(ids)
        return ids + self.encode(" " + item.io) + self.encode("."), answer_at

    def mixed_document(self, rng: np.random.Generator, ioi_share=0.4, fact_share=0.25):
        """Stories, IOI sentences and facts interleaved; also the IO answers' positions."""
        ids, answers = [self.bos], []
        while len(ids) < self.n_ctx:
            draw = rng.random()
            if draw < ioi_share:
                sentence, answer_at = self.ioi_sentence(rng, lead_space=len(ids) > 1)
                answers.append(len(ids) + answer_at)
                ids += sentence
                continue
            text = corpus.fact_sentence(rng) if draw < ioi_share + fact_share else \
                corpus.story(rng, int(rng.integers(2, 6)))
            ids += self.encode((" " if len(ids) > 1 else "") + text)
        return ids[: self.n_ctx], [a for a in answers if a < self.n_ctx]

    def ioi_document(self, rng: np.random.Generator):
        """IOI sentences only: ~16 answers per document, the densest IOI signal."""
        return self.mixed_document(rng, ioi_share=1.0, fact_share=0.0)

    def short_ioi_documents(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """[size, length] documents of one IOI sentence each ([BOS, sentence, IO, "."]),
        padded at the end with BOS, and a [size, length] mask of the real tokens. The same
        sentences inside long mixed documents never taught IOI (chance after 3,000 steps),
        while these taught a trained model in 200 steps (measured here)."""
        rows = [[self.bos, *self.ioi_sentence(rng, lead_space=False)[0]] for _ in range(size)]
        length = max(len(row) for row in rows)
        tokens = np.full((size, length), self.bos, dtype=np.int64)
        real = np.zeros((size, length), dtype=bool)
        for i, row in enumerate(rows):
            tokens[i, : len(row)], real[i, : len(row)] = row, True
        return tokens, real

    def batch(self, rng: np.random.Generator, size: int, mixture: dict[str, float],
              max_period: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """[batch, n_ctx] token ids, each row's document type drawn from `mixture`, and a
        [batch, n_ctx] mask of the positions holding an IOI answer (for extra loss weight)."""
        kinds = list(mixture)
        weights = np.array([mixture[k] for k in kinds], dtype=float)
        draws = rng.choice(len(kinds), size=size, p=weights / weights.sum())
        makers = {"repeat": lambda r: (self.repeated_tokens(r, max_period=max_period), []),
                  "needle": lambda r: (self.needle_document(r), []),
                  "mixed": self.mixed_document, "ioi": self.ioi_document}
        rows = [makers[kinds[d]](rng) for d in draws]
        tokens = np.array([ids for ids, _ in rows], dtype=np.int64)
        answers = np.zeros(tokens.shape, dtype=bool)
        for row, (_, positions) in enumerate(rows):
            answers[row, positions] = True
        return tokens, answers
