"""Measurements of the embedded model's known behaviours, on held-out items.

One definition of each, used while training (to decide when to stop), by the model card,
by its tests and by the `heads` analysis (`analyses/kinds/heads/` scores induction and
retrieval heads with the same two functions). The card's thresholds are `THRESHOLDS`.
Each measurement takes a `Forward`: a function from token ids `[batch, pos]` to
`(logits [batch, pos, d_vocab], patterns [layer, batch, head, query_pos, key_pos])`,
so the same code runs on a Hugging Face model during training and on a
TransformerBridge afterwards (`bridge_forward`).

- induction (`induction_scores`): Olsson et al. 2022 — on [BOS, r, r] with r random
  tokens, the mean attention from each second-copy token to the token after its first
  occurrence (1 = a perfect induction head);
- retrieval (`retrieval_scores`): Wu et al. 2024 — of the needle tokens the model copies,
  the share for which the head's most-attended key is that same token in the needle;
- IOI: Wang et al. 2022 — top-1 accuracy and logit difference (IO − S).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from analyses.embedded import corpus
from analyses.embedded import lexicon as lx

Forward = Callable[[Int[Tensor, "batch pos"]], tuple[Float[Tensor, "batch pos d_vocab"],
                                                      Float[Tensor, "layer batch head pos pos"]]]


def hf_forward(model) -> Forward:
    """Forward for a Hugging Face causal LM loaded with attn_implementation='eager'."""
    @torch.no_grad()
    def forward(tokens):
        out = model(tokens, output_attentions=True)
        return out.logits.float(), torch.stack(out.attentions).float()
    return forward


def bridge_forward(bridge) -> Forward:
    """Forward for a TransformerLens TransformerBridge, reading every hook_pattern."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(bridge.cfg.n_layers)]

    @torch.no_grad()
    def forward(tokens):
        logits, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
        return logits.float(), torch.stack([cache[n] for n in names]).float()
    return forward


def _token_losses(logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]):
    """[batch, pos-1] cross-entropy of predicting token t+1 at position t."""
    logp = logits[:, :-1].log_softmax(-1)
    return -logp.gather(-1, tokens[:, 1:, None])[..., 0]


@dataclass(frozen=True)
class Thresholds:
    """The model card's behaviour thresholds, fixed before training (never lowered to pass):
    the card's verdicts and the tests of `tests/embedded/` read them from here."""

    induction_score: float = 0.5  # a head at or above this induction score is an induction head
    induction_heads: int = 2  # ... and the model has at least this many
    copy_loss_ratio: float = 0.5  # second-copy loss at most this share of the first copy's
    needle_recall: float = 0.9  # whole codes recalled after 200 filler tokens
    retrieval_score: float = 0.5  # the best retrieval head
    ioi_accuracy: float = 0.9  # held-out IOI, top-1
    ioi_logit_diff: float = 2.0  # held-out IOI, mean logit(IO) - logit(S)
    facts_accuracy: float = 0.9  # capital facts, top-1
    text_loss: float = 2.5  # held-out story loss, nats per token, at most


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class InductionReport:
    scores: np.ndarray  # [layer, head] mean attention to the induction target
    loss_first: float  # mean loss on the first copy (tokens 2..L)
    loss_second: float  # mean loss on the second copy


def induction_scores(patterns: Float[Tensor, "... query key"], copy_length: int) -> Float[Tensor, "..."]:
    """Induction score on [BOS, r, r] with len(r) = `copy_length`, for each leading index
    (layer, sequence, head, …): the mean attention from each second-copy token to the token
    after its first occurrence. 1 = a perfect induction head."""
    query = torch.arange(copy_length + 1, 2 * copy_length + 1, device=patterns.device)
    return patterns[..., query, query - copy_length + 1].float().mean(-1)


def retrieval_scores(most_attended: Int[Tensor, "layer batch head copy"], source: Int[Tensor, "batch copy"],
                     copied: Float[Tensor, "batch copy"]) -> tuple[Float[Tensor, "layer batch head"],
                                                                   Float[Tensor, "batch"]]:  # noqa: F821
    """Wu et al.'s retrieval score per sequence: of the tokens the model copies (`copied`,
    True where greedy decoding has the needle right so far), the share for which the head's
    most-attended key is that token's place in the needle (`source`, broadcast over layer and
    head); and the number copied per sequence, the weight of its score in a pooled mean
    (0 when nothing is copied)."""
    copied = copied.bool()
    hits = (most_attended == source[None, :, None, :]) & copied[None, :, None, :]
    n_copied = copied.sum(-1).float()
    return hits.sum(-1).float() / n_copied.clamp_min(1)[None, :, None], n_copied


def most_attended_keys(patterns: Float[Tensor, "... batch head query key"], asked: Int[Tensor, "batch code"]
                       ) -> Int[Tensor, "... batch head code"]:
    """The key each head attends to most from each asked position (one set per row)."""
    index = asked.to(patterns.device)[:, None, :, None]  # [batch, 1, code, 1]
    index = index.expand(*patterns.shape[:-2], asked.shape[1], patterns.shape[-1])
    return patterns.gather(-2, index).argmax(-1)


def pooled(scores: Float[Tensor, "layer batch head"], weights: Float[Tensor, "batch"]) -> Float[Tensor, "layer head"]:  # noqa: F821
    """The weighted mean over sequences (0 where every weight is 0)."""
    total = weights.sum()
    return (scores * weights[None, :, None]).sum(1) / total if total > 0 else scores.sum(1) * 0


def measure_induction(forward: Forward, bos: int, vocab: np.ndarray, rng: np.random.Generator,
                      n: int = 32, length: int = 40) -> InductionReport:
    r = rng.choice(vocab, size=(n, length))
    tokens = torch.tensor(np.concatenate([np.full((n, 1), bos), r, r], axis=1))
    logits, patterns = forward(tokens)
    scores = induction_scores(patterns, length).mean(dim=1)  # [layer, head]
    losses = _token_losses(logits, tokens)
    return InductionReport(
        scores=scores.numpy(), loss_first=losses[:, 1:length].mean().item(),
        loss_second=losses[:, length:].mean().item(),
    )


def induction_ok(report: InductionReport, t: Thresholds = THRESHOLDS) -> bool:
    return bool((report.scores >= t.induction_score).sum() >= t.induction_heads
                and report.loss_second <= t.copy_loss_ratio * report.loss_first)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


@dataclass(frozen=True)
class NeedleReport:
    recall: float  # share of needles whose whole code is predicted top-1 (teacher forced)
    first_token_recall: float
    retrieval_scores: np.ndarray  # [layer, head], Wu et al. 2024
    filler_tokens: int


@dataclass(frozen=True)
class NeedleRow:
    """One needle prompt, [BOS, statement with the code, filler, query, code], with the
    code's planted positions: the answer repeats exactly those token ids."""

    ids: list[int]
    planted: list[int]  # where each code token sits in the statement
    asked: list[int]  # the positions whose next token is a code token of the answer


def needle_row(encode_text: Callable[[str], list[int]], bos: int, rng: np.random.Generator,
               filler_tokens: int | None = None, total: int | None = None) -> NeedleRow:
    """The embedded model's retrieval format (`corpus.needle`), for any tokenizer: a
    statement "The <key> code: w1 w2 w3." after BOS, stories as filler, and the question
    "The <key> code:" at the end, followed by the code. Built from its pieces' token ids, so
    the planted code and the answer are the same ids whatever the tokenizer. The filler is
    `filler_tokens` long, or what makes the row `total` tokens long."""
    planted = corpus.needle(rng)
    lead = [bos] + encode_text(planted.query)
    code = encode_text(" " + " ".join(planted.code))
    statement = lead + code + encode_text(".")
    question = encode_text(" " + planted.query)
    if filler_tokens is None:
        filler_tokens = total - len(statement) - len(question) - len(code)
    if filler_tokens < 1:
        raise ValueError(f"no room for filler: a needle prompt needs more than {total} tokens")
    filler: list[int] = []
    while len(filler) < filler_tokens:
        filler += encode_text(" " + corpus.story(rng, 8))
    ids = statement + filler[:filler_tokens] + question
    answer_start = len(ids)
    return NeedleRow(ids + code, list(range(len(lead), len(lead) + len(code))),
                     list(range(answer_start - 1, answer_start - 1 + len(code))))


@dataclass(frozen=True)
class NeedleBatch:
    """Needle prompts of one length (`needle_row`); codes may differ in token count, so
    the per-row code positions are padded, `valid` marking the real ones."""

    tokens: Int[Tensor, "batch pos"]
    planted: Int[Tensor, "batch code"]  # where each code token was planted
    asked: Int[Tensor, "batch code"]  # positions whose next token is that code token
    valid: Tensor  # [batch, code] bool: False on padding

    @classmethod
    def of(cls, rows: list[NeedleRow]) -> NeedleBatch:
        width = max(len(r.planted) for r in rows)

        def padded(values: list[int]) -> list[int]:
            return values + [0] * (width - len(values))

        return cls(torch.tensor([r.ids for r in rows]), torch.tensor([padded(r.planted) for r in rows]),
                   torch.tensor([padded(r.asked) for r in rows]),
                   torch.tensor([[i < len(r.planted) for i in range(width)] for r in rows]))

    def rows(self, start: int, stop: int) -> NeedleBatch:
        return NeedleBatch(self.tokens[start:stop], self.planted[start:stop], self.asked[start:stop],
                           self.valid[start:stop])

    def to(self, device) -> NeedleBatch:
        return NeedleBatch(*(t.to(device) for t in (self.tokens, self.planted, self.asked, self.valid)))

    def correct(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        """[batch, code] True where the top-1 prediction is the next code token (teacher
        forced), and on padding, so that `.all(-1)` says the whole code was recalled."""
        asked = self.asked.to(logits.device)
        predicted = logits.gather(1, asked[..., None].expand(-1, -1, logits.shape[-1])).argmax(-1)
        return (predicted == self.tokens.gather(1, asked + 1)) | ~self.valid.to(logits.device)

    def copied(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        """[batch, code] True where greedy decoding has the code right so far: each token
        counts as copied while every prediction up to it is correct."""
        return self.correct(logits).long().cumprod(-1).bool() & self.valid.to(logits.device)

    def recall(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        """[batch] 1.0 where the whole code is recalled top-1."""
        return self.correct(logits).all(-1).float()


def needle_batch(tokenizer, rng: np.random.Generator, n: int = 100, filler_tokens: int = 200) -> NeedleBatch:
    return NeedleBatch.of([needle_row(lambda text: encode(tokenizer, text), tokenizer.bos_token_id, rng,
                                      filler_tokens) for _ in range(n)])


def measure_needle(forward: Forward, tokenizer, rng: np.random.Generator, n: int = 100,
                   filler_tokens: int = 200) -> NeedleReport:
    batch = needle_batch(tokenizer, rng, n, filler_tokens)
    logits, patterns = forward(batch.tokens)
    scores, weights = retrieval_scores(most_attended_keys(patterns, batch.asked), batch.planted,
                                       batch.copied(logits))
    return NeedleReport(
        recall=batch.recall(logits).mean().item(),
        first_token_recall=batch.correct(logits)[:, 0].float().mean().item(),
        retrieval_scores=pooled(scores, weights).numpy(),
        filler_tokens=filler_tokens,
    )


def retrieval_ok(report: NeedleReport, t: Thresholds = THRESHOLDS) -> bool:
    return bool(report.recall >= t.needle_recall and report.retrieval_scores.max() >= t.retrieval_score)


def last_position_logits(forward: Forward, tokenizer, prompts: list[str]) -> Tensor:
    """[batch, d_vocab] logits at each prompt's last token (right-padded batch, BOS first)."""
    rows = [[tokenizer.bos_token_id] + encode(tokenizer, p) for p in prompts]
    width = max(map(len, rows))
    tokens = torch.tensor([r + [tokenizer.bos_token_id] * (width - len(r)) for r in rows])
    logits, _ = forward(tokens)
    last = torch.tensor([len(r) - 1 for r in rows])
    return logits[torch.arange(len(rows)), last]


@dataclass(frozen=True)
class AnswerReport:
    accuracy: float  # answer is the top-1 token over the whole vocabulary
    mean_logit_diff: float  # answer − distractor (IOI: IO − S); nan when no distractor


def ioi_ok(report: AnswerReport, t: Thresholds = THRESHOLDS) -> bool:
    return bool(report.accuracy >= t.ioi_accuracy and report.mean_logit_diff >= t.ioi_logit_diff)


def facts_ok(report: AnswerReport, t: Thresholds = THRESHOLDS) -> bool:
    return bool(report.accuracy >= t.facts_accuracy)


def text_ok(loss: float, t: Thresholds = THRESHOLDS) -> bool:
    return bool(loss <= t.text_loss)


def measure_ioi(forward: Forward, tokenizer, rng: np.random.Generator, n: int = 200,
                held_out: bool = True) -> AnswerReport:
    split = corpus.ioi_split()
    pairs, templates = ((split.test_pairs, split.test_templates) if held_out
                        else (split.train_pairs, split.train_templates))
    items = [corpus.ioi_item(rng, pairs, templates) for _ in range(n)]
    logits = last_position_logits(forward, tokenizer, [i.prompt for i in items])
    io = torch.tensor([encode(tokenizer, " " + i.io)[0] for i in items])
    s = torch.tensor([encode(tokenizer, " " + i.s)[0] for i in items])
    rows = torch.arange(n)
    return AnswerReport(
        accuracy=(logits.argmax(-1) == io).float().mean().item(),
        mean_logit_diff=(logits[rows, io] - logits[rows, s]).mean().item(),
    )


def measure_facts(forward: Forward, tokenizer) -> AnswerReport:
    prompts = [corpus.FACT_TEMPLATE.format(country=c) for c, _ in lx.CAPITALS]
    answers = torch.tensor([encode(tokenizer, " " + cap)[0] for _, cap in lx.CAPITALS])
    logits = last_position_logits(forward, tokenizer, prompts)
    return AnswerReport(accuracy=(logits.argmax(-1) == answers).float().mean().item(),
                        mean_logit_diff=float("nan"))


def measure_text_loss(forward: Forward, tokenizer, rng: np.random.Generator, n: int = 32,
                      length: int = 128) -> float:
    """Mean next-token loss (nats) on held-out stories of `length` tokens."""
    rows = []
    for _ in range(n):
        ids: list[int] = []
        while len(ids) < length:
            ids += encode(tokenizer, (" " if ids else "") + corpus.story(rng, 10))
        rows.append([tokenizer.bos_token_id] + ids[:length])
    tokens = torch.tensor(rows)
    logits, _ = forward(tokens)
    return _token_losses(logits, tokens)[:, 1:].mean().item()
