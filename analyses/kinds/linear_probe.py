"""A linear probe and its concept activation vector (CAV), and GCAV's per-input strength.

A logistic-regression probe reads an activation x [d_model] as p(concept | x) =
σ(w·x + b). Its normalised weight ŵ = w / ‖w‖ is the concept activation vector (Kim et al.
2018, TCAV); "Controlling Large Language Models Through Concept Activation Vectors" (GCAV,
Zhang et al. 2025) steers by adding c·ŵ, with c per input: the smallest shift that moves
the probe's probability to a target p*. For a logistic probe it is closed form, since
w·(x + c·ŵ) + b = w·x + b + c‖w‖:

    c = (logit(p*) − w·x − b) / ‖w‖,

clipped at 0 in the direction asked for: adding the concept (p* ≥ ½) never pushes it down
(c ≥ 0: an input already at p* or above is left alone), removing it (p* < ½) never pushes
it up (c ≤ 0).

The probe is scikit-learn's `LogisticRegression` (L2, C = 1; seeded) on the raw
activations, so w lives in the model's own basis and steering reads it as it is. Pure
numpy/torch: no model here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from sklearn.linear_model import LogisticRegression
from torch import Tensor

C = 1.0  # inverse L2 strength: scikit-learn's default, so the probe is the library's own
MAX_ITER = 5000  # lbfgs converges well within this on a few hundred residuals
TOL = 1e-8  # stop at the optimum, not near it (scikit-learn's 1e-4 leaves ~1e-3 in b):
            # the direction and strength are then the objective's, whatever the solver


@dataclass(frozen=True)
class Probe:
    weight: np.ndarray  # [d_model] w
    bias: float  # b

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(self.weight))

    @property
    def direction(self) -> np.ndarray:
        """ŵ [d_model]: the concept activation vector (unit norm)."""
        return self.weight / self.norm

    def logits(self, x: np.ndarray) -> np.ndarray:
        """x [..., d_model] -> w·x + b [...]."""
        return np.asarray(x, dtype=np.float64) @ self.weight.astype(np.float64) + self.bias

    def probability(self, x: np.ndarray) -> np.ndarray:
        """x [..., d_model] -> p(concept | x) [...]."""
        return 1.0 / (1.0 + np.exp(-self.logits(x)))


def fit(x: Float[np.ndarray, "example d_model"], labels: np.ndarray, seed: int = 0) -> Probe:
    """A probe trained on activations `x` with 0/1 `labels` [example]."""
    labels = np.asarray(labels, dtype=int)
    if len(set(labels.tolist())) < 2:
        raise ValueError("a probe needs examples of both classes (labels 0 and 1)")
    x = np.asarray(x, dtype=np.float64)
    model = LogisticRegression(C=C, max_iter=MAX_ITER, tol=TOL, random_state=seed, solver=solver_for(x))
    model.fit(x, labels)
    return Probe(weight=model.coef_[0].astype(np.float64), bias=float(model.intercept_[0]))


def solver_for(x: np.ndarray) -> str:
    """Newton with a Cholesky solve where there are more examples than dimensions (a few
    exact steps on a [d_model + 1]² Hessian: ~10 iterations where lbfgs takes ~350 on raw
    residuals); lbfgs where the Hessian would be larger than the data. The same objective,
    so the same optimum to the tolerance."""
    return "newton-cholesky" if x.shape[0] >= x.shape[1] else "lbfgs"


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def check_target(p_target: float) -> float:
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"a target probability is strictly between 0 and 1, got {p_target:g}")
    return p_target


def strength(probe: Probe, x: np.ndarray, p_target: float, clip: bool = True) -> np.ndarray:
    """GCAV's coefficient c [...] on ŵ for activations x [..., d_model] (module docstring);
    `clip=False`: the signed shift that lands exactly on `p_target` whatever the side."""
    c = (logit(check_target(p_target)) - probe.logits(x)) / probe.norm
    if not clip:
        return c
    return np.maximum(c, 0.0) if p_target >= 0.5 else np.minimum(c, 0.0)


def strength_torch(weight: Float[Tensor, "d_model"], bias: float,  # noqa: F821
                   x: Float[Tensor, "... d_model"], p_target: float) -> Float[Tensor, "..."]:
    """`strength` inside a hook: the same closed form on a tensor, in float32 or wider."""
    norm = weight.norm()
    c = (logit(check_target(p_target)) - (x @ weight + bias)) / norm
    return c.clamp(min=0.0) if p_target >= 0.5 else c.clamp(max=0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """cos(a, b); NaN when either is zero."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na and nb else float("nan")


