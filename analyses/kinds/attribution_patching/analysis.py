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
from analyses.core.errors import SpecError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.dictionaries import lookup
from analyses.kinds.attribution_patching.agreement import SIGNAL_TOLERANCE, agreement
from analyses.kinds.attribution_patching.atp import attribute
from analyses.kinds.attribution_patching.exact import SITES, exact_effects
from analyses.kinds.attribution_patching.latents import attribute_latents, exact_latent_effects
from analyses.kinds.gradient_runs import gradient_run
from analyses.kinds.patching.engine import Patcher, check_layer, normaliser, prompt_pair
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
    # The gradient on the clean run is the gradient on the corrupted run of the swapped pair:
    # every estimate and exact effect below is then that of corrupting the clean run,
    # (corrupted - clean) . grad, and `sign` turns it back to the denoising sign.
    run_pair = replace(pair, clean=pair.corrupted, corrupted=pair.clean) if gradient == "clean" else pair
    sign = -1.0 if gradient == "clean" else 1.0
    with_relp = spec.method == "relp"
    if spec.dictionary:
        return run_latents(model, spec, pair, run_pair, sign, progress, started)
    if with_relp and (spec.qk_fix or spec.graddrop):
        raise SpecError("method", "relp replaces the gradient itself; the AtP* fixes (qk_fix, graddrop) "
                                  "apply to plain AtP only")
    progress(0.0, "attribution: one forward and one backward pass" + (" (and one more for RelP)" if with_relp else ""))
    estimates = attribute(bridge, run_pair, layers, qk_fix=bool(spec.qk_fix), graddrop=bool(spec.graddrop),
                          relp=with_relp)
    nodes = estimates.nodes
    if not spec.graddrop:  # GradDrop's sizes have no sign
        nodes["atp"] *= sign
    nodes["relp"] *= sign
    want_exact = spec.exact if spec.exact is not None else len(nodes) <= AUTO_EXACT_NODES
    baselines = (estimates.clean_baseline, estimates.corrupted_baseline)
    patcher = None
    if want_exact:  # its baselines, from the engine that patches, are the ones reported
        patcher = Patcher(bridge, run_pair, sites=SITES)
        baselines = (patcher.clean_baseline, patcher.corrupted_baseline)
    if gradient == "clean":  # the swapped pair's: give each prompt its own back
        baselines = baselines[::-1]
    normaliser(*baselines)  # refuses a pair with no gap
    progress(0.1, "attribution done")
    nodes["exact"] = sign * exact_effects(patcher, nodes, progress, (0.1, 1.0)) if want_exact else np.nan
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
        "gradient": gradient_run(gradient, "node", "value"),
        "clean_baseline": baselines[0],
        "corrupted_baseline": baselines[1],
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
        "n_forwards_exact": patcher.n_forwards if patcher else 0,
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
