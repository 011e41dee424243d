"""A kind run over a prompt set (`dataset=`): every row as its own spec, then per-example
tables, summaries with 95% intervals, and the rows that could not run.

A row gives the kind's input fields (`Kind.row_fields`, read by `AnalysisSpec.for_row`): a
pair row (`clean`, …) serves a single-prompt kind through its clean prompt, and a row's
`answer`/`wrong` serve the logit lens as its target tokens. The model is loaded once. A kind
with an `examples_runner` runs rows together (activation patching: the pairs of one token
length share the engine's forward passes); the others run each row through their runner in
turn. Either way a set's example equals its row's single-prompt run (to float rounding).

Tables of a set run:
- each per-example table of the kind, with `example` (the row's index in the set) first and,
  for position-indexed tables, `n_tokens`; the logit lens's `targets` also gets `target`, the
  target's place in its row's list (0: the answer, 1: wrong);
- `<table>_summary`: the same keys plus `mean`, `sem`, `ci_low`, `ci_high` (95%), `n` and
  `interval`, which names the interval (`analyses/core/summary.py`): "t" (exact Student t) for a
  plain mean, "wilson" for an accuracy (steering's `top1`), "single" for a quantity measured
  once per run (steering's `kl` on the neutral text: n = 1, no interval). Steering's effects get
  one row per quantity, `metric`, `top1` and `kl`, named in `quantity`. Position-indexed rows
  are grouped by `n_tokens`: a position means the same only in prompts of one length
  (position-free rows, position -1, have `n_tokens` -1 and pool every example). Activation
  patching normalises like Wang et al. 2022: (mean patched − mean corrupted) / (mean clean −
  mean corrupted) over a group's examples, a ratio of means whose interval ("paired delta")
  keeps each example's patched value with its own two baselines; each example's own
  normalised value stays in `effects.value` (their plain mean is another, noisier estimator);
- `examples`: each example's inputs (and, for patching, its two baselines and its prompts'
  tokens as JSON lists, `clean_tokens` and `corrupted_tokens`; for attention, `tokens`);
- `skipped`: rows that could not run (a multi-token answer, pair lengths that differ for this
  model, no logit gap between clean and corrupted), with the reason; the rest still run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyses.core.catalogue import CATALOGUE
from analyses.core.datasets import PromptSet
from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent
from analyses.core.restored import mean_share_restored
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.core.summary import (
    mean_interval,
    mean_intervals,
    proportion_interval,
    single_measurement,
    summarise,
)


@dataclass(frozen=True)
class Summary:
    keys: tuple[str, ...]  # what identifies a row across examples
    value: str | tuple[str, ...]  # the column averaged (several: one row each, named in `quantity`)
    wang: bool = False  # the ratio of means of Wang et al.'s normalisation, paired per example (patching)
    last_position: bool = False  # only each prompt's last position (then lengths may differ)
    accuracies: tuple[str, ...] = ()  # values that are 0 or 1 per example: Wilson's interval
    once_per_run: tuple[str, ...] = ()  # measured once and copied to every example: one measurement


SUMMARIES: dict[str, dict[str, Summary]] = {
    "activation_patching": {"effects": Summary(
        ("granularity", "layer", "position", "head", "sender_layer", "sender_head", "receiver_input"),
        "raw", wang=True)},
    "attribution_patching": {"attributions": Summary(("node", "layer", "position", "head"), "atp"),
                             "latents": Summary(("node", "layer", "position", "latent"), "atp")},
    # a neuron's row is there only where it ranked among its layer's top: n says in how many
    "dla": {"contributions": Summary(("component", "layer", "head"), "value"),
            "neurons": Summary(("layer", "part", "neuron"), "value")},
    "attention": {"last": Summary(("layer", "head", "position"), "weight"),
                  "answers": Summary(("layer", "head", "target"), "weight")},
    "logit_lens": {"targets": Summary(("layer", "layer_index", "target"), "prob", last_position=True)},
    # each example's delta is paired with its own intact run: the t interval of the deltas
    "ablation_sweep": {"effects": Summary(("component", "site", "layer", "head"), ("metric", "delta", "top1"),
                                          accuracies=("top1",))},
    "knockout": {"knockout": Summary(("window_start", "window_end", "source"),
                                     ("answer_prob", "change", "relative"))},
    # the KL is measured once per cell on the neutral text, not per example
    "steering": {"effects": Summary(("layer", "coeff", "ablated", "p_target"), ("metric", "top1", "kl"),
                                    accuracies=("top1",), once_per_run=("kl",))},
    "graph": {"scores": Summary(("graph",), ("replacement", "completeness"))},
}
SKIPPED_COLUMNS = ("example", "reason", "row")


def run(run_one, model, spec: AnalysisSpec, prompt_set: PromptSet, progress: Progress = silent,
        run_many=None) -> Result:
    """Every row of `prompt_set` through `run_many(model, specs, progress)` (each spec's
    Result or UserError; default: `run_one(model, spec, progress)` on each row in turn); see
    the module docstring."""
    run_many = run_many or one_by_one(run_one)
    per_table: dict[str, list[tuple[int, int | None, pd.DataFrame]]] = {}
    examples, skipped, singles = [], [], []
    n_rows = len(prompt_set.rows)
    for i, row in enumerate(prompt_set.rows):
        try:
            singles.append((i, spec.for_row(row)))
        except UserError as err:  # a bad row: named, and the run goes on
            skipped.append(skipped_row(i, row, err))
    outcomes = run_many(model, [single for _, single in singles], progress)
    for (i, single), result in zip(singles, outcomes):
        if isinstance(result, UserError):  # e.g. the patching kinds refuse a pair with no gap
            skipped.append(skipped_row(i, prompt_set.rows[i], result))
            continue
        n_tokens = result.meta.get("n_tokens")
        inputs = {name: getattr(single, name) for name in CATALOGUE[spec.kind].row_fields}
        examples.append({"example": i, **inputs, **_baselines(result), "n_tokens": n_tokens})
        for name, frame in result.tables.items():
            per_table.setdefault(name, []).append((i, n_tokens, frame))
    skipped.sort(key=lambda s: s["example"])
    if not examples:
        first = skipped[0]["reason"] if skipped else "the set has no rows"
        raise SpecError("dataset", f"no row of {prompt_set.name} could run ({len(skipped)} skipped; "
                                   f"the first: {first})")
    tables = {name: per_example_table(name, parts) for name, parts in per_table.items()}
    frame_of_examples = pd.DataFrame(examples)
    for name, summary in SUMMARIES.get(spec.kind, {}).items():
        if name in tables:
            tables[f"{name}_summary"] = summary_table(tables[name], summary, frame_of_examples)
    tables["examples"] = frame_of_examples
    tables["skipped"] = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)
    progress(1.0, "done")
    meta = {"dataset": prompt_set.name, "dataset_reference": prompt_set.reference,
            "n_examples": len(examples), "n_skipped": len(skipped), "n_rows": n_rows}
    return Result(spec=spec, tables=tables, meta=meta)


def per_example_table(name: str, parts: list[tuple[int, int | None, pd.DataFrame]]) -> pd.DataFrame:
    """One table from each example's (index, token count, table): `example` first, then
    `n_tokens` where rows have a position; the logit lens's `targets` gains `target`."""
    frame = pd.concat([part for _, _, part in parts], ignore_index=True)
    lengths = [len(part) for _, _, part in parts]
    frame.insert(0, "example", np.repeat([i for i, _, _ in parts], lengths))
    if "position" in frame.columns:
        n_tokens = [n if n is not None else int(part["position"].max()) + 1 for _, n, part in parts]
        frame.insert(1, "n_tokens", np.repeat(n_tokens, lengths))
    if name == "targets":  # which of the row's targets (0: its answer, 1: wrong, ...)
        frame["target"] = frame.groupby("example", sort=False)["token_id"].transform(
            lambda ids: pd.factorize(ids)[0])
    return frame


def one_by_one(run_one):
    """A `run_many` that runs each spec alone, in turn."""
    def run_many(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list:
        outcomes = []
        for i, single in enumerate(specs):
            progress(i / max(1, len(specs)), f"example {i + 1} of {len(specs)}")
            try:
                outcomes.append(run_one(model, single, silent))
            except UserError as err:
                outcomes.append(err)
        return outcomes
    return run_many


def skipped_row(i: int, row: dict, err: UserError) -> dict:
    return {"example": i, "reason": str(err), "row": json.dumps(row, ensure_ascii=False)}


def _baselines(result: Result) -> dict:
    """An example's patching baselines and, as JSON lists, its prompts' tokens (the set's
    figures label positions with them)."""
    meta = result.meta
    found = {k: meta[k] for k in ("clean_baseline", "corrupted_baseline") if k in meta}
    found.update({k: json.dumps(meta[k], ensure_ascii=False)
                  for k in ("clean_tokens", "corrupted_tokens", "tokens") if k in meta})
    return found


def summary_table(frame: pd.DataFrame, summary: Summary, examples: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in summary.keys if k in frame.columns]
    if summary.last_position and "position" in frame.columns:
        frame = frame[frame["position"] == frame["n_tokens"] - 1]
        keys = [k for k in keys if k != "position"]
    if "position" in keys:  # a position means the same only within one prompt length
        by_position = frame["position"] >= 0  # position-free cells (heads over all positions): -1
        frame = frame.assign(n_tokens=frame["n_tokens"].where(by_position, -1))
        keys = ["n_tokens", *keys]
    if isinstance(summary.value, str):
        if not (summary.wang or summary.value in (*summary.accuracies, *summary.once_per_run)):
            return mean_intervals(frame, keys, summary.value)  # a plain mean: every group at once
        return summarise(frame, keys, _statistic(summary.value, summary, examples))
    return pd.concat([summarise(frame, keys, _statistic(value, summary, examples)).assign(quantity=value)
                      for value in summary.value], ignore_index=True)  # several quantities: a row each


def _statistic(value: str, summary: Summary, examples: pd.DataFrame):
    """The estimate of column `value` over a group's rows, with the interval that fits it."""
    if summary.wang:
        baselines = examples.set_index("example")[["clean_baseline", "corrupted_baseline"]]
        return lambda part: _restored(part[value].to_numpy(), baselines.loc[part["example"]])
    if value in summary.accuracies:
        return lambda part: proportion_interval(part[value].to_numpy())
    if value in summary.once_per_run:
        return lambda part: single_measurement(part[value].to_numpy(), value)
    return lambda part: mean_interval(part[value].to_numpy())


def _restored(patched: np.ndarray, baselines: pd.DataFrame) -> dict:
    """(mean patched − mean corrupted) / (mean clean − mean corrupted) over a group's examples,
    each example's patched logit difference paired with its own two baselines (same order)."""
    return mean_share_restored(patched, baselines["clean_baseline"].to_numpy(),
                               baselines["corrupted_baseline"].to_numpy())
