"""One CETT value measured on a text: each layer's threshold for it (on the dense run's
activations), then a sparse forward with all those thresholds at once, and the perplexity
increase it costs. Points are memoised: the curve and every p's search share them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from analyses.kinds.sparsity.cett import LayerCETT
from analyses.kinds.sparsity.forward import DenseRun, SparseRun, dense_run, output_weights, sparse_run
from analyses.kinds.sparsity.text import TextBatch


@dataclass(frozen=True)
class Point:
    cett: float  # the CETT value shared by every layer
    thresholds: tuple[float, ...]  # per layer: contribution norm below which a neuron is zeroed
    layer_cetts: tuple[float, ...]  # per layer: the CETT its threshold gives (at most `cett`)
    increase: float  # perplexity increase, % (exp(loss_sparse - loss_dense) - 1) · 100
    run: SparseRun


def increase_percent(dense_loss: float, sparse_loss: float) -> float:
    return (math.exp(sparse_loss - dense_loss) - 1.0) * 100.0


class Sparsifier:
    """The dense run of `batch`, and every CETT value measured on it so far."""

    def __init__(self, bridge, batch: TextBatch):
        self.bridge, self.batch = bridge, batch
        self.weights = output_weights(bridge)  # per layer [d_mlp, d_model]
        self.dense: DenseRun = dense_run(bridge, batch)
        self.layers = [LayerCETT(a, w) for a, w in zip(self.dense.acts, self.weights)]
        self.points: dict[float, Point] = {}
        self.forwards = 1  # the dense run

    def thresholds(self, cett: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(threshold, its CETT) of every layer for the shared value `cett`."""
        found = [layer.threshold_for(cett) for layer in self.layers]
        return tuple(t for t, _ in found), tuple(c for _, c in found)

    def at(self, cett: float) -> Point:
        cett = float(cett)
        if cett not in self.points:
            thresholds, layer_cetts = self.thresholds(cett)
            run = sparse_run(self.bridge, self.batch, list(thresholds), self.weights)
            self.forwards += 1
            self.points[cett] = Point(cett, thresholds, layer_cetts,
                                      increase_percent(self.dense.loss, run.loss), run)
        return self.points[cett]

    def increase(self, cett: float) -> float:
        return self.at(cett).increase

    def bracket(self, p: float) -> dict:
        """The narrowest CETT bracket of a p% increase among the points measured so far (0 and
        1 where none lies below or at/above it), as `search_cett`'s keyword arguments."""
        upper = min((pt.cett for pt in self.points.values() if pt.increase >= p), default=1.0)
        # below the upper end only: perplexity need not rise monotonically (random weights)
        below = [pt for pt in self.points.values() if pt.increase < p and pt.cett < upper]
        lower = max(below, key=lambda pt: pt.cett, default=None)
        return {"lower": lower.cett if lower else 0.0, "upper": upper,
                "lower_increase": lower.increase if lower else 0.0}
