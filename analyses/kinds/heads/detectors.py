"""Detectors: the plug-ins that score a head for one attention behaviour, registered in
one visible list (`DETECTORS`); what each score means is in `analyses.kinds.heads`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.head_detector import (
    get_duplicate_token_head_detection_pattern,
    get_induction_head_detection_pattern,
    get_previous_token_head_detection_pattern,
)

from analyses.embedded import measures
from analyses.kinds.heads.probes import Probe

MIN_COPY_EVENTS = 20  # fewer copied tokens than this: no retrieval score is shown

COLUMNS = ("score", "tl_score")  # what a detector's score() gives per head, in this order


@dataclass(frozen=True)
class Scored:
    """A detector's scores on a chunk of sequences, and what pools them over sequences."""

    values: Float[Tensor, "layer batch head 2"]  # COLUMNS per sequence
    weights: Float[Tensor, "batch"]  # noqa: F821 - each sequence's weight in the pooled mean
    events: Float[Tensor, "batch"]  # noqa: F821 - observations each sequence's score averages


class PatternDetector:
    """TransformerLens's `detect_head` score ("mul", exclude_bos) for a detection pattern,
    vectorised over heads and sequences: per sequence, the head's attention on the
    pattern's (query, key) cells over its attention to every key but BOS. With `standard`,
    `score` is that function of the pattern instead (`tl_score` stays TransformerLens's)."""

    def __init__(self, summary: str, probe: str, behaviour: str,
                 detection_pattern: Callable[[Tensor], Tensor],
                 standard: Callable[[Probe, Tensor], Tensor] | None = None):
        self.summary, self.probe, self.behaviour = summary, probe, behaviour
        self.detection_pattern = detection_pattern  # tokens [1, pos] -> [pos, pos] of 0/1
        self.standard = standard  # (probe, pattern [batch head q k]) -> [batch head]

    def prepare(self, probe: Probe) -> Float[Tensor, "batch pos pos"]:
        rows = probe.tokens.cpu()
        return torch.stack([self.detection_pattern(rows[i:i + 1]) for i in range(len(rows))]
                           ).to(probe.tokens.device)

    def layer_stat(self, probe: Probe, target: Tensor,
                   pattern: Float[Tensor, "batch head pos pos"]) -> Float[Tensor, "batch head 3"]:
        attention = pattern.float()[..., 1:]  # keys after BOS
        matched = torch.einsum("bhqk,bqk->bh", attention, target[..., 1:].float())
        total = attention.sum((-1, -2))
        standard = self.standard(probe, pattern) if self.standard else torch.full_like(total, torch.nan)
        return torch.stack([matched, total, standard], dim=-1)

    def score(self, probe: Probe, target: Tensor, stats: Float[Tensor, "layer batch head 3"],
              logits: Tensor) -> Scored:
        matched, total = stats[..., 0], stats[..., 1]
        tl = torch.where(total > 0, matched / total.clamp_min(1e-30), 0.0)
        score = stats[..., 2] if self.standard else tl
        ones = torch.ones(stats.shape[1], device=stats.device)
        # the queries each sequence's score averages: the second copy, or every one after BOS
        queries = probe.copy_length if self.standard else probe.tokens.shape[1] - 1
        return Scored(torch.stack([score, tl], dim=-1), ones, ones * queries)


def induction_score(probe: Probe, pattern: Float[Tensor, "batch head pos pos"]) -> Float[Tensor, "batch head"]:
    """The model card's induction score of each head on each [BOS, r, r] sequence."""
    return measures.induction_scores(pattern, probe.copy_length)


class RetrievalDetector:
    """Wu et al. 2024: on each copied code token, is the head's top key that token in the needle?"""

    summary = "copies from a needle planted far back in the context (Wu et al. 2024)"
    probe = "needle"
    behaviour = "needle_recall"
    min_events = MIN_COPY_EVENTS

    def prepare(self, probe: Probe) -> None:
        return None

    def too_few(self, events: int, n_sequences: int) -> str:
        tokens = "token" if events == 1 else "tokens"
        return (f"the model copied {events} code {tokens} over {n_sequences} needle prompts, fewer than "
                f"{MIN_COPY_EVENTS}: too few copy events to score retrieval heads (one copied token "
                f"would make a head 1.00)")

    def layer_stat(self, probe: Probe, _, pattern: Float[Tensor, "batch head pos pos"]
                   ) -> Int[Tensor, "batch head code"]:
        return measures.most_attended_keys(pattern, probe.needle.asked)  # from each asking query

    def score(self, probe: Probe, _, stats: Int[Tensor, "layer batch head code"], logits: Tensor) -> Scored:
        copied = probe.needle.copied(logits)  # [batch, code]
        scores, n_copied = measures.retrieval_scores(stats, probe.needle.planted.to(stats.device), copied)
        no_tl = torch.full_like(scores, torch.nan)  # TransformerLens has no retrieval detector
        # weights = tokens copied: the pooled score is all hits over all tokens copied
        return Scored(torch.stack([scores, no_tl], dim=-1), n_copied, n_copied)


# The one visible list of detectors: name -> plug-in.
DETECTORS = {
    "previous_token": PatternDetector("attends to the previous token", "plain",
                                      "second_copy_loss", get_previous_token_head_detection_pattern),
    "duplicate_token": PatternDetector("attends to earlier copies of the current token",
                                       "repeated", "second_copy_loss",
                                       get_duplicate_token_head_detection_pattern),
    "induction": PatternDetector("attends to the token after an earlier copy of the current one",
                                 "repeated", "second_copy_loss", get_induction_head_detection_pattern,
                                 standard=induction_score),
    "retrieval": RetrievalDetector(),
}

