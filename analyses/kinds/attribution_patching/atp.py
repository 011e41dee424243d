"""AtP (Nanda 2023; Kramár et al. 2024): every node's activation patching effect at once,
from one forward and one backward pass:

    atp(n) = (n(clean) - n(corrupted)) . d metric / d n   (gradient on the corrupted run)

the first-order Taylor expansion of patching node n from corrupted to clean (denoising, as in
`activation_patching`). The analysis (`analysis.py`) gets the other convention, the gradient
on the clean run, by running this on the swapped pair. With AtP*'s fixes (`qk_fix.py`,
`graddrop.py`) and RelP's relevance in place of the gradient (`analyses.kinds.relp`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from analyses.core.errors import SpecError, UserError
from analyses.kinds.attribution_patching.graddrop import drop_gradient, dropped_rows, size_estimate
from analyses.kinds.attribution_patching.nodes import NODE_KINDS, PATTERN, SCORES, hook_of, node_frame
from analyses.kinds.attribution_patching.qk_fix import qk_fixed_scores
from analyses.kinds.patching.engine import PairBatch, logit_diff
from analyses.kinds.patching.taps import GradientTaps
from analyses.kinds.relp import relp_hooks

CLEAN_IN_BATCH_WORK = 65_536  # tokens x d_model up to which the clean run joins the gradient pass


@dataclass
class Attribution:
    """Per hook: the clean-minus-corrupted activation and the metric's gradients."""

    delta: dict[str, Tensor]  # hook -> [...] (no batch axis)
    grads: dict[str, Tensor]  # hook -> [rows, ...]; row 0 plain, row 1 + l drops block l
    corrupted: dict[str, Tensor]  # hook -> [...] corrupted activation
    n_rows: int
    clean_metric: float  # the metric on the clean and corrupted runs: the two baselines
    corrupted_metric: float


def gradients(bridge, pair, hooks: list[str], graddrop: bool, metric, extra_hooks=()) -> Attribution:
    """Corrupted activations and the metric's gradients at `hooks` (one forward, one
    backward), and the clean activations. On short prompts the clean run is an extra batch
    row of that forward (its metric is left out of the gradient, so nothing flows back into
    it): one forward's fixed cost saved. On long ones it is a forward of its own without
    gradients, because autograd would keep the clean row's activations too (measured, GPT-2
    small at 1024 tokens: 3.4 GB against 1.8 GB). With `graddrop`, rows 1..L of the
    corrupted rows each drop the gradient through one block's attention and MLP outputs.

    Gradients are read by taps (`patching.taps`), in each hook's own shape. `extra_hooks`
    join the forward pass (RelP's rules, `analyses.kinds.relp`)."""
    n_layers = int(bridge.cfg.n_layers)
    rows = 1 + (n_layers if graddrop else 0)  # corrupted rows; a batched clean row comes last
    clean_in_batch = pair.clean.shape[1] * int(bridge.cfg.d_model) <= CLEAN_IN_BATCH_WORK
    wanted = set(hooks)
    taps = GradientTaps()
    corrupted: dict[str, Tensor] = {}
    clean: dict[str, Tensor] = {}
    drops = dropped_rows(n_layers) if graddrop else {}

    def hook_fn(activation: Tensor, hook, name: str) -> Tensor:
        if name in wanted:
            corrupted[name] = activation[0].detach().clone()
            if clean_in_batch:
                clean[name] = activation[-1].detach().clone()
            activation = taps.tap(activation, name)
        if name in drops:
            activation = drop_gradient(activation, drops[name])
        return activation

    clean_metric = None
    if not clean_in_batch:
        with torch.no_grad():
            clean_logits, clean_cache = bridge.run_with_cache(pair.clean, names_filter=hooks)
        clean.update({name: clean_cache[name][0] for name in hooks if name in clean_cache})
        clean_metric = float(metric(clean_logits)[0])
    names = list(dict.fromkeys([*hooks, *drops]))
    fwd_hooks = [(name, partial(hook_fn, name=name)) for name in names] + list(extra_hooks)
    tokens = pair.corrupted.expand(rows, -1)
    if clean_in_batch:
        tokens = torch.cat([tokens, pair.clean])
    with torch.enable_grad():
        logits = bridge.run_with_hooks(tokens, fwd_hooks=fwd_hooks)
        metrics = metric(logits)  # [rows (+ 1)]
        total = metrics[:rows].sum()  # rows are independent: each row's own gradient
        found = taps.fired(hooks)
        grads = taps.gradients(total, found)
    missing = sorted(set(hooks) - set(found))
    if missing:
        raise UserError(f"attribution patching needs the hooks {missing[:3]} and they did not "
                        "fire on this model")
    return Attribution(
        delta={name: clean[name] - corrupted[name] for name in found},
        grads={name: g[:rows].detach() for name, g in zip(found, grads)},
        corrupted=corrupted,
        n_rows=rows,
        clean_metric=float(metrics[-1]) if clean_in_batch else clean_metric,
        corrupted_metric=float(metrics[0]),
    )


def node_scores(attribution: Attribution, kind: str, layer: int, n_layers: int) -> Tensor:
    """[rows, pos(, head)]: (clean - corrupted) . gradient per node, for every gradient row."""
    name = hook_of(kind, layer, n_layers)
    contribution = attribution.delta[name].unsqueeze(0) * attribution.grads[name]
    return contribution.sum(-1)  # contract d_model / d_head


@dataclass(frozen=True)
class NodeEstimates:
    """Every node's AtP (or AtP*) estimate, and the metric's baselines from the same pass."""

    nodes: pd.DataFrame  # node, layer, position, head, atp: one row per node
    clean_baseline: float
    corrupted_baseline: float


def attribute(bridge, pair, layers: list[int], qk_fix: bool = False, graddrop: bool = False,
              metric=None, relp: bool = False) -> NodeEstimates:
    """Every node's AtP (or AtP*) estimate, from one forward and one backward pass; with
    `relp`, also its RelP estimate (`relp` column; NaN for q and k nodes, which RelP's fixed
    attention patterns give no relevance), from one more."""
    metric = metric or partial(logit_diff, answer=pair.answer, wrong=pair.wrong)
    n_layers = int(bridge.cfg.n_layers)
    if graddrop and n_layers < 2:
        raise SpecError("graddrop", "needs a model with at least 2 layers (it averages over "
                                    "L - 1 layer-dropped gradients)")
    plan = node_plan(layers, n_layers)
    hooks = [hook_of(kind, layer, n_layers) for kind, layer in plan]
    if qk_fix:
        hooks += [PATTERN.format(layer=layer) for layer in layers]
    attribution = gradients(bridge, pair, hooks, graddrop, metric)
    fixed = {}
    if qk_fix:
        with torch.no_grad():
            _, cache = bridge.run_with_cache(pair.corrupted,
                                             names_filter=[SCORES.format(layer=layer) for layer in layers])
        attribution.corrupted.update({SCORES.format(layer=layer): cache[SCORES.format(layer=layer)][0]
                                      for layer in layers})
        fixed = qk_fixed_scores(bridge, pair, attribution, layers)
    nodes = node_table(attribution, plan, n_layers, fixed, graddrop)
    nodes["relp"] = relp_scores(bridge, pair, hooks, plan, metric, n_layers) if relp else np.nan
    return NodeEstimates(nodes, attribution.clean_metric, attribution.corrupted_metric)


def node_plan(layers: list[int], n_layers: int) -> list[tuple[str, int]]:
    """The (node kind, layer) groups scored, in the table's order: every kind in `layers`,
    and the final residual stream when the last layer is among them."""
    plan = [(kind, layer) for kind in NODE_KINDS for layer in layers]
    if layers[-1] == n_layers - 1:
        plan.insert(len(layers), ("resid", n_layers))  # the final residual stream
    return plan


def node_table(attribution: Attribution, plan: list[tuple[str, int]], n_layers: int,
               fixed: dict | None = None, graddrop: bool = False) -> pd.DataFrame:
    """One row per node of `plan` with its estimate (`atp`): plain, AtP*'s QK-fixed where
    `fixed` has it, or GradDrop's size."""
    frames = []
    for kind, layer in plan:
        if fixed and (kind, layer) in fixed:
            per_row = fixed[(kind, layer)]
        else:
            per_row = node_scores(attribution, kind, layer, n_layers)
        score = size_estimate(per_row, n_layers) if graddrop else per_row[0]
        frames.append(node_frame(kind, layer, score.float().cpu().numpy()))
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class BatchEstimates:
    """Plain AtP for the examples of a `PairBatch` (one token length, so the same nodes)."""

    nodes: pd.DataFrame  # node, layer, position, head: one row per node, as `node_table` orders them
    atp: np.ndarray  # [example, node] float64
    clean_baselines: np.ndarray  # [example]
    corrupted_baselines: np.ndarray  # [example]

    def example(self, e: int) -> NodeEstimates:
        """Example e's estimates, as `attribute` gives them (`relp` NaN)."""
        return NodeEstimates(self.nodes.assign(atp=self.atp[e], relp=np.nan), float(self.clean_baselines[e]),
                             float(self.corrupted_baselines[e]))


def batch_estimates(bridge, pairs: PairBatch, layers: list[int]) -> BatchEstimates:
    """Plain AtP for every pair of `pairs` (one token length) from one clean forward and one
    corrupted forward and backward over all of them: each example's gradient is that of its
    own metric (rows are independent, so d sum / d row e = d metric_e / d row e), and each
    example's estimates equal `attribute` on its pair alone, to float rounding."""
    n_layers = int(bridge.cfg.n_layers)
    plan = node_plan(layers, n_layers)
    hooks = [hook_of(kind, layer, n_layers) for kind, layer in plan]
    with torch.no_grad():
        clean_logits, clean_cache = bridge.run_with_cache(pairs.clean, names_filter=hooks)
    clean_metrics = logit_diff(clean_logits, pairs.answer, pairs.wrong)  # [example]
    taps = GradientTaps()
    corrupted: dict[str, Tensor] = {}

    def hook_fn(activation: Tensor, hook, name: str) -> Tensor:
        corrupted[name] = activation.detach().clone()  # [example, ...]
        return taps.tap(activation, name)

    with torch.enable_grad():
        logits = bridge.run_with_hooks(pairs.corrupted,
                                       fwd_hooks=[(name, partial(hook_fn, name=name)) for name in hooks])
        metrics = logit_diff(logits, pairs.answer, pairs.wrong)  # [example]
        found = taps.fired(hooks)
        grads = dict(zip(found, taps.gradients(metrics.sum(), found)))  # hook -> [example, ...]
    missing = sorted(set(hooks) - set(found))
    if missing:
        raise UserError(f"attribution patching needs the hooks {missing[:3]} and they did not "
                        "fire on this model")
    # (clean - corrupted) . gradient, as `node_scores` for one: [example, pos(, head)] per (kind, layer)
    scores = [((clean_cache[name] - corrupted[name]) * grads[name].detach()).sum(-1).float() for name in hooks]
    template = pd.concat([node_frame(kind, layer, np.zeros(score.shape[1:])) for (kind, layer), score
                          in zip(plan, scores)], ignore_index=True).drop(columns="atp")
    atp = torch.cat([score.flatten(1) for score in scores], dim=1).cpu().numpy().astype(np.float64)
    return BatchEstimates(template, atp, clean_metrics.cpu().numpy().astype(np.float64),
                          metrics.detach().cpu().numpy().astype(np.float64))


def relp_scores(bridge, pair, hooks: list[str], plan, metric, n_layers: int) -> np.ndarray:
    """(clean − corrupted) · relevance for every node of `plan`, in its frame order."""
    relevance = gradients(bridge, pair, hooks, False, metric, extra_hooks=relp_hooks(bridge))
    parts = []
    for kind, layer in plan:
        score = node_scores(relevance, kind, layer, n_layers)[0].float().cpu().numpy().ravel()
        parts.append(np.full(score.shape, np.nan) if kind in ("q", "k") else score)
    return np.concatenate(parts)
