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
    """Each component's direct contribution at the last position, and the model's own value."""

    rows: list[tuple[str, int, int, float]]  # (component, layer, head, value), as COLUMNS
    logit_diff: float  # the model's own logit(answer) - logit(wrong) there
    residual_error: float  # max |sum of the parts - the final residual|: float noise only
    neurons: list[tuple[Tensor, Tensor, Tensor]]  # per layer: (activation [d_mlp],
    #   each neuron's value [d_mlp], b_out's value [] (0 without b_out))


@torch.no_grad()
def attribute(bridge, tokens, answer: int, wrong: int | None, progress: Progress = silent
              ) -> DirectAttribution:
    """Every component's direct contribution at the last position, and the actual logit
    difference."""
    logits, cache = forward(bridge, tokens)
    progress(0.6, "reading the components through the final norm")
    return attribute_cached(bridge, logits, cache, 0, answer, wrong)


@torch.no_grad()
def forward(bridge, tokens: Tensor):
    """The logits [batch, pos, vocab] and the cache of every hook DLA reads, for every row of
    `tokens` [batch, pos]."""
    names = _needed(int(bridge.cfg.n_layers))
    return bridge.run_with_cache(tokens, names_filter=lambda n: n in names)


@torch.no_grad()
def attribute_cached(bridge, logits: Tensor, cache, row: int, answer: int, wrong: int | None
                     ) -> DirectAttribution:
    """Row `row` of a batch's `forward`: its components' direct contributions at the last
    position, and its actual logit difference."""
    n_layers = bridge.cfg.n_layers

    def last(name: str) -> Float[Tensor, "d_model"]:  # noqa: F821 - a jaxtyping shape
        return cache[name][row, -1].float()

    # the final norm's scale at the last position; None: the model has no final norm
    scale = cache["ln_final.hook_scale"][row, -1].float() if "ln_final.hook_scale" in cache else None
    norm = FinalNorm(bridge)
    direction = logit_direction(bridge, answer, wrong).float()

    def value(x: Tensor) -> Tensor:
        return (norm.linear(x, scale) if scale is not None else x) @ direction

    rows = [("embed", -1, -1, value(last("hook_embed")))]
    neurons = []
    if "hook_pos_embed" in cache:
        rows.append(("pos_embed", -1, -1, value(last("hook_pos_embed"))))
    residual = sum(last(n) for n in ("hook_embed", "hook_pos_embed") if n in cache)
    for layer in range(n_layers):
        attn = bridge.blocks[layer].attn
        z = cache[f"blocks.{layer}.attn.hook_z"][row, -1].float()  # [head, d_head]
        per_head = torch.einsum("hd,hdm->hm", z, attn.W_O.float())  # [head, d_model]
        attn_out, mlp_out = last(f"blocks.{layer}.hook_attn_out"), last(f"blocks.{layer}.hook_mlp_out")
        rows += [("head", layer, h, value(per_head[h])) for h in range(per_head.shape[0])]
        if attn.b_O is not None:
            rows.append(("attn_bias", layer, -1, value(attn.b_O.float())))
        rows += [("attn", layer, -1, value(attn_out)), ("mlp", layer, -1, value(mlp_out))]
        neurons.append(neuron_values(bridge.blocks[layer].mlp, last(f"blocks.{layer}.mlp.hook_post"), value))
        residual = residual + attn_out + mlp_out
    constant = torch.zeros(())
    if norm.bias is not None and scale is not None:
        constant = constant + norm.bias.float() @ direction
    b_u = getattr(bridge.unembed, "b_U", None)
    if b_u is not None:
        constant = constant + b_u[answer].float() - (b_u[wrong].float() if wrong is not None else 0)
    rows.append(("bias", -1, -1, constant))
    final = logits[row, -1].float()
    actual = final[answer] - (final[wrong] if wrong is not None else 0)
    final_resid = last(f"blocks.{n_layers - 1}.hook_resid_post")
    resid_error = (residual - final_resid).abs().max()
    if resid_error > 1e-3 * max(1.0, final_resid.abs().max().item()):  # float noise is ~1e-6
        raise RuntimeError(f"dla: the residual stream of {bridge.cfg.model_name} is not the sum of its "
                           f"embeddings, attention and MLP outputs (off by {resid_error:.3g}); this "
                           "architecture is not supported")
    return DirectAttribution([(c, layer, h, float(v)) for c, layer, h, v in rows], float(actual),
                             float(resid_error), neurons)


def neuron_values(mlp, post: Float[Tensor, "d_mlp"], value) -> tuple[Tensor, Tensor, Tensor]:  # noqa: F821
    """(activation, each neuron's direct value, b_out's value) of one MLP at the last
    position: post[i] * value(W_out[i]), `value` the frozen final norm and the direction."""
    w_out = mlp.W_out.float()  # [d_mlp, d_model]
    per_neuron = post * value(w_out)  # [d_mlp]: value is linear, so value(post[i] W_out[i])
    b_out = getattr(mlp, "b_out", None)
    bias = value(b_out.float()) if b_out is not None else torch.zeros(())
    return post, per_neuron, bias


def neuron_table(neurons: list[tuple[Tensor, Tensor, Tensor]], top_k: int) -> pd.DataFrame:
    """Per layer the `top_k` neurons that raise the difference most and the `top_k` that
    lower it most, then `rest` and `bias`, which with them add up to the layer's MLP."""
    rows = []
    for layer, (post, values, bias) in enumerate(neurons):
        k = min(top_k, values.shape[0])
        up, down = values.topk(k), values.topk(k, largest=False)
        listed = [int(i) for i, v in zip(up.indices, up.values) if v > 0]
        listed += [int(i) for i, v in zip(down.indices, down.values) if v < 0]
        listed.sort(key=lambda i: -abs(float(values[i])))
        rows += [(layer, "neuron", i, rank, float(post[i]), float(values[i]))
                 for rank, i in enumerate(listed, start=1)]
        unlisted = torch.ones_like(values, dtype=torch.bool)
        unlisted[listed] = False
        rest = values[unlisted].sum()
        rows += [(layer, "rest", -1, -1, float("nan"), float(rest)),
                 (layer, "bias", -1, -1, float("nan"), float(bias))]
    return pd.DataFrame(rows, columns=NEURON_COLUMNS)


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec, tokens, answer, wrong = _read_inputs(bridge, spec)
    progress(0.1, "running the model")
    found = attribute(bridge, tokens, answer, wrong, progress)
    progress(1.0, "done")
    return _result(bridge, spec, tokens, found)


MAX_SET_TOKENS = 4096  # batch rows x positions one forward of a set's rows may take


@torch.no_grad()
def run_examples(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list[Result | UserError]:
    """A prompt set's rows (`kinds/sets.py`): each row's `run` result, or the UserError it
    raises, in its place. Rows of one token length share a forward pass; each row's
    decomposition reads its own row of the cache, so it equals its `run` to float rounding."""
    bridge = model.bridge
    outcomes, read = row_batches.read_rows(specs, lambda spec: _read_inputs(bridge, spec))
    batches = row_batches.batches({i: (int(tokens.shape[1]),) for i, (_, tokens, _, _) in read.items()},
                                  MAX_SET_TOKENS)
    for n, batch in enumerate(batches):
        progress(n / len(batches), f"decomposing the last position: batch {n + 1} of {len(batches)}")
        logits, cache = forward(bridge, torch.cat([read[i][1] for i in batch]))  # [batch, pos]
        for row, i in enumerate(batch):
            spec, tokens, answer, wrong = read[i]
            try:
                outcomes[i] = _result(bridge, spec, tokens, attribute_cached(bridge, logits, cache, row, answer, wrong))
            except UserError as err:
                outcomes[i] = err
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


def _result(bridge, spec: AnalysisSpec, tokens: Tensor, found: DirectAttribution) -> Result:
    table = pd.DataFrame(found.rows, columns=COLUMNS)
    total = table[table.component.isin(TOTAL_COMPONENTS)].value.sum()
    return Result(spec=spec, tables={"contributions": table, "neurons": neuron_table(found.neurons, spec.top_k)},
                  meta={
        "logit_diff": found.logit_diff, "sum_of_components": float(total),
        "residual_error": found.residual_error, "total_components": list(TOTAL_COMPONENTS),
        "position": int(tokens.shape[1] - 1), "n_tokens": int(tokens.shape[1]),
        "d_mlp": int(bridge.cfg.d_mlp),
    })
