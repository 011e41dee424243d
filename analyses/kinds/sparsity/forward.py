"""The forwards the search makes: one dense run that keeps every layer's MLP activation (the
input to its output projection), and sparse runs that zero, in every layer at once, the neurons
whose contribution norm |a_j|·||w_j|| is below that layer's threshold.

The activation is `blocks.L.mlp.hook_post`: act(pre) for a plain MLP (GPT-2, NeoX), and
act(gate) · up for a gated one (Llama, stories260K) — the bridge's `W_out` multiplies it in
both (`check_output_projection` holds hook_post @ W_out + b_out to the MLP's output on the
model at hand before anything is measured).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from analyses.kinds.sparsity.text import TextBatch

LOGIT_BUDGET = 1 << 28  # bytes of one chunk's float32 logits (256 MiB)


def post_hook(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"


def output_weights(bridge) -> list[Float[Tensor, "d_mlp d_model"]]:
    """Every layer's W_out, float32 (rows: one neuron's output direction)."""
    return [block.mlp.W_out.detach().float() for block in bridge.blocks]


def check_output_projection(bridge, batch: TextBatch) -> None:
    """Refuse a model whose hook_post is not what its W_out multiplies (the thresholds would be
    on the wrong activation)."""
    tokens = batch.tokens[:1, : min(16, batch.tokens.shape[1])]
    names = {post_hook(layer) for layer in range(bridge.cfg.n_layers)}
    names |= {f"blocks.{layer}.hook_mlp_out" for layer in range(bridge.cfg.n_layers)}
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    for layer, block in enumerate(bridge.blocks):
        mlp = block.mlp
        out = cache[post_hook(layer)].float() @ mlp.W_out.float()
        if getattr(mlp, "b_out", None) is not None:
            out = out + mlp.b_out.float()
        actual = cache[f"blocks.{layer}.hook_mlp_out"].float()
        if (out - actual).abs().max() > 1e-3 * max(1.0, float(actual.abs().max())):
            raise RuntimeError(f"sparsity: layer {layer}'s hook_post times W_out is not its MLP's "
                               f"output on {bridge.cfg.model_name}; this architecture is not supported")


def doc_chunks(batch: TextBatch, d_vocab: int) -> list[slice]:
    """Document slices whose logits fit LOGIT_BUDGET."""
    per_doc = batch.tokens.shape[1] * d_vocab * 4
    step = max(1, LOGIT_BUDGET // per_doc)
    return [slice(i, i + step) for i in range(0, batch.tokens.shape[0], step)]


def nll_sum(logits: Float[Tensor, "doc pos d_vocab"], batch: TextBatch, docs: slice) -> tuple[float, int]:
    """(summed next-token negative log-likelihood, how many targets) over the documents' text."""
    where = batch.targets()[docs][:, :-1]  # [doc, pos-1]
    logp = logits[:, :-1].float().log_softmax(-1)
    picked = logp.gather(-1, batch.tokens[docs][:, 1:, None])[..., 0]  # [doc, pos-1]
    return float(-(picked[where]).sum()), int(where.sum())


@dataclass(frozen=True)
class DenseRun:
    loss: float  # mean next-token NLL (nats) over the text
    acts: list[Float[Tensor, "tok d_mlp"]]  # per layer: hook_post at the text's tokens, float32


@torch.no_grad()
def dense_run(bridge, batch: TextBatch) -> DenseRun:
    n_layers = bridge.cfg.n_layers
    names = {post_hook(layer) for layer in range(n_layers)}
    acts: list[list[Tensor]] = [[] for _ in range(n_layers)]
    nll, count = 0.0, 0
    for docs in doc_chunks(batch, bridge.cfg.d_vocab):
        logits, cache = bridge.run_with_cache(batch.tokens[docs], names_filter=lambda n: n in names)
        part_nll, part_count = nll_sum(logits, batch, docs)
        nll, count = nll + part_nll, count + part_count
        for layer in range(n_layers):
            acts[layer].append(cache[post_hook(layer)][batch.mask[docs]].float())
    return DenseRun(nll / count, [torch.cat(parts) for parts in acts])


@dataclass(frozen=True)
class SparseRun:
    loss: float  # mean next-token NLL with the neurons below threshold zeroed
    fired: Float[Tensor, "layer doc pos"]  # share of a layer's neurons kept at each token (0 on padding)
    frequency: Float[Tensor, "layer d_mlp"]  # share of the text's tokens on which each neuron is kept


@torch.no_grad()
def sparse_run(bridge, batch: TextBatch, thresholds: list[float],
               weights: list[Float[Tensor, "d_mlp d_model"]]) -> SparseRun:
    """One forward over the text with every layer's neurons below its threshold zeroed (on
    the activations of this sparse run, as the paper's code: earlier layers' zeroing reaches
    later layers' activations)."""
    n_layers, d_mlp = bridge.cfg.n_layers, bridge.cfg.d_mlp
    fired = torch.zeros((n_layers, *batch.tokens.shape))
    counts = torch.zeros((n_layers, d_mlp))
    nll, total = 0.0, 0
    row_norms = [w.norm(dim=-1) for w in weights]  # per layer [d_mlp]: ||w_j||

    def zero_below(layer: int, docs: slice, mask):
        def hook(post, hook):  # post: [doc, pos, d_mlp]
            kept = (post.float().abs() * row_norms[layer].to(post.device)) >= thresholds[layer]
            fired[layer, docs] = (kept.float().mean(-1) * mask).cpu()
            counts[layer] += kept[mask].float().sum(0).cpu()
            return post * kept.to(post.dtype)
        return hook

    for docs in doc_chunks(batch, bridge.cfg.d_vocab):
        hooks = [(post_hook(layer), zero_below(layer, docs, batch.mask[docs])) for layer in range(n_layers)]
        logits = bridge.run_with_hooks(batch.tokens[docs], fwd_hooks=hooks)
        part_nll, part_count = nll_sum(logits, batch, docs)
        nll, total = nll + part_nll, total + part_count
    return SparseRun(nll / total, fired, counts / batch.n_tokens)
