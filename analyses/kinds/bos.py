"""The BOS policy, stated once: the beginning-of-sequence token is never intervened on and
never ranked.

Every head attends to BOS when it has nothing better to do (the attention sink, Xiao et al.
2023, "Efficient Streaming Language Models with Attention Sinks"), and the residual stream
and MLP activations there are outliers many times larger than at any other position.
Ablating, steering or averaging at BOS breaks the model in a way no circuit explains, and a
ranking of activations that includes it ranks the sink instead of the text. So ablation,
mean ablation's means, steering vectors (`mean_centred`'s means and `positions=all`) and the
neuron atlas's ranking of activations all start at `first_after_bos`: position 1 when the
model's prompts begin with BOS (`tokens.prompt_tokens`), position 0 when the model has none.
"""
from __future__ import annotations

from jaxtyping import Bool, Int
from torch import Tensor

from analyses.kinds.tokens import text_tokens


def first_after_bos(bridge) -> int:
    """The first position interventions and rankings touch: 1 when `prompt_tokens` puts BOS
    at position 0 for this model, 0 when the model has no BOS to put there."""
    with_bos = text_tokens(bridge, "a", prepend_bos=True).shape[1]
    bare = text_tokens(bridge, "a", prepend_bos=False).shape[1]
    return int(with_bos > bare)


def after_bos(positions: Int[Tensor, "pos"], start: int) -> Bool[Tensor, "pos"]:  # noqa: F821
    """Which of these absolute positions an intervention may change."""
    return positions >= start


def past_bos(x: Tensor, start: int, pos_dim: int = 1) -> Tensor:
    """`x` ([batch, pos, ...], or with `pos_dim`=0 [pos, ...]) without the BOS position:
    what means and rankings read."""
    return x.narrow(pos_dim, start, x.shape[pos_dim] - start)
