"""Measurements of the embedded model's known behaviours, on held-out items.

Used while training (to decide when to stop), by the model card and by tests.
Each measurement takes a `Forward`: a function from token ids `[batch, pos]` to
`(logits [batch, pos, d_vocab], patterns [layer, batch, head, query_pos, key_pos])`,
so the same code runs on a Hugging Face model during training and on a
TransformerBridge afterwards (`bridge_forward`).

- induction: Olsson et al. 2022 — on [BOS, r, r] with r random tokens, the mean
  attention from each second-copy token to the token after its first occurrence;
- retrieval: Wu et al. 2024 — of the code tokens the model copies from a needle,
  the share for which the head's most-attended key is that same token in the needle;
- IOI: Wang et al. 2022 — top-1 accuracy and logit difference (IO − S).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from .train_default import corpus
from .train_default import lexicon as lx

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
class InductionReport:
    scores: np.ndarray  # [layer, head] mean attention to the induction target
    loss_first: float  # mean loss on the first copy (tokens 2..L)
    loss_second: float  # mean loss on the second copy


def measure_induction(forward: Forward, bos: int, vocab: np.ndarray, rng: np.random.Generator,
                      n: int = 32, length: int = 40) -> InductionReport:
    r = rng.choice(vocab, size=(n, length))
    tokens = torch.tensor(np.concatenate([np.full((n, 1), bos), r, r], axis=1))
    logits, patterns = forward(tokens)
    query = torch.arange(length + 1, 2 * length + 1)  # every token of the second copy
    scores = patterns[:, :, :, query, query - length + 1].mean(dim=(1, 3))
    losses = _token_losses(logits, tokens)
    return InductionReport(
        scores=scores.numpy(), loss_first=losses[:, 1:length].mean().item(),
        loss_second=losses[:, length:].mean().item(),
    )


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


def measure_needle(forward: Forward, tokenizer, rng: np.random.Generator, n: int = 100,
                   filler_tokens: int = 200) -> NeedleReport:
    rows = [needle_tokens(tokenizer, rng, filler_tokens) for _ in range(n)]
    tokens = torch.tensor([r[0] for r in rows])  # all rows have the same length
    code_positions = torch.tensor([r[1] for r in rows])  # [batch, code]
    answer_start = rows[0][2]
    n_code = code_positions.shape[1]
    logits, patterns = forward(tokens)
    predict_at = torch.arange(answer_start - 1, answer_start - 1 + n_code)  # [code]
    predicted = logits[:, predict_at].argmax(-1)  # [batch, code]
    correct = predicted == tokens[:, predict_at + 1]
    most_attended = patterns[:, :, :, predict_at].argmax(-1)  # [layer, batch, head, code]
    hits = most_attended == code_positions[None, :, None, :]
    return NeedleReport(
        recall=correct.all(-1).float().mean().item(),
        first_token_recall=correct[:, 0].float().mean().item(),
        retrieval_scores=hits.float().mean(dim=(1, 3)).numpy(),
        filler_tokens=filler_tokens,
    )


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
