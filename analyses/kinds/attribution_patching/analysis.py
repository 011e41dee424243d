"""The attribution patching analysis: AtP (or AtP*, or RelP beside it) for every node of a
prompt pair, exact patching of the same nodes when asked or when there are few, and their
agreement. The gradient is taken on the corrupted run (`gradient` unset or "corrupted":
TransformerLens's `attribution_patch`, estimating the effect of restoring a node's clean
value into the corrupted run) or on the clean run ("clean": Syed et al. 2023's convention,
estimating the effect of corrupting it in the clean run; `exact` then measures that:
clean metric − the clean run with that node corrupted). Both in the denoising sign.

With `dictionary=`, the nodes are that dictionary's latents and error node at each position
(`latents.py`; table `latents`, no `attributions`), exact patching runs on every node when
there are at most `AUTO_EXACT_NODES` (else on the `AUTO_EXACT_NODES` largest |atp|) unless
`exact=0`, and `agreement` compares them per node kind (latent, error, all)."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.dictionaries import lookup
from analyses.kinds import row_batches
from analyses.kinds.attribution_patching.agreement import SIGNAL_TOLERANCE, agreement, agreements
from analyses.kinds.attribution_patching.atp import attribute, batch_estimates
from analyses.kinds.attribution_patching.exact import SITES, exact_effects, exact_effects_examples
from analyses.kinds.attribution_patching.latents import attribute_latents, exact_latent_effects
from analyses.kinds.gradient_runs import gradient_run
from analyses.kinds.patching.engine import PairBatch, Patcher, PromptPair, check_layer, normaliser, prompt_pair
from analyses.kinds.tokens import token_strings

ATTRIBUTION_COLUMNS = CATALOGUE["attribution_patching"].tables["attributions"]
LATENT_COLUMNS = CATALOGUE["attribution_patching"].tables["latents"]
AUTO_EXACT_NODES = 2_000  # exact patching runs by default up to this many nodes


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    started = time.perf_counter()
    bridge = model.bridge
    spec = spec.with_defaults()
    pair = prompt_pair(bridge, spec)
    layers = check_layer(bridge, spec.layer)
    gradient = spec.gradient or "corrupted"
    run_pair = _gradient_pair(pair, gradient)
    with_relp = spec.method == "relp"
    if spec.dictionary:
        return run_latents(model, spec, pair, run_pair, -1.0 if gradient == "clean" else 1.0, progress, started)
    if with_relp and (spec.qk_fix or spec.graddrop):
        raise SpecError("method", "relp replaces the gradient itself; the AtP* fixes (qk_fix, graddrop) "
                                  "apply to plain AtP only")
    progress(0.0, "attribution: one forward and one backward pass" + (" (and one more for RelP)" if with_relp else ""))
    estimates = attribute(bridge, run_pair, layers, qk_fix=bool(spec.qk_fix), graddrop=bool(spec.graddrop),
                          relp=with_relp)
    want_exact = _wants_exact(spec, estimates.nodes)
    baselines = (estimates.clean_baseline, estimates.corrupted_baseline)
    patcher = None
    if want_exact:  # its baselines, from the engine that patches, are the ones reported
        patcher = Patcher(bridge, run_pair, sites=SITES)
        baselines = (patcher.clean_baseline, patcher.corrupted_baseline)
    _check_gap(baselines, gradient)
    progress(0.1, "attribution done")
    exact = exact_effects(patcher, estimates.nodes, progress, (0.1, 1.0)) if want_exact else None
    progress(1.0, "done")
    return _result(bridge, spec, pair, estimates.nodes, baselines, exact,
                   patcher.n_forwards if patcher else 0, started)


MAX_SET_TOKENS = 1024  # pairs x positions one gradient pass of a set's rows may take


def run_examples(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list[Result | UserError]:
    """A prompt set's rows (`kinds/sets.py`): each row's `run` result, or the UserError it
    raises, in its place. Pairs of one token length share their passes: plain AtP's clean
    forward and corrupted forward and backward (each example's gradient is its own metric's:
    rows are independent), and exact patching's engine (`Patcher` over a `PairBatch`). Each
    example's numbers equal its `run` to float rounding. Rows asking for AtP*'s fixes, RelP
    or a dictionary's latents run one by one."""
    started = time.perf_counter()
    bridge = model.bridge
    outcomes, read = row_batches.read_rows(specs, lambda spec: _read_pair(bridge, spec))
    alone = [i for i, (_, pair) in read.items() if pair is None]
    keys = {i: (int(pair.clean.shape[1]), spec.layer, spec.gradient or "corrupted", spec.exact)
            for i, (spec, pair) in read.items() if pair is not None}
    chunks = [[(i, *read[i]) for i in batch] for batch in row_batches.batches(keys, MAX_SET_TOKENS)]
    total = max(1, len(alone) + sum(len(c) for c in chunks))
    done = 0
    for chunk in chunks:
        span = (done / total, (done + len(chunk)) / total)
        for i, result in zip([i for i, _, _ in chunk], _run_together(bridge, chunk, progress, span, started)):
            outcomes[i] = result
        done += len(chunk)
    for i in alone:
        try:
            outcomes[i] = run(model, specs[i])
        except UserError as err:
            outcomes[i] = err
        done += 1
        progress(done / total, f"example {done} of {total}")
    progress(1.0, "done")
    return outcomes


def _runs_alone(spec: AnalysisSpec) -> bool:
    """AtP*'s fixes, RelP and a dictionary's latents take passes of their own: one row at a time."""
    return spec.method == "relp" or bool(spec.qk_fix) or bool(spec.graddrop) or spec.dictionary is not None


def _read_pair(bridge, spec: AnalysisSpec) -> tuple[AnalysisSpec, PromptPair | None]:
    """The spec with its defaults and its checked prompt pair (a UserError names what is
    wrong); no pair for a row that runs alone (`run` reads and checks it then)."""
    spec = spec.with_defaults()
    if _runs_alone(spec):
        return spec, None
    pair = prompt_pair(bridge, spec)
    check_layer(bridge, spec.layer)
    return spec, pair


def _run_together(bridge, chunk: list[tuple[int, AnalysisSpec, PromptPair]], progress: Progress,
                  span: tuple[float, float], started: float) -> list[Result | UserError]:
    """Plain AtP (and exact patching) for pairs of one token length, layer choice and gradient."""
    _, first, _ = chunk[0]
    gradient = first.gradient or "corrupted"
    layers = check_layer(bridge, first.layer)
    pairs = [pair for _, _, pair in chunk]
    batch = PairBatch.of([_gradient_pair(pair, gradient) for pair in pairs])
    lo, hi = span
    progress(lo, f"attribution of {len(chunk)} examples: one gradient pass")
    estimates = batch_estimates(bridge, batch, layers)
    want_exact = _wants_exact(first, estimates.nodes)
    baselines = list(zip(estimates.clean_baselines.tolist(), estimates.corrupted_baselines.tolist()))
    patcher, exact, tables = None, [None] * len(chunk), [None] * len(chunk)
    if want_exact:
        patcher = Patcher(bridge, batch, sites=SITES)
        baselines = list(zip(patcher.clean_baselines.tolist(), patcher.corrupted_baselines.tolist()))
        exact = exact_effects_examples(patcher, estimates.nodes, progress, (lo + 0.1 * (hi - lo), hi))
        sign = _sign(gradient)  # every example's agreement at once, in the reported sign
        tables = agreements(estimates.nodes.node.to_numpy(), sign * estimates.atp, sign * exact, magnitude=False)
    out: list[Result | UserError] = []
    for e, (_, spec, pair) in enumerate(chunk):
        try:
            _check_gap(baselines[e], gradient)
        except UserError as err:
            out.append(err)
            continue
        out.append(_result(bridge, spec, pair, estimates.example(e).nodes, baselines[e], exact[e],
                           patcher.n_forwards if patcher else 0, started, agreement_table=tables[e]))
    return out


def _gradient_pair(pair: PromptPair, gradient: str) -> PromptPair:
    """The pair the gradient pass runs: the gradient on the clean run is the gradient on the
    corrupted run of the swapped pair. Every estimate and exact effect is then that of
    corrupting the clean run, (corrupted - clean) . grad, and `_result`'s sign turns it back
    to the denoising sign."""
    return replace(pair, clean=pair.corrupted, corrupted=pair.clean) if gradient == "clean" else pair


def _sign(gradient: str) -> float:
    """From the gradient run's sign (that of corrupting the clean run, `_gradient_pair`) to the denoising sign."""
    return -1.0 if gradient == "clean" else 1.0


def _wants_exact(spec: AnalysisSpec, nodes) -> bool:
    return bool(spec.exact) if spec.exact is not None else len(nodes) <= AUTO_EXACT_NODES


def _check_gap(run_baselines: tuple[float, float], gradient: str) -> None:
    """Refuses a pair with no logit gap, naming each prompt's own baseline."""
    normaliser(*(run_baselines[::-1] if gradient == "clean" else run_baselines))


def _result(bridge, spec: AnalysisSpec, pair: PromptPair, nodes, run_baselines: tuple[float, float],
            exact, n_forwards_exact: int, started: float, agreement_table=None) -> Result:
    """One pair's tables and meta from its estimates (`nodes`, in the gradient run's sign),
    the gradient run's baselines and its exact effects (None: not run); `agreement_table`:
    its `agreement`, where a batch measured it already (`agreements`)."""
    gradient = spec.gradient or "corrupted"
    sign = _sign(gradient)
    with_relp = spec.method == "relp"
    want_exact = exact is not None
    if not spec.graddrop:  # GradDrop's sizes have no sign
        nodes["atp"] *= sign
    nodes["relp"] *= sign
    baselines = run_baselines[::-1] if gradient == "clean" else run_baselines  # each prompt its own back
    nodes["exact"] = sign * exact if want_exact else np.nan
    tables = {"attributions": nodes[list(ATTRIBUTION_COLUMNS)]}
    if want_exact:
        tables["agreement"] = (agreement_table if agreement_table is not None
                               else agreement(nodes, magnitude=bool(spec.graddrop)))
        if with_relp:  # the same measures for RelP, over the nodes it scores
            scored = nodes[nodes["relp"].notna()]
            tables["relp_agreement"] = agreement(scored.assign(atp=scored["relp"]), magnitude=False)
    method = "AtP*" if spec.qk_fix or spec.graddrop else ("AtP and RelP" if with_relp else "AtP")
    fixes = [name for name, on in (("qk_fix", spec.qk_fix), ("graddrop", spec.graddrop)) if on]
    meta = {
        "method": method + (f" ({', '.join(fixes)})" if fixes else ""),
        "gradient": gradient_run(gradient, "node", "value"),
        "clean_baseline": float(baselines[0]),
        "corrupted_baseline": float(baselines[1]),
        "metric": "logit difference answer - wrong at the last position",
        "units": ("change of the raw logit difference from the corrupted run (atp and exact)"
                  if gradient == "corrupted" else
                  "the clean run's logit difference minus that with the node corrupted (atp and exact)"),
        "atp_is_magnitude": bool(spec.graddrop),
        "signal_tolerance": SIGNAL_TOLERANCE,
        "n_nodes": len(nodes),
        "exact": bool(want_exact),
        "exact_rule": f"exact=1, or exact unset and at most {AUTO_EXACT_NODES} nodes",
        "n_tokens": int(pair.corrupted.shape[1]),
        "clean_tokens": token_strings(bridge, pair.clean[0]),
        "corrupted_tokens": token_strings(bridge, pair.corrupted[0]),
        "n_forwards_exact": n_forwards_exact,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return Result(spec=spec, tables=tables, meta=meta)


def check_latent_fields(spec: AnalysisSpec) -> None:
    """What a latent run does not take: node-kind options of the model's own basis."""
    for name, given in (("layer", spec.layer is not None), ("qk_fix", bool(spec.qk_fix)),
                        ("graddrop", bool(spec.graddrop)), ("method", spec.method == "relp")):
        if given:
            raise SpecError(name, "does not apply with dictionary= (its nodes are the dictionary's "
                                  "latents and error at its own site); leave it out")


def run_latents(model, spec: AnalysisSpec, pair, run_pair, sign: float, progress: Progress,
                started: float) -> Result:
    """AtP over a dictionary's latents and error node, exact patching beside it (module docstring)."""
    check_latent_fields(spec)
    bridge = model.bridge
    dictionary = lookup.load(model, spec.dictionary)
    progress(0.0, f"attribution over the latents of {dictionary.site.name}: one forward and one backward pass")
    estimates = attribute_latents(bridge, dictionary, run_pair)
    nodes = estimates.nodes
    nodes["atp"] *= sign
    if sign < 0:  # the swapped pair's activations: give each prompt its own back
        nodes[["clean_act", "corrupted_act"]] = nodes[["corrupted_act", "clean_act"]].to_numpy()
    tokens = token_strings(bridge, pair.clean[0])
    nodes["token"] = [tokens[p] for p in nodes["position"]]
    baselines = (estimates.clean_baseline, estimates.corrupted_baseline)
    want_exact = spec.exact if spec.exact is not None else True
    nodes["exact"] = np.nan
    if want_exact:
        chosen = np.argsort(-nodes["atp"].abs().to_numpy(), kind="stable")[:AUTO_EXACT_NODES]
        positions = torch.as_tensor(nodes["position"].to_numpy()[chosen])
        effects, _ = exact_latent_effects(bridge, dictionary, run_pair, positions, estimates.shifts[chosen],
                                          progress=progress, span=(0.1, 1.0))
        nodes.loc[nodes.index[chosen], "exact"] = sign * effects
    if spec.gradient == "clean":
        baselines = baselines[::-1]
    normaliser(*baselines)  # refuses a pair with no gap
    tables = {"latents": nodes[list(LATENT_COLUMNS)]}
    if want_exact:
        tables["agreement"] = agreement(nodes[nodes["exact"].notna()].reset_index(drop=True), magnitude=False)
    progress(1.0, "done")
    meta = {
        "method": "AtP over dictionary latents",
        "dictionary": dictionary.label,
        "dictionary_site": dictionary.site.name,
        "gradient": gradient_run(spec.gradient or "corrupted", "latent", "activation"),
        "clean_baseline": baselines[0],
        "corrupted_baseline": baselines[1],
        "metric": "logit difference answer - wrong at the last position",
        "units": "change of the raw logit difference (atp and exact); clean_act and corrupted_act: "
                 "the latent's activation in each run",
        "atp_is_magnitude": False,
        "signal_tolerance": SIGNAL_TOLERANCE,
        "n_nodes": len(nodes),
        "n_exact": int(nodes["exact"].notna().sum()),
        "exact": bool(want_exact),
        "exact_rule": (f"unless exact=0: every node, or the {AUTO_EXACT_NODES} with the largest |atp| "
                       "when there are more"),
        "n_tokens": int(pair.corrupted.shape[1]),
        "clean_tokens": tokens,
        "corrupted_tokens": token_strings(bridge, pair.corrupted[0]),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return Result(spec=spec, tables=tables, meta=meta)
