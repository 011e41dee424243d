"""Measurements of the embedded model's known behaviours, on held-out items.

One definition of each, used while training (to decide when to stop), by the model card,
by its tests and by the `heads` analysis (`analyses/kinds/heads.py` scores induction and
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


def needle_tokens(tokenizer, rng: np.random.Generator, filler_tokens: int):
    """[BOS, needle, filler..., query, code] and the needle code's positions."""
    planted = corpus.needle(rng)
    ids = [tokenizer.bos_token_id] + encode(tokenizer, planted.statement)
    code_ids = encode(tokenizer, " " + " ".join(planted.code))
    statement_code_start = len(ids) - 1 - len(code_ids)  # the statement ends "... w1 w2 w3."
    filler: list[int] = []
    while len(filler) < filler_tokens:
        filler += encode(tokenizer, " " + corpus.story(rng, 8))
    ids += filler[:filler_tokens] + encode(tokenizer, " " + planted.query)
    answer_start = len(ids)
    ids += code_ids
    code_positions = list(range(statement_code_start, statement_code_start + len(code_ids)))
    return ids, code_positions, answer_start


@dataclass(frozen=True)
class NeedleBatch:
    """Needle prompts of one layout: [BOS, statement with the code, filler, query, code]."""

    tokens: Int[Tensor, "batch pos"]
    code_positions: Int[Tensor, "batch code"]  # where each code token was planted
    answer_start: int  # position of the first code token after the query

    @property
    def predict_at(self) -> Int[Tensor, "code"]:  # noqa: F821 - a jaxtyping shape
        """The positions whose next token is a code token of the answer."""
        n_code = self.code_positions.shape[1]
        return torch.arange(self.answer_start - 1, self.answer_start - 1 + n_code)

    def correct(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        """[batch, code] True where the top-1 prediction is the next code token (teacher forced)."""
        return logits[:, self.predict_at].argmax(-1) == self.tokens[:, self.predict_at + 1]


def needle_batch(tokenizer, rng: np.random.Generator, n: int = 100, filler_tokens: int = 200) -> NeedleBatch:
    rows = [needle_tokens(tokenizer, rng, filler_tokens) for _ in range(n)]
    return NeedleBatch(torch.tensor([r[0] for r in rows]),  # all rows have the same length
                       torch.tensor([r[1] for r in rows]), rows[0][2])


def measure_needle(forward: Forward, tokenizer, rng: np.random.Generator, n: int = 100,
                   filler_tokens: int = 200) -> NeedleReport:
    batch = needle_batch(tokenizer, rng, n, filler_tokens)
    tokens, code_positions, predict_at = batch.tokens, batch.code_positions, batch.predict_at
    logits, patterns = forward(tokens)
    correct = batch.correct(logits)
    most_attended = patterns[:, :, :, predict_at].argmax(-1)  # [layer, batch, head, code]
    copied = correct.long().cumprod(-1)  # greedy decoding copies until its first miss
    scores, weights = retrieval_scores(most_attended, code_positions, copied)
    return NeedleReport(
        recall=correct.all(-1).float().mean().item(),
        first_token_recall=correct[:, 0].float().mean().item(),
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
