"""Edge attribution: each edge's effect on the metric, estimated from gradients.

score(sender → receiver) = Σ over positions of (clean − corrupted write of the sender) ·
(the metric's gradient at the receiver's input):
- EAP, `gradient="corrupted"` (the default): the gradient on the corrupted run, a first-order
  estimate of restoring the clean write into the corrupted run (one forward on the clean
  prompt, one forward and backward on the corrupted one) — TransformerLens's
  `attribution_patch(granularity="edge")`, its positions summed;
- EAP, `gradient="clean"`: the gradient on the clean run, a first-order estimate of
  corrupting that write in the clean run — the convention of the reference code of Syed et
  al. 2023, "Attribution Patching Outperforms Automated Circuit Discovery"
  (aaquib111/edge-attribution-patching) and of Hanna et al.'s EAP (hannamw/EAP-IG, whose
  difference is corrupted − clean: the opposite sign, the same ranking);
- EAP-IG (Hanna et al. 2024, "Have Faith in Faithfulness", "inputs" variant): the gradient
  averaged over `steps` points on the straight line from the corrupted to the clean token
  embeddings, α = 1/steps … 1 (the paper's right Riemann sum; the reference code's loop takes
  α = 0 … (steps − 1)/steps), all points in one batched forward and backward. It takes no
  `gradient`: its path runs between the two runs.
Denoising sign, both gradients: a positive score means the clean write along that edge moves
the metric up.
"""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from analyses.core.catalogue import GRADIENTS
from analyses.kinds.circuits.activations import EMBED, reader_gradients, stack_writers, writer_outputs
from analyses.kinds.circuits.graph import Graph


def _scores(graph: Graph, delta: Tensor, grads: Tensor) -> Float[Tensor, "example writer reader"]:
    """delta [e, pos, writer, d], grads [e, pos, reader, d] -> position-summed edge scores,
    zero where no edge is."""
    valid = torch.as_tensor(graph.valid, device=delta.device)
    return torch.einsum("epwd,eprd->ewr", delta, grads) * valid


def eap(bridge, graph: Graph, clean, corrupted, metric, gradient: str = "corrupted"
        ) -> Float[Tensor, "example writer reader"]:
    """One forward and backward on the prompts of the `gradient` run (which also reads their
    writes), one forward on the others."""
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    writes: dict[str, Tensor] = {}
    if gradient == "corrupted":
        grads, _ = reader_gradients(bridge, graph, corrupted, metric, writes=writes)
        delta = writer_outputs(bridge, graph, clean) - stack_writers(graph, writes)
    else:
        grads, _ = reader_gradients(bridge, graph, clean, metric, writes=writes)
        delta = stack_writers(graph, writes) - writer_outputs(bridge, graph, corrupted)
    return _scores(graph, delta, grads)


def eap_ig(bridge, graph: Graph, clean, corrupted, metric, steps: int) -> Float[Tensor, "example writer reader"]:
    """`metric` takes logits of [example * steps] rows, example-major."""
    delta = writer_outputs(bridge, graph, clean) - writer_outputs(bridge, graph, corrupted)
    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(clean, names_filter=[EMBED])
        _, corrupted_cache = bridge.run_with_cache(corrupted, names_filter=[EMBED])
    start, end = corrupted_cache[EMBED], clean_cache[EMBED]  # [e, pos, d]
    alphas = torch.arange(1, steps + 1, device=start.device, dtype=start.dtype) / steps  # [steps]
    path = start[:, None] + alphas[None, :, None, None] * (end - start)[:, None]  # [e, steps, pos, d]
    n_examples, n_pos = clean.shape
    grads, _ = reader_gradients(bridge, graph, corrupted.repeat_interleave(steps, dim=0), metric,
                                embed=path.reshape(n_examples * steps, n_pos, -1))
    mean_grads = grads.reshape(n_examples, steps, *grads.shape[1:]).mean(1)
    return _scores(graph, delta, mean_grads)
