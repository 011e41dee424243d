"""Behaviours: what mean-ablating a detector's heads should hurt, each measured per
sequence on its own probe."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from analyses.kinds.heads.probes import Probe


@dataclass(frozen=True)
class Behaviour:
    """What mean-ablating a detector's heads should hurt, measured per sequence."""

    metric: str
    probe: str
    higher_is_better: bool
    measure: Callable[[Probe, Tensor], Tensor]  # (probe, logits [batch pos d_vocab]) -> [batch]


def second_copy_loss(probe: Probe, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
    """[batch] mean loss (nats) on the second copy's tokens after its first, the ones an
    induction circuit can predict."""
    length = probe.copy_length
    logp = logits[:, length + 1:-1].float().log_softmax(-1)  # predicts positions length+2 ..
    target = probe.tokens[:, length + 2:]
    return -logp.gather(-1, target[..., None])[..., 0].mean(-1)


def needle_recall(probe: Probe, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
    """[batch] 1 where the whole code is recalled top-1 (teacher forced): the model card's
    needle recall."""
    return probe.needle.recall(logits)


BEHAVIOURS: dict[str, Behaviour] = {
    "second_copy_loss": Behaviour("second_copy_loss", "repeated", False, second_copy_loss),
    "needle_recall": Behaviour("needle_recall", "needle", True, needle_recall),
}

