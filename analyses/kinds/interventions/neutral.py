"""The neutral text: plain story sentences, the kind of text the embedded model was trained
on and any English model reads easily. Three things are measured on it:

- mean ablation replaces a component's output by its mean over this text's positions;
- the `mean_centred` steering vector subtracts this text's mean residual;
- the KL of a steered or ablated model from the model itself is averaged over its
  next-token predictions: what an intervention changes in text it was not aimed at.
"""
from __future__ import annotations

from jaxtyping import Int
from torch import Tensor

from analyses.kinds.tokens import text_tokens

NEUTRAL_TEXT = (
    "Once upon a time, there was a little girl named Lily. She liked to play in the park "
    "with her dog. One day, she found a red ball under a big tree. She was very happy and "
    "showed the ball to her mother. Her mother smiled and said it was a good ball. Then "
    "Lily and her dog played with the ball until the sun went down. The next morning, a "
    "boy named Tom came to the park. He wanted to play too, so Lily gave him the ball."
)


def neutral_tokens(bridge) -> Int[Tensor, "1 pos"]:
    """BOS + the neutral text, cut to the model's context."""
    tokens = text_tokens(bridge, NEUTRAL_TEXT, prepend_bos=True)
    return tokens[:, : int(bridge.cfg.n_ctx)]
