"""The kind's tables from measured points (plain pandas; shapes as in the catalogue)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.core.catalogue import CATALOGUE
from analyses.kinds.sparsity.measure import Point
from analyses.kinds.sparsity.search import Found
from analyses.kinds.sparsity.text import TextBatch

TABLES = CATALOGUE["sparsity"].tables


def layer_ratios(point: Point, batch: TextBatch) -> np.ndarray:
    """[layer] the mean share of neurons kept per token over the text."""
    fired = point.run.fired.numpy()  # [layer, doc, pos], 0 on padding
    return fired.sum((1, 2)) / batch.n_tokens


def summary_rows(p: float, found: Found, point: Point, batch: TextBatch) -> dict:
    ratio = float(layer_ratios(point, batch).mean())
    return {"p": p, "cett": found.cett, "cett_upper": found.upper, "ppl_increase": point.increase,
            "activation_ratio": ratio, "sparsity": 1.0 - ratio, "steps": found.steps}


def layer_rows(p: float, point: Point, batch: TextBatch) -> list[dict]:
    ratios = layer_ratios(point, batch)
    return [{"p": p, "layer": layer, "cett": point.cett, "layer_cett": point.layer_cetts[layer],
             "threshold": point.thresholds[layer], "activation_ratio": float(ratios[layer]),
             "sparsity": 1.0 - float(ratios[layer]), "ppl_increase": point.increase}
            for layer in range(len(point.thresholds))]


def curve_table(points: list[Point], sources: dict[float, str], batch: TextBatch) -> pd.DataFrame:
    rows = []
    for point in sorted(points, key=lambda pt: pt.cett):
        ratio = float(layer_ratios(point, batch).mean())
        rows.append({"cett": point.cett, "ppl_increase": point.increase, "activation_ratio": ratio,
                     "sparsity": 1.0 - ratio, "mean_threshold": float(np.mean(point.thresholds)),
                     "source": sources.get(point.cett, "grid")})
    return pd.DataFrame(rows, columns=TABLES["curve"])


def neuron_rows(p: float, point: Point) -> pd.DataFrame:
    frequency = point.run.frequency.numpy()  # [layer, d_mlp]
    layer, neuron = np.indices(frequency.shape)
    flat = frequency.ravel()
    return pd.DataFrame({"p": p, "layer": layer.ravel(), "neuron": neuron.ravel(), "frequency": flat,
                         "dead": flat == 0.0, "always_on": flat == 1.0}, columns=TABLES["neurons"])


def token_rows(p: float, point: Point, batch: TextBatch, strings: np.ndarray) -> pd.DataFrame:
    """Per layer, document and position of the text: the share of the layer's neurons kept."""
    fired = point.run.fired.numpy()  # [layer, doc, pos]
    mask = batch.mask.cpu().numpy()
    layer, doc, pos = np.nonzero(np.broadcast_to(mask, fired.shape))
    return pd.DataFrame({"p": p, "document": doc, "position": pos, "token": strings[doc, pos],
                         "layer": layer, "activation_ratio": fired[layer, doc, pos]},
                        columns=TABLES["tokens"])
