"""Steering and ablation: intervene on the model and read what it then says.

A run is a grid of cells (layer × coefficient, each with or without the ablation), all on
one prompt: for each, the continuation the model generates (`generations`), the effect at
the prompt's last position and the damage elsewhere (`effects`); and each steering vector's
norm and top tokens (`vector`). See `analyses.kinds.interventions` for the parts.

Cells. Coefficient 0 is always run: the model itself, the baseline of every comparison.
With `ablate=`, every cell is ablated except that baseline, which stays the intact model
(so a knockout alone is two cells: intact and ablated). Without a vector, `layer` is empty.

Effects, per cell:
- `metric`: logit(answer) − logit(wrong) at the prompt's last position (only `answer`: its
  log-probability; neither: NaN), under the cell's interventions;
- `top1`: 1 when the answer is the model's top next token there, else 0 (NaN without one);
  `top_token`: that top token;
- `kl`: mean over the neutral text's positions of KL(intact ‖ intervened) of the next-token
  distributions, in nats, with the vector added at every position of that text after BOS
  (whatever `positions` says) and the ablation applied: what the intervention breaks besides
  what it steers.

Latents of a sparse dictionary (`dictionary=`, `latent=`; `analyses.kinds.interventions.latents`):
`method=feature` adds coeff × the latent's decoder row at the dictionary's own site (its layer
is the site's; `layer` is not taken), in the latent's activation units; `clamp=v` sets the
latent to v (0: zeroes it) at the `positions` chosen with the dictionary's error term kept, so
only that latent changes. A clamp is a knock-out like `ablate`: every cell but the intact
baseline has it (`ablated` true), with the ablation if both are given.

BOS is never intervened on: neither the vector nor the ablation touches position 0 when the
prompt begins with BOS (`analyses.kinds.bos`; `positions=all` means every position after it).

Sampling (temperature > 0) draws `SAMPLES` continuations per cell, sample i seeded with
seed + i in every cell, so cells differ by their intervention, not by their luck.
On a prompt set (`dataset=`) the vector, the ablation means and the KL are computed once,
and every row's prompt runs through the same cells.

`method=cav` (GCAV, `analyses.kinds.interventions.cav`): the vector is a logistic probe's
unit direction at the layer scaled to the mean difference's norm; each `p_target` adds a
cell per layer whose strength is GCAV's, per position (its `coeff` is NaN, its `p_target`
set), and the `cav` table gives, per such cell, the probe's probability at the prompt's last
position before and after (measured in the run), the strength and the coefficient it is in
units of the fixed-coefficient vector.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from analyses.core import listtext
from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.dictionaries import lookup
from analyses.kinds.bos import first_after_bos, past_bos
from analyses.kinds.interventions import ablation as ablating
from analyses.kinds.interventions import cav, generation, latents, vectors
from analyses.kinds.interventions.neutral import neutral_tokens
from analyses.kinds.ranges import check_layer
from analyses.kinds.tokens import prompt_tokens, single_token, token_strings, token_texts

TABLES = CATALOGUE["steering"].tables
SAMPLES = 3  # continuations per cell when sampling
MAX_CELLS = 64  # layers × coefficients one run may sweep
# after the declared columns of generations and effects: a GCAV cell's target (NaN in the others)
EXTRA_COLUMNS = ("p_target",)


@dataclass(frozen=True)
class Cell:
    layer: int | None  # None: no steering vector in this run
    coeff: float  # NaN in a GCAV cell: its strength is each position's own
    ablated: bool
    p_target: float | None = None  # method=cav: GCAV's target probability of the concept

    @property
    def steered(self) -> bool:
        return self.p_target is not None or bool(self.coeff)

    @property
    def intervention(self) -> tuple:
        """What the cell changes: cells that change the same thing share one computation."""
        return (self.layer if self.steered else None, self.coeff if self.p_target is None else None,
                self.ablated, self.p_target)


@dataclass(frozen=True)
class Plan:
    """What every prompt of a run shares."""

    cells: tuple[Cell, ...]
    vectors: dict[int, Tensor]
    ablation: ablating.Ablation | None
    positions: str
    temperature: float
    samples: int
    max_new_tokens: int
    seed: int
    kl: dict[tuple, float]  # Cell.intervention -> KL on the neutral text
    vector_table: pd.DataFrame | None
    resid_norms: dict[int, float]  # a typical residual's norm at each steered layer
    feature: lookup.Dictionary | None = None  # method=feature: vectors are its decoder row, added at its site
    clamp: latents.Clamp | None = None  # clamp=: applied in every ablated cell
    probes: dict[int, cav.ConceptProbe] | None = None  # method=cav: each layer's probe


def _given(spec: AnalysisSpec, name: str) -> bool:
    """Whether `name` is set to something other than the kind's default (a form shows the
    defaults in its widgets, so a default value says nothing of what the user wants)."""
    value = getattr(spec, name)
    return value is not None and value != CATALOGUE["steering"].defaults.get(name)


def is_feature(spec: AnalysisSpec) -> bool:
    return spec.method == "feature"


def check_fields(spec: AnalysisSpec) -> None:
    """Fields that need a steering vector are refused without one, unless left at their
    defaults; `ablation` likewise needs `ablate`; a dictionary and latent need `method=feature`
    or `clamp`, and those need both."""
    if is_feature(spec):
        check_feature_fields(spec)
    elif _given(spec, "negative") and not _given(spec, "positive"):
        raise SpecError("positive", "missing: negative texts contrast with positive ones")
    if not _given(spec, "positive") and not is_feature(spec):
        for name in ("layer", "coeff", "method", "positions"):
            if _given(spec, name) and not (name == "positions" and spec.clamp is not None):
                raise SpecError(name, "applies to a steering vector; give positive (and negative) "
                                      "texts to build one (or method=feature with a dictionary and "
                                      "latent), or leave it out")
    wants_latent = is_feature(spec) or spec.clamp is not None
    if not wants_latent:
        for name in ("dictionary", "latent"):
            if getattr(spec, name) is not None:
                raise SpecError(name, "names a dictionary latent to intervene on: set method=feature "
                                      "(add its decoder direction) or clamp= (clamp it), or leave it out")
    for name in ("dictionary", "latent"):
        if wants_latent and getattr(spec, name) is None:
            raise SpecError(name, f"missing: {'method=feature' if is_feature(spec) else 'clamp'} "
                                  "needs a dictionary and one of its latents")
    if spec.p_target is not None and spec.method != "cav":
        raise SpecError("p_target", "is GCAV's target probability: it applies to method=cav only")
    if _given(spec, "ablation") and not _given(spec, "ablate"):
        raise SpecError("ablation", "says how to ablate; name what to ablate in ablate= as well")


def check_feature_fields(spec: AnalysisSpec) -> None:
    for name in ("positive", "negative"):
        if _given(spec, name):
            raise SpecError(name, "method=feature adds a dictionary latent's decoder direction; it "
                                  "reads no contrast texts (leave them out, or choose another method)")
    if _given(spec, "layer"):
        raise SpecError("layer", "method=feature adds the latent at its dictionary's site, whose "
                                 "layer is fixed; leave layer out")


def build_cells(layers: list[int] | None, coeffs: list[float], ablated: bool,
                p_targets: list[float] = ()) -> tuple[Cell, ...]:
    """Per layer: each coefficient's cell, then each GCAV target's (after the sweep)."""
    layer_list = layers or [None]
    if not ablated:
        return tuple(cell for layer in layer_list for cell in (
            *(Cell(layer, c, False) for c in coeffs),
            *(Cell(layer, float("nan"), False, p) for p in p_targets)))
    return tuple(cell for layer in layer_list
                 for cell in (Cell(layer, 0.0, False), *(Cell(layer, c, True) for c in coeffs),
                              *(Cell(layer, float("nan"), True, p) for p in p_targets)))


@torch.no_grad()
def prepare(bridge, spec: AnalysisSpec, progress: Progress = silent,
            dictionary: lookup.Dictionary | None = None) -> Plan:
    """What every prompt of the run shares; `dictionary`: the one `spec.dictionary` names
    (loaded by the caller, which knows the model's reference and fingerprint)."""
    check_fields(spec)
    full = spec.with_defaults()
    n_layers = int(bridge.cfg.n_layers)
    feature = is_feature(full)
    if (feature or full.clamp is not None) and dictionary is None:
        raise SpecError("dictionary", "missing: the latent's dictionary was not loaded")
    latent = latents.check_latent(dictionary, full.latent) if dictionary is not None else None
    steering = full.positive is not None or feature
    probes = None
    if feature:
        layers = [dictionary.site.layer]
    else:
        layers = listtext.indices(full.layer) if full.layer is not None else ([n_layers // 2] if steering else None)
    for layer in layers or []:
        check_layer(bridge, layer)
    coeffs = sorted({0.0, *listtext.numbers(full.coeff)}) if steering else [0.0]
    p_targets = listtext.numbers(full.p_target) if full.p_target is not None else []
    if len(layers or [None]) * (len(coeffs) + len(p_targets)) > MAX_CELLS:
        raise SpecError("coeff", f"{len(layers)} layers × {len(coeffs) + len(p_targets)} coefficients and "
                                 f"targets; a run sweeps at most {MAX_CELLS} cells")
    progress(0.02, "building the steering vector" if steering else "preparing the ablation")
    if feature:  # the decoder row, in the site's space; the table reads what it writes to the residual
        found = {layers[0]: latents.decoder_row(dictionary, latent)}
        read_out = {layers[0]: latents.in_residual(bridge, dictionary, found[layers[0]])}
    elif steering and full.method == "cav":
        probes = cav.train(bridge, listtext.lines(full.positive),
                           listtext.lines(full.negative) if full.negative else [], layers, full.seed)
        found = {layer: probe.vector for layer, probe in probes.items()}
        read_out = found
    else:
        found = (vectors.steering_vectors(bridge, full.method, listtext.lines(full.positive),
                                          listtext.lines(full.negative) if full.negative else [], layers)
                 if steering else {})
        read_out = found
    ablation = (ablating.prepare(bridge, listtext.components(full.ablate), full.ablation)
                if full.ablate else None)
    clamp = (latents.Clamp(dictionary, latent, listtext.number(full.clamp, -listtext.MAX_MAGNITUDE))
             if full.clamp is not None else None)
    temperature = listtext.number(full.temperature)
    cells = build_cells(layers, coeffs, ablation is not None or clamp is not None, p_targets)
    neutral = neutral_tokens(bridge)
    if feature:  # the site's output in the residual's space, as the vector table reads the row: its scale
        hook = latents.residual_hook(dictionary)
        resid = {layers[0]: bridge.run_with_cache(neutral, names_filter=[hook])[1][hook][0].float()}
    else:
        resid = vectors.read_residuals(bridge, neutral, layers) if steering else {}
    plan = Plan(cells=cells, vectors=found, ablation=ablation, positions=full.positions,
                temperature=temperature, samples=SAMPLES if temperature > 0 else 1,
                max_new_tokens=full.max_new_tokens, seed=full.seed, kl={},
                vector_table=vectors.vector_table(bridge, read_out, full.top_k) if steering else None,
                resid_norms={layer: float(past_bos(r, first_after_bos(bridge), pos_dim=0).norm(dim=-1).mean())
                             for layer, r in resid.items()},
                feature=dictionary if feature else None, clamp=clamp, probes=probes)
    progress(0.05, "measuring what each intervention changes on a neutral text")
    intact = generation.forward(bridge, neutral, lambda counter: [])[0].float().log_softmax(-1)
    for cell in cells:
        if cell.intervention not in plan.kl:
            hooks = hooks_for(plan, cell, where=lambda pos: torch.ones_like(pos, dtype=torch.bool))
            changed = generation.forward(bridge, neutral, hooks)[0].float().log_softmax(-1)
            plan.kl[cell.intervention] = kl_divergence(intact, changed)
    return plan


def kl_divergence(p_log: Tensor, q_log: Tensor) -> float:
    """Mean over positions of KL(p ‖ q), from log-probabilities [pos, d_vocab], in nats."""
    return float((p_log.exp() * (p_log - q_log)).sum(-1).mean())


def hooks_for(plan: Plan, cell: Cell, where) -> generation.Hooks:
    """The cell's hooks for a position counter: the ablation, then the vector."""
    def hooks(counter) -> list:
        found = ablating.ablation_hooks(plan.ablation, counter) if cell.ablated and plan.ablation else []
        if cell.ablated and plan.clamp is not None:
            found += latents.clamp_hooks(plan.clamp, where, counter)
        if cell.p_target is not None:
            hook = cav.gcav_hook(plan.probes[cell.layer].probe, cell.p_target, where, counter)
            found.append((vectors.resid_hook(cell.layer), hook))
        elif cell.coeff and plan.feature is not None:
            found += latents.feature_hooks(plan.feature, plan.vectors[cell.layer], cell.coeff, where, counter)
        elif cell.coeff:
            hook = vectors.steering_hook(plan.vectors[cell.layer], cell.coeff, where, counter)
            found.append((vectors.resid_hook(cell.layer), hook))
        return found
    return hooks


def answer_ids(bridge, spec: AnalysisSpec) -> tuple[int | None, int | None]:
    answer = single_token(bridge, spec.answer, "answer") if spec.answer else None
    wrong = single_token(bridge, spec.wrong, "wrong") if spec.wrong else None
    if wrong is not None and answer is None:
        raise SpecError("answer", "missing: wrong is measured against an answer")
    return answer, wrong


def metric(logits: Tensor, answer: int | None, wrong: int | None) -> float:
    """logits [d_vocab] at the prompt's last position -> the effect measure (module docstring)."""
    if answer is None:
        return float("nan")
    if wrong is None:
        return float(logits.log_softmax(-1)[answer])
    return float(logits[answer] - logits[wrong])


@torch.no_grad()
def run_prompt(bridge, plan: Plan, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    prompt = prompt_tokens(bridge, spec.prompt)  # [1, pos]
    n_prompt = int(prompt.shape[1])
    answer, wrong = answer_ids(bridge, spec)
    room = generation.room(bridge, n_prompt)
    if room < 1:
        raise SpecError("prompt", f"{n_prompt} tokens fill the model's context; none are left to generate")
    max_new = min(plan.max_new_tokens, room)
    where = vectors.where_added(plan.positions, n_prompt)
    done: dict[tuple, list[generation.Generated]] = {}
    generations, effects = [], []
    steps = len({c.intervention for c in plan.cells}) * plan.samples
    for cell in plan.cells:
        if cell.intervention not in done:
            done[cell.intervention] = []
            for sample in range(plan.samples):
                progress(0.1 + 0.9 * sum(map(len, done.values())) / steps,
                         f"generating: {describe(cell)}")
                done[cell.intervention].append(generation.generate(
                    bridge, prompt, hooks_for(plan, cell, where), max_new, plan.temperature,
                    plan.seed + sample))
        outs = done[cell.intervention]
        for sample, out in enumerate(outs):
            generations.append({"layer": cell.layer, "coeff": cell.coeff, "ablated": cell.ablated,
                                "sample": sample, "text": bridge.tokenizer.decode(out.tokens),
                                "tokens": json.dumps(token_texts(bridge, out.tokens).tolist(), ensure_ascii=False),
                                "logprobs": json.dumps([round(v, 5) for v in out.logprobs]),
                                "p_target": cell.p_target})
        top = int(outs[0].last_logits.argmax())
        effects.append({"layer": cell.layer, "coeff": cell.coeff, "ablated": cell.ablated,
                        "metric": metric(outs[0].last_logits, answer, wrong),
                        "top1": float("nan") if answer is None else float(top == answer),
                        "top_token": str(token_texts(bridge, [top])[0]),
                        "kl": plan.kl[cell.intervention], "p_target": cell.p_target})
    tables = {"generations": _frame(generations, "generations"), "effects": _frame(effects, "effects")}
    if plan.vector_table is not None:
        tables["vector"] = plan.vector_table
    if any(cell.p_target is not None for cell in plan.cells):
        tables["cav"] = gcav_table(bridge, plan, prompt, where)
    progress(1.0, "done")
    return Result(spec=spec.with_defaults(), tables=tables, meta={
        "n_tokens": n_prompt, "prompt_tokens": token_strings(bridge, prompt[0]),
        "max_new_tokens": max_new, "samples": plan.samples,
        "metric": metric_name(spec), "ablated": plan.ablation.label if plan.ablation else None,
        "resid_norms": {str(k): v for k, v in plan.resid_norms.items()},
        "clamped": plan.clamp.label if plan.clamp else None,
        "feature": (f"latent {spec.latent} of {plan.feature.label}, added at {plan.feature.site.output_hook}"
                    if plan.feature else None),
        "n_layers": int(bridge.cfg.n_layers)})


@torch.no_grad()
def gcav_table(bridge, plan: Plan, prompt: Tensor, where) -> pd.DataFrame:
    """Each GCAV cell's probe probability at the prompt's last position, read in the run just
    before and just after its hook adds the vector, the strength added there, and that
    strength as a coefficient of the fixed-coefficient vector (ŵ at the mean difference's norm)."""
    rows = []
    for cell in plan.cells:
        if cell.p_target is None:
            continue
        before, after = [], []
        site = vectors.resid_hook(cell.layer)

        def hooks(counter, cell=cell, site=site, before=before, after=after) -> list:
            return [(site, cav.capture_hook(before)), *hooks_for(plan, cell, where)(counter),
                    (site, cav.capture_hook(after))]
        generation.forward(bridge, prompt, hooks)
        concept = plan.probes[cell.layer]
        x_before, x_after = before[0][0, -1].numpy(), after[0][0, -1].numpy()  # [d_model]
        strength = float((x_after - x_before) @ concept.probe.direction)
        vector_norm = float(concept.vector.norm())
        rows.append({"layer": cell.layer, "p_target": cell.p_target, "ablated": cell.ablated,
                     "p_before": float(concept.probe.probability(x_before)), "strength": strength,
                     "coeff": strength / vector_norm if vector_norm else float("nan"),
                     "p_after": float(concept.probe.probability(x_after)),
                     "probe_accuracy": concept.train_accuracy})
    return pd.DataFrame(rows, columns=list(TABLES["cav"]))


def describe(cell: Cell) -> str:
    if cell.p_target is not None:
        return ", ".join([f"layer {cell.layer}, GCAV to p = {cell.p_target:g}",
                          "ablated" if cell.ablated else "intact"])
    parts = [f"layer {cell.layer}, coefficient {cell.coeff:g}"] if cell.coeff else ["no vector"]
    return ", ".join([*parts, "ablated" if cell.ablated else "intact"])


def metric_name(spec: AnalysisSpec) -> str | None:
    if not spec.answer:
        return None
    if not spec.wrong:
        return f"log p({spec.answer!r})"
    return f"logit({spec.answer!r}) − logit({spec.wrong!r})"


def _frame(rows: list[dict], table: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*TABLES[table], *EXTRA_COLUMNS])
    frame["layer"] = frame["layer"].astype("Int64")  # empty (NA) without a vector
    frame["ablated"] = frame["ablated"].astype(bool)
    frame["p_target"] = frame["p_target"].astype(float)  # NaN: a fixed-coefficient cell
    return frame


def dictionary_of(model, spec: AnalysisSpec) -> lookup.Dictionary | None:
    return lookup.load(model, spec.dictionary) if spec.dictionary else None


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    plan = prepare(bridge, spec, progress, dictionary_of(model, spec))
    return run_prompt(bridge, plan, spec, progress)


def run_examples(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list:
    """A prompt set's rows: one plan (vector, ablation means, KL) for all, then each row's
    prompt through it; a row that cannot run is returned as its UserError."""
    if not specs:
        return []
    bridge = model.bridge
    plan = prepare(bridge, specs[0], silent, dictionary_of(model, specs[0]))
    outcomes = []
    for i, spec in enumerate(specs):
        progress(i / len(specs), f"example {i + 1} of {len(specs)}")
        try:
            outcomes.append(run_prompt(bridge, plan, spec))
        except UserError as err:
            outcomes.append(err)
    return outcomes



