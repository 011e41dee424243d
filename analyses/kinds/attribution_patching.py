"""Attribution patching, AtP (Nanda 2023; Kramár et al. 2024): estimate every node's activation
patching effect at once, from one forward and one backward pass on the corrupted prompt:

    atp(n) = (n(clean) - n(corrupted)) . d metric / d n   (gradient on the corrupted run)

the first-order Taylor expansion of patching node n from corrupted to clean (denoising, as in
`activation_patching`). The metric is the logit difference `answer - wrong` at the last
position. Nodes (table `attributions`, `head` / `position` -1 where they do not apply):

- `resid`: the residual stream entering block `layer` at one position (`hook_resid_pre`);
  `layer == n_layers` is the final residual stream (the last block's `hook_resid_post`);
- `head`: one head's output at one position (`attn.hook_z`);
- `mlp`: one MLP's output at one position (`hook_mlp_out`);
- `q`, `k`, `v`: one head's query, key or value vector at one position (`attn.hook_q/k/v`;
  on grouped-query models `head` of a `k` / `v` node counts key/value heads).

Units: `atp` and `exact` are both changes of the raw logit difference from the corrupted run
(`exact` = patched - corrupted, from the batched patching engine, `patching/engine.py`),
not the normalised `value` of that analysis. `exact` is computed when the spec sets `exact=1`,
or when it leaves `exact` unset and there are at most `AUTO_EXACT_NODES` nodes (one patched
run per node); otherwise, or with `exact=0`, it is NaN and there is no `agreement` table.
`agreement` holds, per node kind and for all nodes, the Pearson and Spearman correlations of
`atp` with `exact` and the share of the 10 largest |exact| nodes among the 10 largest |atp|,
after values under `SIGNAL_TOLERANCE` (1e-4) are tied at zero; `n_signal` counts the nodes
whose |exact| reaches it (below, an effect is float noise and its rank means nothing).

AtP* (Kramár et al. 2024), two optional fixes for AtP's false negatives:

- `qk_fix`: a query or key acts only through its head's attention softmax, where the linear
  approximation fails when attention saturates. For `q` / `k` nodes the patched attention
  pattern is recomputed exactly (softmax of the scores with that one query, or that one key,
  taken from the clean run; read from one batched forward that patches every query, or every
  key, of a layer, since score row t depends on query t alone and column s on key s alone),
  and only the rest is linearised: atp = sum over the pattern of dmetric/dA * (A' - A).
- `graddrop`: an effect can cancel between paths. For each layer l one more backward pass
  drops the gradient through block l's writes to the residual stream (its attention and MLP
  outputs), and atp(n) = 1/(L-1) * sum_l |atp_l(n)| — an estimate of the effect's *size*, so
  with `graddrop` `atp` is >= 0 and `agreement` compares it with |exact|. All L passes are
  rows of one batch: one forward, one backward.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.patching.engine import (
    GRANULARITIES,
    Patcher,
    check_layer,
    logit_diff,
    normaliser,
    prompt_pair,
)
from analyses.kinds.relp import relp_hooks
from analyses.kinds.tokens import token_strings

ATTRIBUTION_COLUMNS = CATALOGUE["attribution_patching"].tables["attributions"]
AGREEMENT_COLUMNS = CATALOGUE["attribution_patching"].tables["agreement"]
AUTO_EXACT_NODES = 2_000  # exact patching runs by default up to this many nodes
CLEAN_IN_BATCH_WORK = 65_536  # tokens x d_model up to which the clean run joins the gradient pass
TOP = 10
# |effect| below which a node's atp or exact value is float noise, in logit-difference units:
# float32 patching reproduces a no-op to ~1e-6, and on the embedded model's IOI pair 60% of
# nodes have |exact| < 1e-5, so ranking them by their noise moved Spearman by ±0.05.
SIGNAL_TOLERANCE = 1e-4


@dataclass(frozen=True)
class NodeKind:
    site: str  # the activation_patching granularity that patches one such node exactly
    hook: str  # hook name with a {layer} field


NODE_KINDS: dict[str, NodeKind] = {
    "resid": NodeKind("resid_pre", "blocks.{layer}.hook_resid_pre"),
    "head": NodeKind("head_out_by_pos", "blocks.{layer}.attn.hook_z"),
    "mlp": NodeKind("mlp_out", "blocks.{layer}.hook_mlp_out"),
    "q": NodeKind("head_q_by_pos", "blocks.{layer}.attn.hook_q"),
    "k": NodeKind("head_k_by_pos", "blocks.{layer}.attn.hook_k"),
    "v": NodeKind("head_v_by_pos", "blocks.{layer}.attn.hook_v"),
}
PATTERN = "blocks.{layer}.attn.hook_pattern"
SCORES = "blocks.{layer}.attn.hook_attn_scores"


def _hook(kind: str, layer: int, n_layers: int) -> str:
    """The hook a node reads; the final residual stream is the last block's resid_post."""
    if kind == "resid" and layer == n_layers:
        return f"blocks.{n_layers - 1}.hook_resid_post"
    return NODE_KINDS[kind].hook.format(layer=layer)


# --------------------------------------------------------------------------- AtP

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

    The gradient of an activation is read as the gradient of a zero tensor added to it in its
    hook: exactly what the model consumes downstream, in the hook's own shape. `extra_hooks`
    join the forward pass (RelP's rules, `analyses.kinds.relp`)."""
    n_layers = int(bridge.cfg.n_layers)
    rows = 1 + (n_layers if graddrop else 0)  # corrupted rows; a batched clean row comes last
    clean_in_batch = pair.clean.shape[1] * int(bridge.cfg.d_model) <= CLEAN_IN_BATCH_WORK
    wanted = set(hooks)
    zeros: dict[str, Tensor] = {}
    corrupted: dict[str, Tensor] = {}
    clean: dict[str, Tensor] = {}
    drops = {}
    if graddrop:
        for layer in range(n_layers):
            for name in (f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out"):
                drops[name] = 1 + layer  # the row that drops this write's gradient

    def hook_fn(activation: Tensor, hook, name: str) -> Tensor:
        if name in wanted:
            corrupted[name] = activation[0].detach().clone()
            if clean_in_batch:
                clean[name] = activation[-1].detach().clone()
            zeros[name] = torch.zeros_like(activation, requires_grad=True)
            activation = activation + zeros[name]
        if name in drops:
            keep = torch.ones(activation.shape[0], dtype=torch.bool, device=activation.device)
            keep[drops[name]] = False
            keep = keep.view(-1, *([1] * (activation.ndim - 1)))
            activation = torch.where(keep, activation, activation.detach())
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
        found = [name for name in hooks if name in zeros]
        grads = torch.autograd.grad(total, [zeros[name] for name in found], allow_unused=True)
    missing = sorted(set(hooks) - set(found))
    if missing:
        raise UserError(f"attribution patching needs the hooks {missing[:3]} and they did not "
                        "fire on this model")
    return Attribution(
        delta={name: clean[name] - corrupted[name] for name in found},
        grads={name: (torch.zeros_like(zeros[name]) if g is None else g)[:rows].detach()
               for name, g in zip(found, grads)},
        corrupted=corrupted,
        n_rows=rows,
        clean_metric=float(metrics[-1]) if clean_in_batch else clean_metric,
        corrupted_metric=float(metrics[0]),
    )


def node_scores(attribution: Attribution, kind: str, layer: int, n_layers: int) -> Tensor:
    """[rows, pos(, head)]: (clean - corrupted) . gradient per node, for every gradient row."""
    name = _hook(kind, layer, n_layers)
    contribution = attribution.delta[name].unsqueeze(0) * attribution.grads[name]
    return contribution.sum(-1)  # contract d_model / d_head


# --------------------------------------------------------------------------- AtP*: QK fix

def qk_fixed_scores(bridge, pair, attribution: Attribution, layers: list[int]) -> dict:
    """For `q` and `k` nodes: [rows, pos, head] estimates with the softmax recomputed exactly.

    Needs the corrupted scores S and pattern A and the pattern's gradient G (in
    `attribution`), and the scores with every query (or every key) of a layer taken from the
    clean run: row 2i patches the queries of layers[i], row 2i + 1 its keys, one forward."""
    n_heads = int(bridge.cfg.n_heads)
    q_names = [NODE_KINDS["q"].hook.format(layer=layer) for layer in layers]
    k_names = [NODE_KINDS["k"].hook.format(layer=layer) for layer in layers]
    with torch.no_grad():
        _, clean = bridge.run_with_cache(pair.clean, names_filter=q_names + k_names)
    patched_scores: dict[int, Tensor] = {}

    def patch_all(activation: Tensor, hook, row: int, clean_act: Tensor) -> Tensor:
        activation = activation.clone()
        activation[row] = clean_act[0]
        return activation

    def capture(scores: Tensor, hook, layer: int) -> None:
        patched_scores[layer] = scores.detach().clone()

    fwd_hooks = []
    for i, layer in enumerate(layers):
        for row, name in ((2 * i, q_names[i]), (2 * i + 1, k_names[i])):
            fwd_hooks.append((name, partial(patch_all, row=row, clean_act=clean[name])))
        fwd_hooks.append((SCORES.format(layer=layer), partial(capture, layer=layer)))
    with torch.no_grad():
        bridge.run_with_hooks(pair.corrupted.expand(2 * len(layers), -1), fwd_hooks=fwd_hooks)

    out = {}
    for i, layer in enumerate(layers):
        scores = attribution.corrupted[SCORES.format(layer=layer)].float()  # [head, q, k]
        pattern = attribution.corrupted[PATTERN.format(layer=layer)].float()
        grad = attribution.grads[PATTERN.format(layer=layer)].float()  # [rows, head, q, k]
        if (scores.softmax(-1) - pattern).abs().max() > 1e-4:
            raise UserError("qk_fix: on this model the attention pattern is not the softmax of "
                            "hook_attn_scores, so the exact recomputation does not apply; run "
                            "without qk_fix")
        with_q = patched_scores[layer][2 * i].float()  # row t: clean query t, corrupted keys
        with_k = patched_scores[layer][2 * i + 1].float()  # column s: clean key s
        d_pattern_q = with_q.softmax(-1) - pattern  # [head, q, k]: query t patched -> row t
        q_est = torch.einsum("hts,rhts->rth", d_pattern_q, grad)  # [rows, pos, head]
        per_head = key_patch_effects(scores, pattern, with_k, grad)  # [rows, pos, head]
        n_kv = attribution.delta[k_names[i]].shape[1]
        group = n_heads // n_kv  # query heads h*group .. h*group + group - 1 share kv head h
        k_est = per_head.reshape(*per_head.shape[:2], n_kv, group).sum(-1)
        out[("q", layer)] = q_est
        out[("k", layer)] = k_est
    return out


def key_patch_effects(scores: Tensor, pattern: Tensor, with_k: Tensor, grad: Tensor) -> Tensor:
    """[rows, key pos, head]: sum of G * (A' - A) when key s alone is patched, per query head.

    scores, pattern, with_k: [head, q, k]; grad: [rows, head, q, k]. Column s of the scores
    takes `with_k`'s column s; every query row is renormalised exactly."""
    n_heads, n_pos, _ = scores.shape
    out = torch.empty(grad.shape[0], n_pos, n_heads, dtype=grad.dtype, device=grad.device)
    chunk = max(1, (1 << 24) // max(n_heads * n_pos * n_pos, 1))  # bounded memory
    for lo in range(0, n_pos, chunk):
        keys = torch.arange(lo, min(lo + chunk, n_pos), device=scores.device)
        patched = scores.unsqueeze(0).repeat(len(keys), 1, 1, 1)  # [s, head, q, k]
        rows = torch.arange(len(keys), device=scores.device)
        patched[rows, :, :, keys] = with_k[:, :, keys].permute(2, 0, 1)
        d_pattern = patched.softmax(-1) - pattern  # [s, head, q, k]
        out[:, lo:lo + len(keys)] = torch.einsum("shqk,rhqk->rsh", d_pattern, grad)
    return out


# --------------------------------------------------------------------------- the analysis

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
    plan = [(kind, layer) for kind in NODE_KINDS for layer in layers]
    if layers[-1] == n_layers - 1:
        plan.insert(len(layers), ("resid", n_layers))  # the final residual stream
    hooks = [_hook(kind, layer, n_layers) for kind, layer in plan]
    if qk_fix:
        hooks += [PATTERN.format(layer=layer) for layer in layers]
    attribution = gradients(bridge, pair, hooks, graddrop, metric)
    if qk_fix:
        with torch.no_grad():
            _, cache = bridge.run_with_cache(pair.corrupted,
                                             names_filter=[SCORES.format(layer=layer) for layer in layers])
        attribution.corrupted.update({SCORES.format(layer=layer): cache[SCORES.format(layer=layer)][0]
                                      for layer in layers})
        fixed = qk_fixed_scores(bridge, pair, attribution, layers)
    frames = []
    for kind, layer in plan:
        if qk_fix and (kind, layer) in fixed:
            per_row = fixed[(kind, layer)]
        else:
            per_row = node_scores(attribution, kind, layer, n_layers)
        if graddrop:
            score = per_row[1:].abs().sum(0) / (n_layers - 1)
        else:
            score = per_row[0]
        frames.append(_node_frame(kind, layer, score.float().cpu().numpy()))
    nodes = pd.concat(frames, ignore_index=True)
    nodes["relp"] = relp_scores(bridge, pair, hooks, plan, metric, n_layers) if relp else np.nan
    return NodeEstimates(nodes, attribution.clean_metric, attribution.corrupted_metric)


def relp_scores(bridge, pair, hooks: list[str], plan, metric, n_layers: int) -> np.ndarray:
    """(clean − corrupted) · relevance for every node of `plan`, in its frame order."""
    relevance = gradients(bridge, pair, hooks, False, metric, extra_hooks=relp_hooks(bridge))
    parts = []
    for kind, layer in plan:
        score = node_scores(relevance, kind, layer, n_layers)[0].float().cpu().numpy().ravel()
        parts.append(np.full(score.shape, np.nan) if kind in ("q", "k") else score)
    return np.concatenate(parts)


def _node_frame(kind: str, layer: int, score: np.ndarray) -> pd.DataFrame:
    """score: [pos] or [pos, head] -> one row per node, position-major."""
    n_pos = score.shape[0]
    if score.ndim == 1:
        position, head = np.arange(n_pos), np.full(n_pos, -1)
    else:
        grid = np.meshgrid(np.arange(n_pos), np.arange(score.shape[1]), indexing="ij")
        position, head = (a.ravel() for a in grid)
    return pd.DataFrame({"node": kind, "layer": layer, "position": position, "head": head,
                         "atp": score.ravel().astype(np.float64)})


def exact_effects(patcher: Patcher, nodes: pd.DataFrame, progress: Progress = silent,
                  span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Each node's exact patching effect (patched - corrupted logit difference), [n]."""
    out = np.full(len(nodes), np.nan)
    n_layers = patcher.n_layers
    groups = []
    for kind in NODE_KINDS:
        mine = nodes.node.to_numpy() == kind
        if kind == "resid":
            final = mine & (nodes.layer.to_numpy() == n_layers)
            groups.append((GRANULARITIES["resid_pre"], mine & ~final, 0))
            groups.append((GRANULARITIES["resid_post"], final, -1))  # resid_post of the last block
        else:
            groups.append((GRANULARITIES[NODE_KINDS[kind].site], mine, 0))
    total, done = int(sum(rows.sum() for _, rows, _ in groups)), 0
    lo, hi = span
    for site, rows, shift in groups:
        if not rows.any():
            continue
        cells = nodes.loc[rows, ["layer", "position", "head"]].to_numpy(dtype=np.int64, copy=True)
        cells[:, 0] += shift
        part = (lo + (hi - lo) * done / total, lo + (hi - lo) * (done + len(cells)) / total)
        out[rows] = patcher.patch(site, cells, progress, part) - patcher.corrupted_baseline
        done += len(cells)
    return out


def tied_at_zero(values: pd.Series, tolerance: float = SIGNAL_TOLERANCE) -> pd.Series:
    """`values` with every |value| below `tolerance` set to exactly 0: nodes whose effect is
    float noise tie at zero, so their ranks (and a rank correlation) do not follow the noise."""
    return values.where(values.abs() >= tolerance, 0.0)


def agreement(nodes: pd.DataFrame, magnitude: bool) -> pd.DataFrame:
    """Per node kind and for all nodes: how well `atp` ranks and tracks `exact`, with values
    under `SIGNAL_TOLERANCE` tied at zero, and how many nodes carry signal (|exact| at or
    above it): a correlation over few such nodes says little."""
    target = tied_at_zero(nodes.exact.abs() if magnitude else nodes.exact)
    estimate = tied_at_zero(nodes.atp)
    rows = []
    for kind, group in [*nodes.groupby("node", sort=False), ("all", nodes)]:
        atp, exact = estimate.loc[group.index], target.loc[group.index]
        k = min(TOP, len(group))
        top_atp = set(atp.abs().nlargest(k).index)
        top_exact = set(exact.abs().nlargest(k).index)
        rows.append({"node": kind, "pearson": _corr(atp, exact, "pearson"),
                     "spearman": _corr(atp, exact, "spearman"),
                     "top10_overlap": len(top_atp & top_exact) / k if k else float("nan"),
                     "n_nodes": len(group), "n_signal": int((exact != 0).sum())})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def _corr(a: pd.Series, b: pd.Series, method: str) -> float:
    """Pearson, or Spearman (Pearson of average ranks: pandas would need scipy for it);
    NaN when either side is constant (no correlation is defined); clipped to [-1, 1]."""
    if len(a) < 2 or a.nunique() < 2 or b.nunique() < 2:
        return float("nan")
    if method == "spearman":
        a, b = a.rank(), b.rank()
    return float(np.clip(np.corrcoef(a.to_numpy(float), b.to_numpy(float))[0, 1], -1.0, 1.0))


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    started = time.perf_counter()
    bridge = model.bridge
    spec = spec.with_defaults()
    pair = prompt_pair(bridge, spec)
    layers = check_layer(bridge, spec.layer)
    with_relp = spec.method == "relp"
    if with_relp and (spec.qk_fix or spec.graddrop):
        raise SpecError("method", "relp replaces the gradient itself; the AtP* fixes (qk_fix, graddrop) "
                                  "apply to plain AtP only")
    progress(0.0, "attribution: one forward and one backward pass" + (" (and one more for RelP)" if with_relp else ""))
    estimates = attribute(bridge, pair, layers, qk_fix=bool(spec.qk_fix), graddrop=bool(spec.graddrop),
                          relp=with_relp)
    nodes = estimates.nodes
    want_exact = spec.exact if spec.exact is not None else len(nodes) <= AUTO_EXACT_NODES
    sites = tuple(GRANULARITIES[name] for name in (*(k.site for k in NODE_KINDS.values()),
                                                   "resid_post"))
    baselines = (estimates.clean_baseline, estimates.corrupted_baseline)
    patcher = None
    if want_exact:  # its baselines, from the engine that patches, are the ones reported
        patcher = Patcher(bridge, pair, sites=sites)
        baselines = (patcher.clean_baseline, patcher.corrupted_baseline)
    normaliser(*baselines)  # refuses a pair with no gap
    progress(0.1, "attribution done")
    nodes["exact"] = exact_effects(patcher, nodes, progress, (0.1, 1.0)) if want_exact else np.nan
    tables = {"attributions": nodes[list(ATTRIBUTION_COLUMNS)]}
    if want_exact:
        tables["agreement"] = agreement(nodes, magnitude=bool(spec.graddrop))
        if with_relp:  # the same measures for RelP, over the nodes it scores
            scored = nodes[nodes["relp"].notna()]
            tables["relp_agreement"] = agreement(scored.assign(atp=scored["relp"]), magnitude=False)
    progress(1.0, "done")
    method = "AtP*" if spec.qk_fix or spec.graddrop else ("AtP and RelP" if with_relp else "AtP")
    fixes = [name for name, on in (("qk_fix", spec.qk_fix), ("graddrop", spec.graddrop)) if on]
    meta = {
        "method": method + (f" ({', '.join(fixes)})" if fixes else ""),
        "clean_baseline": baselines[0],
        "corrupted_baseline": baselines[1],
        "metric": "logit difference answer - wrong at the last position",
        "units": "change of the raw logit difference from the corrupted run (atp and exact)",
        "atp_is_magnitude": bool(spec.graddrop),
        "signal_tolerance": SIGNAL_TOLERANCE,
        "n_nodes": len(nodes),
        "exact": bool(want_exact),
        "exact_rule": f"exact=1, or exact unset and at most {AUTO_EXACT_NODES} nodes",
        "n_tokens": int(pair.corrupted.shape[1]),
        "clean_tokens": token_strings(bridge, pair.clean[0]),
        "corrupted_tokens": token_strings(bridge, pair.corrupted[0]),
        "n_forwards_exact": patcher.n_forwards if patcher else 0,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return Result(spec=spec, tables=tables, meta=meta)
