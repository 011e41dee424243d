"""Direct logit attribution: how much each component writes the answer's logit lead.

The residual stream at the last position is a sum of component outputs — the
embeddings, every attention layer (itself a sum of its heads plus a bias) and
every MLP. The final norm is affine once its scale (the residual's own
norm, `ln_final.hook_scale`) is fixed at its cached value, and the unembedding
is linear, so the logit difference answer − wrong splits exactly into one term
per component plus a constant (the final norm's bias and the unembedding's bias
read along the same direction): Elhage et al. 2021, "A Mathematical Framework
for Transformer Circuits"; Wang et al. 2022 (IOI).

TransformerLens's `tools.analysis.direct_logit_attribution` computes the same
numbers but needs `enable_compatibility_mode()` (LayerNorm folded into the
weights: one-way and about three times the memory). Here the plain bridge's
cache is read instead — centring (LayerNorm), division by the cached scale and
the norm's weight applied explicitly — so the shared model is never changed;
tests hold the two equal on a separately booted compatibility-mode bridge.

Table `contributions` (`component`, `layer`, `head`, `value`); `layer` and `head`
are -1 where they do not apply:
- `embed`, `pos_embed` (when the model has learned positions), `attn` and `mlp`
  per layer, and `bias`: these sum to the model's logit difference;
- `head` per (layer, head) and `attn_bias` per layer (the output bias b_O):
  a layer's heads plus its `attn_bias` sum to its `attn` row.
Without `wrong`, the same decomposition of the answer's logit itself.

Table `neurons` (`layer`, `part`, `neuron`, `rank`, `activation`, `value`): each MLP's row
split into its neurons at the last position. The MLP writes post @ W_out + b_out, so neuron
i's direct share is its activation post[i] times its output row W_out[i] read through the
same frozen final norm into answer − wrong (the neuron atlas's reading, Geva et al. 2022,
with this prompt's activation and scale). Per layer: the `top_k` neurons that raise the
difference most and the `top_k` that lower it most (`part` "neuron", `rank` 1 = the largest
|value| of the layer's listed ones), `rest` (every other neuron, summed) and `bias` (b_out,
where the MLP has one): these add up to the layer's `mlp` row. Negative neurons in the last
layer are where Geva et al. 2023's late "anti-overconfidence" suppression would show.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import UserError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds import row_batches
from analyses.kinds.final_norm import FinalNorm
from analyses.kinds.tokens import prompt_tokens, single_token

COLUMNS = CATALOGUE["dla"].tables["contributions"]
NEURON_COLUMNS = CATALOGUE["dla"].tables["neurons"]
TOTAL_COMPONENTS = ("embed", "pos_embed", "attn", "mlp", "bias")  # rows that sum to the logit difference


def _needed(n_layers: int) -> set[str]:
    names = {"hook_embed", "hook_pos_embed", "ln_final.hook_scale", f"blocks.{n_layers - 1}.hook_resid_post"}
    for layer in range(n_layers):
        names |= {f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out",
                  f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.mlp.hook_post"}
    return names


def logit_direction(bridge, answer: int, wrong: int | None) -> Float[Tensor, "d_model"]:  # noqa: F821 - a jaxtyping shape
    w_u = bridge.W_U
    return w_u[:, answer] - (w_u[:, wrong] if wrong is not None else 0)


@dataclass(frozen=True)
class DirectAttribution:
    """A batch of rows: each row's components' direct contributions at its last position, its
    MLPs split by neuron, and the model's own value there."""

    components: list[tuple[str, int, int]]  # [component]: (component, layer, head), as COLUMNS
    values: Tensor  # [batch, component]
    logit_diff: Tensor  # [batch]: the model's own logit(answer) - logit(wrong) there
    residual_error: Tensor  # [batch]: max |sum of the parts - the final residual|: float noise only
    activations: Tensor  # [batch, layer, d_mlp]: each MLP's activation (hook_post)
    neuron_values: Tensor  # [batch, layer, d_mlp]: each neuron's direct value
    neuron_bias: Tensor  # [batch, layer]: b_out's value (0 without b_out)


@torch.no_grad()
def forward(bridge, tokens: Tensor):
    """The logits [batch, pos, vocab] and the cache of every hook DLA reads, for every row of
    `tokens` [batch, pos]."""
    names = _needed(int(bridge.cfg.n_layers))
    return bridge.run_with_cache(tokens, names_filter=lambda n: n in names)


class Reading:
    """Vectors read through the final norm's linear part, each row's cached scale frozen, along
    each row's answer − wrong direction: a row's value of x is linear(x) @ direction / scale
    (the scale is one number per row, so dividing after the product is the same map)."""

    def __init__(self, bridge, cache, answers: list[int], wrongs: list[int | None]):
        self.norm = FinalNorm(bridge)
        self.frozen = "ln_final.hook_scale" in cache  # False: the model has no final norm
        # [batch]: the final norm's scale at each row's last position
        self.scale = cache["ln_final.hook_scale"][:, -1, 0].float() if self.frozen else None
        self.directions = torch.stack([logit_direction(bridge, a, w).float()
                                       for a, w in zip(answers, wrongs)])  # [batch, d_model]

    def _linear(self, x: Tensor) -> Tensor:
        return self.norm.linear(x) if self.frozen else x

    def _per_row(self, values: Float[Tensor, "batch n"]) -> Float[Tensor, "batch n"]:
        return values / self.scale[:, None] if self.frozen else values

    def own(self, x: Float[Tensor, "batch n d_model"]) -> Float[Tensor, "batch n"]:
        """Each row's own vectors (cached activations), each along its row's direction."""
        return self._per_row(torch.einsum("bnd,bd->bn", self._linear(x), self.directions))

    def shared(self, w: Float[Tensor, "n d_model"]) -> Float[Tensor, "batch n"]:
        """Vectors every row shares (weights, biases), along every row's direction."""
        return self._per_row((self._linear(w) @ self.directions.T).T)


@torch.no_grad()
def attribute(bridge, logits: Tensor, cache, answers: list[int], wrongs: list[int | None]
              ) -> DirectAttribution:
    """Every row of a batch's `forward` (logits [batch, pos, vocab]): its components' direct
    contributions at the last position, and its actual logit difference. All rows are read
    at once, one product per kind of component, never one per row and component."""
    n_layers = int(bridge.cfg.n_layers)
    batch = logits.shape[0]
    read = Reading(bridge, cache, answers, wrongs)

    def last(name: str) -> Float[Tensor, "batch d_model"]:
        return cache[name][:, -1].float()

    components = [("embed", -1, -1)]
    embeddings = [last("hook_embed")]
    if "hook_pos_embed" in cache:
        components.append(("pos_embed", -1, -1))
        embeddings.append(last("hook_pos_embed"))
    values = [read.own(torch.stack(embeddings, dim=1))]  # each [batch, n]
    residual = sum(embeddings)
    activations, neuron_values, neuron_bias = [], [], []
    for layer in range(n_layers):
        attn, mlp = bridge.blocks[layer].attn, bridge.blocks[layer].mlp
        z = cache[f"blocks.{layer}.attn.hook_z"][:, -1].float()  # [batch, head, d_head]
        per_head = torch.einsum("bhd,hdm->bhm", z, attn.W_O.float())  # [batch, head, d_model]
        components += [("head", layer, h) for h in range(per_head.shape[1])]
        values.append(read.own(per_head))
        if attn.b_O is not None:
            components.append(("attn_bias", layer, -1))
            values.append(read.shared(attn.b_O.float()[None]))
        attn_out, mlp_out = last(f"blocks.{layer}.hook_attn_out"), last(f"blocks.{layer}.hook_mlp_out")
        components += [("attn", layer, -1), ("mlp", layer, -1)]
        values.append(read.own(torch.stack([attn_out, mlp_out], dim=1)))
        post = last(f"blocks.{layer}.mlp.hook_post")  # [batch, d_mlp]
        activations.append(post)
        # value is linear, so neuron i's share is post[i] * value(W_out[i])
        neuron_values.append(post * read.shared(mlp.W_out.float()))
        b_out = getattr(mlp, "b_out", None)
        neuron_bias.append(read.shared(b_out.float()[None])[:, 0] if b_out is not None else torch.zeros(batch))
        residual = residual + attn_out + mlp_out
    components.append(("bias", -1, -1))
    values.append(_constant(bridge, read, answers, wrongs)[:, None])
    final_resid = last(f"blocks.{n_layers - 1}.hook_resid_post")
    resid_error = (residual - final_resid).abs().amax(-1)  # [batch]
    if (resid_error > 1e-3 * final_resid.abs().amax(-1).clamp(min=1.0)).any():  # float noise is ~1e-6
        raise RuntimeError(f"dla: the residual stream of {bridge.cfg.model_name} is not the sum of its "
                           f"embeddings, attention and MLP outputs (off by {resid_error.max():.3g}); this "
                           "architecture is not supported")
    return DirectAttribution(components, torch.cat(values, dim=1), _logit_diffs(logits, answers, wrongs),
                             resid_error, torch.stack(activations, 1), torch.stack(neuron_values, 1),
                             torch.stack(neuron_bias, 1))


def _constant(bridge, read: Reading, answers: list[int], wrongs: list[int | None]) -> Float[Tensor, "batch"]:  # noqa: F821
    """The part of each row's value no component writes: the final norm's bias and the
    unembedding's bias along its direction."""
    constant = torch.zeros(len(answers))
    if read.norm.bias is not None and read.frozen:
        constant = constant + read.directions @ read.norm.bias.float()
    b_u = getattr(bridge.unembed, "b_U", None)
    if b_u is not None:
        b_u = b_u.float()
        constant = constant + b_u[answers] - torch.stack(
            [b_u[w] if w is not None else torch.zeros(()) for w in wrongs])
    return constant


def _logit_diffs(logits: Tensor, answers: list[int], wrongs: list[int | None]) -> Float[Tensor, "batch"]:  # noqa: F821
    final = logits[:, -1].float()  # [batch, vocab]
    rows = torch.arange(final.shape[0])
    wrong = torch.stack([final[r, w] if w is not None else torch.zeros(()) for r, w in zip(rows, wrongs)])
    return final[rows, answers] - wrong


def contribution_table(found: DirectAttribution) -> pd.DataFrame:
    """Every row's components, rows one after the other ([batch * component] rows, as COLUMNS)."""
    batch = found.values.shape[0]
    component, layer, head = (np.array(column) for column in zip(*found.components))
    return pd.DataFrame({"component": np.tile(component, batch), "layer": np.tile(layer, batch),
                         "head": np.tile(head, batch), "value": found.values.double().numpy().ravel()},
                        columns=list(COLUMNS))


def neuron_table(found: DirectAttribution, top_k: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Per row and layer the `top_k` neurons that raise the difference most and the `top_k`
    that lower it most (by |value|, largest first), then `rest` and `bias`, which with them
    add up to the layer's MLP; rows one after the other. Also how many lines each row has.

    Every (row, layer) gets 2k candidate slots, then `rest` and `bias`; a slot is kept where
    its neuron raises (top k) or lowers (bottom k) the difference at all."""
    values, post = found.neuron_values, found.activations  # [batch, layer, d_mlp]
    batch, n_layers, d_mlp = values.shape
    k = min(top_k, d_mlp)
    up, down = values.topk(k, dim=-1), values.topk(k, dim=-1, largest=False)
    index = torch.cat([up.indices, down.indices], dim=-1)  # [batch, layer, 2k]
    chosen = torch.cat([up.values, down.values], dim=-1)
    listed = torch.cat([up.values > 0, down.values < 0], dim=-1)
    # largest |value| first, unlisted slots last; stable, so equal values keep topk's order
    order = torch.where(listed, -chosen.abs(), torch.inf).sort(dim=-1, stable=True).indices
    index, chosen, listed = index.gather(-1, order), chosen.gather(-1, order), listed.gather(-1, order)
    # with 2k > d_mlp a neuron can fill an up and a down slot: count its listed slots
    unlisted = torch.zeros_like(values).scatter_add(-1, index, listed.to(values.dtype)) == 0
    rest = torch.where(unlisted, values, 0).sum(-1)  # [batch, layer]
    slots = 2 * k + 2
    keep = torch.cat([listed, torch.ones(batch, n_layers, 2, dtype=torch.bool)], dim=-1).numpy()
    rank = np.broadcast_to(np.arange(1, 2 * k + 1), (batch, n_layers, 2 * k))
    frame = pd.DataFrame({
        "layer": np.broadcast_to(np.arange(n_layers)[:, None], (batch, n_layers, slots))[keep],
        "part": np.broadcast_to(np.array(["neuron"] * (2 * k) + ["rest", "bias"], dtype=object),
                                (batch, n_layers, slots))[keep],
        "neuron": np.concatenate([index.numpy(), np.full((batch, n_layers, 2), -1)], -1)[keep],
        "rank": np.concatenate([rank, np.full((batch, n_layers, 2), -1)], -1)[keep],
        "activation": np.concatenate([post.gather(-1, index).double().numpy(),
                                      np.full((batch, n_layers, 2), np.nan)], -1)[keep],
        "value": np.concatenate([chosen.double().numpy(), rest.double().numpy()[..., None],
                                 found.neuron_bias.double().numpy()[..., None]], -1)[keep],
    }, columns=list(NEURON_COLUMNS))
    return frame, keep.reshape(batch, -1).sum(1)


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec, tokens, answer, wrong = _read_inputs(bridge, spec)
    progress(0.1, "running the model")
    logits, cache = forward(bridge, tokens)
    progress(0.6, "reading the components through the final norm")
    result, = _results(bridge, [spec], tokens, logits, cache, [answer], [wrong])
    progress(1.0, "done")
    return result


MAX_SET_TOKENS = 4096  # batch rows x positions one forward of a set's rows may take


@torch.no_grad()
def run_examples(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list[Result | UserError]:
    """A prompt set's rows (`kinds/sets.py`): each row's `run` result, or the UserError it
    raises, in its place. Rows of one token length and one `top_k` share a forward pass and
    are decomposed together (`attribute` reads every row of a batch at once; each row reads
    its own row of the cache), so each equals its `run` to float rounding."""
    bridge = model.bridge
    outcomes, read = row_batches.read_rows(specs, lambda spec: _read_inputs(bridge, spec))
    batches = row_batches.batches({i: (int(tokens.shape[1]), spec.top_k) for i, (spec, tokens, _, _) in read.items()},
                                  MAX_SET_TOKENS)
    for n, batch in enumerate(batches):
        progress(n / len(batches), f"decomposing the last position: batch {n + 1} of {len(batches)}")
        tokens = torch.cat([read[i][1] for i in batch])  # [batch, pos]
        logits, cache = forward(bridge, tokens)
        rows = [read[i] for i in batch]
        found = _results(bridge, [r[0] for r in rows], tokens, logits, cache, [r[2] for r in rows],
                         [r[3] for r in rows])
        for i, result in zip(batch, found):
            outcomes[i] = result
    progress(1.0, "done")
    return outcomes


def _read_inputs(bridge, spec: AnalysisSpec) -> tuple[AnalysisSpec, Tensor, int, int | None]:
    """The spec with its defaults, its prompt's tokens [1, pos], the answer's and the wrong
    token's ids; a UserError names what is wrong."""
    spec = spec.with_defaults()
    tokens = prompt_tokens(bridge, spec.prompt)
    answer = single_token(bridge, spec.answer, "answer")
    wrong = single_token(bridge, spec.wrong, "wrong") if spec.wrong is not None else None
    return spec, tokens, answer, wrong


def _results(bridge, specs: list[AnalysisSpec], tokens: Tensor, logits: Tensor, cache,
             answers: list[int], wrongs: list[int | None]) -> list[Result]:
    """Each row's Result from a batch's `forward` (`specs` share one `top_k` and one token
    length): the tables are built once for the batch and cut per row."""
    found = attribute(bridge, logits, cache, answers, wrongs)
    n_components = len(found.components)
    contributions = row_batches.split_rows(contribution_table(found), [n_components] * len(specs))
    neurons, counts = neuron_table(found, specs[0].top_k)
    totals = found.values[:, [c in TOTAL_COMPONENTS for c, _, _ in found.components]].double().sum(-1)
    return [Result(spec=spec, tables={"contributions": table, "neurons": neuron_part}, meta={
        "logit_diff": float(found.logit_diff[row]), "sum_of_components": float(totals[row]),
        "residual_error": float(found.residual_error[row]), "total_components": list(TOTAL_COMPONENTS),
        "position": int(tokens.shape[1] - 1), "n_tokens": int(tokens.shape[1]),
        "d_mlp": int(bridge.cfg.d_mlp),
    }) for row, (spec, table, neuron_part) in enumerate(zip(specs, contributions,
                                                           row_batches.split_rows(neurons, counts)))]
