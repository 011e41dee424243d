"""CETT, the cumulative error of tail truncation (Luo et al. 2025, "Sparsing Law"), and the
threshold at which a layer's CETT reaches a given value.

A neuron j's contribution to the MLP's output on a token is a_j · w_j (a_j its activation
entering the output projection, w_j its row of W_out), of norm |a_j| · ||w_j||. Zeroing the
neurons whose contribution norm is below a threshold t changes the output by exactly the sum
of their contributions, so

    CETT(t) = mean over tokens of || Σ_{j: |a_j|·||w_j|| < t} a_j w_j ||  /  || Σ_j a_j w_j ||

(the output without the bias: zeroing neurons leaves the bias alone). CETT grows with t from 0
(nothing zeroed) to 1 (everything zeroed) in steps at the contribution norms themselves, so
the threshold for a target CETT is found by bisection over those values.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

MAX_CANDIDATES = 1 << 16  # thresholds tried per layer at most (evenly spaced in rank), as the paper's code
TOKEN_CHUNK = 4096  # tokens per matmul (bounds memory on long texts)


def contribution_norms(acts: Float[Tensor, "tok d_mlp"], w_out: Float[Tensor, "d_mlp d_model"]
                       ) -> Float[Tensor, "tok d_mlp"]:
    """|a_j| · ||w_j||: the norm of each neuron's contribution to the output, per token."""
    return acts.abs() * w_out.norm(dim=-1)


def candidates(norms: Float[Tensor, "tok d_mlp"]) -> Float[Tensor, "n"]:  # noqa: F821 - a jaxtyping shape
    """The thresholds at which CETT can change (the contribution norms, sorted), thinned to at
    most MAX_CANDIDATES evenly spaced in rank, the largest value always kept."""
    flat = norms.flatten().sort().values
    if flat.numel() > MAX_CANDIDATES:
        flat = flat[torch.linspace(0, flat.numel() - 1, MAX_CANDIDATES).round().long()]
    return torch.unique_consecutive(flat)


@dataclass(frozen=True)
class LayerCETT:
    """One layer's activations on a text, with what every CETT evaluation reuses."""

    acts: Float[Tensor, "tok d_mlp"]  # the activation entering W_out, float32
    w_out: Float[Tensor, "d_mlp d_model"]
    norms: Tensor = field(init=False)  # [tok, d_mlp] contribution norms
    full: Tensor = field(init=False)  # [tok] ||a @ W_out||, floored away from 0
    tried: Tensor = field(init=False)  # [n] candidate thresholds, ascending
    # CETT by candidate index: every search bisects the same range, so nearby targets revisit
    # the same indices (the outer search asks for many nearby CETT values)
    known: dict = field(init=False, default_factory=dict)

    def __post_init__(self):
        norms = contribution_norms(self.acts, self.w_out)
        full = torch.cat([(self.acts[i:i + TOKEN_CHUNK] @ self.w_out).norm(dim=-1)
                          for i in range(0, self.acts.shape[0], TOKEN_CHUNK)])
        object.__setattr__(self, "norms", norms)
        object.__setattr__(self, "full", full.clamp_min(torch.finfo(full.dtype).tiny))
        object.__setattr__(self, "tried", candidates(norms))

    def cett_at(self, index: int) -> float:
        """CETT at candidate threshold `index` (memoised)."""
        if index not in self.known:
            self.known[index] = self.cett(float(self.tried[index]))
        return self.known[index]

    def cett(self, threshold: float) -> float:
        """CETT when every neuron whose contribution norm is below `threshold` is zeroed."""
        total = 0.0
        for start in range(0, self.acts.shape[0], TOKEN_CHUNK):
            part = slice(start, start + TOKEN_CHUNK)
            dropped = (self.acts[part] * (self.norms[part] < threshold)) @ self.w_out  # [tok, d_model]
            total += float((dropped.norm(dim=-1) / self.full[part]).sum())
        return total / max(self.acts.shape[0], 1)

    def threshold_for(self, target: float) -> tuple[float, float]:
        """(threshold, its CETT): the largest candidate threshold whose CETT is at most `target`
        (bisection: CETT never falls as the threshold grows). At target 0 nothing is zeroed (the
        smallest norm); at target 1 or more everything is (a threshold above every norm)."""
        tried = self.tried
        if target >= 1.0:
            top = float(tried[-1]) * (1 + 1e-6) + 1e-30
            return top, self.cett(top)
        low, high = 0, len(tried) - 1  # CETT(tried[0]) = 0: nothing lies strictly below the smallest
        if self.cett_at(high) <= target:
            low = high
        while high - low > 1:  # invariant: CETT(tried[low]) <= target < CETT(tried[high])
            mid = (low + high) // 2
            if self.cett_at(mid) <= target:
                low = mid
            else:
                high = mid
        return float(tried[low]), self.cett_at(low)
