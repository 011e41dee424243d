"""Linear probes: at which layer a concept can be read off the model's activations.

Given a labelled prompt set (rows `prompt` and `label`, 1: the text has the concept, 0: it
has not; the shipped `capital_concept` and `name_concept`), each text's activation at the
`site` of every layer is read at its **last token** (the position that predicts the next
token, which steering (`analyses.kinds.steering`) and GCAV read too: what the concept has
been moved to by then, not the concept word itself). The rows are split once, seeded and
stratified (`TEST_SHARE` held out), and per layer a logistic-regression probe
(`analyses.kinds.linear_probe`, scikit-learn) is trained on the training rows.

Table `layers`, one row per layer:
- `accuracy` on the held-out rows, with Wilson's 95% interval (`ci_low`, `ci_high`; scipy, as
  every accuracy in the workbench) over `n_test` rows; `train_accuracy` beside it;
- `cosine_mean_diff`: cos(probe weight, mean-difference vector), the mean of the training
  rows with the concept minus the mean of those without. The two need not agree: the probe
  discounts directions along which the classes vary a lot, the mean difference does not.
  `agrees` is cos ≥ `AGREEMENT` (0.5); `mean_diff_accuracy` is the held-out accuracy of the
  mean difference as a classifier (threshold halfway between the two class means), so a
  disagreement can be read as which direction separates better;
- `bias` and `norm` (‖w‖): with the unit direction, the probe itself, so a steering run can
  compute GCAV's strength from this table (`steering method=cav` trains its own on its texts).
Table `directions`: per layer and component of d_model, the unit probe direction and the
unit mean-difference direction. `examples` says each row's split and its probability under
the best layer's probe; `skipped`, the rows that could not run and why.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from sklearn.model_selection import train_test_split

from analyses.core.catalogue import CATALOGUE, PROBE_SITES
from analyses.core.datasets import PromptSet
from analyses.core.errors import SpecError, UserError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.core.summary import proportion_interval
from analyses.kinds import linear_probe
from analyses.kinds.tokens import prompt_tokens

TABLES = CATALOGUE["probe"].tables
TEST_SHARE = 0.25  # rows held out for the accuracy
MIN_PER_CLASS = 4  # fewer rows of a class cannot be split into training and test rows
AGREEMENT = 0.5  # cos(probe, mean difference) at or above which the two directions "agree"
SITE_HOOKS = {site: f"blocks.{{layer}}.hook_{site}" for site in PROBE_SITES}


def site_hook(site: str, layer: int) -> str:
    return SITE_HOOKS[site].format(layer=layer)


@torch.no_grad()
def last_token_activations(bridge, token_rows: list[torch.Tensor], site: str,
                           progress: Progress = silent) -> Float[np.ndarray, "layer example d_model"]:
    """Each prompt's activation at its last token, at `site` of every layer. Prompts of one
    token length run together in one forward (no padding, so nothing to mask)."""
    n_layers = int(bridge.cfg.n_layers)
    names = [site_hook(site, layer) for layer in range(n_layers)]
    out = np.zeros((n_layers, len(token_rows), int(bridge.cfg.d_model)), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for i, tokens in enumerate(token_rows):
        by_length.setdefault(int(tokens.shape[1]), []).append(i)
    for done, (_, members) in enumerate(sorted(by_length.items())):
        progress(0.05 + 0.6 * done / len(by_length), f"reading activations ({len(members)} prompts)")
        batch = torch.cat([token_rows[i] for i in members])  # [members, pos]
        _, cache = bridge.run_with_cache(batch, names_filter=names)
        for layer, name in enumerate(names):
            out[layer, members] = cache[name][:, -1].float().cpu().numpy()
    return out


def rows_of(bridge, prompt_set: PromptSet) -> tuple[list, np.ndarray, list[int], list[dict]]:
    """(tokens per usable row, labels [example], their row indices, skipped rows)."""
    tokens, labels, kept, skipped = [], [], [], []
    for i, row in enumerate(prompt_set.rows):
        if "prompt" not in row or "label" not in row:
            missing = "prompt" if "prompt" not in row else "label"
            skipped.append({"example": i, "reason": f"no {missing}: a probe's row is a prompt and a "
                                                   "label (0 or 1)", "row": str(row)[:200]})
            continue
        try:
            tokens.append(prompt_tokens(bridge, row["prompt"]))
        except UserError as err:
            skipped.append({"example": i, "reason": str(err), "row": str(row)[:200]})
            continue
        labels.append(int(row["label"]))
        kept.append(i)
    return tokens, np.asarray(labels, dtype=int), kept, skipped


def split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and held-out rows: seeded, stratified by label."""
    counts = np.bincount(labels, minlength=2)
    if counts.min() < MIN_PER_CLASS:
        raise SpecError("dataset", f"{counts[1]} rows with label 1 and {counts[0]} with label 0; a "
                                   f"probe needs at least {MIN_PER_CLASS} of each to train and test")
    return train_test_split(np.arange(len(labels)), test_size=TEST_SHARE, random_state=seed,
                            stratify=labels)


def mean_difference(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """x [example, d_model] -> mean over label-1 rows minus mean over label-0 rows [d_model]."""
    return x[labels == 1].mean(0) - x[labels == 0].mean(0)


def mean_diff_predictions(train_x, train_labels, test_x) -> np.ndarray:
    """The mean difference as a classifier: project on it, threshold halfway between the
    two training class means' projections."""
    diff = mean_difference(train_x, train_labels)
    midpoint = 0.5 * (train_x[train_labels == 1].mean(0) + train_x[train_labels == 0].mean(0)) @ diff
    return (test_x @ diff > midpoint).astype(int)


def probe_layer(x: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                seed: int) -> tuple[linear_probe.Probe, dict, np.ndarray]:
    """One layer's probe [x: example, d_model], its `layers` row (layer and site aside) and
    its unit mean-difference direction."""
    probe = linear_probe.fit(x[train], labels[train], seed)
    correct = ((probe.probability(x[test]) >= 0.5).astype(int) == labels[test]).astype(float)
    interval = proportion_interval(correct)
    diff = mean_difference(x[train], labels[train])
    cos = linear_probe.cosine(probe.weight, diff)
    mean_diff_correct = mean_diff_predictions(x[train], labels[train], x[test]) == labels[test]
    row = {"accuracy": interval["mean"], "ci_low": interval["ci_low"], "ci_high": interval["ci_high"],
           "n_test": len(test), "n_train": len(train),
           "train_accuracy": float(((probe.probability(x[train]) >= 0.5) == labels[train]).mean()),
           "cosine_mean_diff": cos, "agrees": bool(cos >= AGREEMENT),
           "mean_diff_accuracy": float(mean_diff_correct.mean()), "bias": probe.bias, "norm": probe.norm}
    return probe, row, diff / (np.linalg.norm(diff) or 1.0)


def run_set(model, spec: AnalysisSpec, prompt_set: PromptSet, progress: Progress = silent) -> Result:
    bridge = model.bridge
    full = spec.with_defaults()
    progress(0.0, "tokenizing")
    tokens, labels, kept, skipped = rows_of(bridge, prompt_set)
    train, test = split(labels, full.seed)
    x = last_token_activations(bridge, tokens, full.site, progress)  # [layer, example, d_model]
    rows, directions, probes = [], [], []
    for layer in range(x.shape[0]):
        progress(0.7 + 0.3 * layer / x.shape[0], f"training the layer-{layer} probe")
        probe, row, diff_unit = probe_layer(x[layer], labels, train, test, full.seed)
        probes.append(probe)
        rows.append({"layer": layer, "site": full.site, **row})
        directions.append(pd.DataFrame({"layer": layer, "component": np.arange(x.shape[2]),
                                        "probe": probe.direction, "mean_diff": diff_unit}))
    layers = pd.DataFrame(rows, columns=list(TABLES["layers"]))
    best = int(layers["accuracy"].idxmax())  # the first of equals: the earliest layer
    in_test = np.isin(np.arange(len(labels)), test)
    examples = pd.DataFrame({
        "example": kept, "prompt": [prompt_set.rows[i]["prompt"] for i in kept], "label": labels,
        "split": np.where(in_test, "test", "train"), "n_tokens": [int(t.shape[1]) for t in tokens],
        "p_best_layer": probes[best].probability(x[best])})
    progress(1.0, "done")
    return Result(spec=spec, tables={
        "layers": layers, "directions": pd.concat(directions, ignore_index=True)[list(TABLES["directions"])],
        "examples": examples, "skipped": pd.DataFrame(skipped, columns=["example", "reason", "row"])},
        meta={"best_layer": best, "best_accuracy": float(layers.loc[best, "accuracy"]),
              "n_examples": len(kept), "n_skipped": len(skipped), "n_rows": len(prompt_set.rows),
              "n_positive": int(labels.sum()), "n_layers": int(x.shape[0]), "d_model": int(x.shape[2]),
              "read_at": "the last token", "dataset": prompt_set.name,
              "dataset_reference": prompt_set.reference, "agreement": AGREEMENT})


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    raise SpecError("dataset", "missing: a probe trains on a labelled prompt set (rows of prompt and "
                               "label; shipped: capital_concept, name_concept)")
