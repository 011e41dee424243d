"""Steering with a concept activation vector (`method=cav`), after GCAV ("Controlling Large
Language Models Through Concept Activation Vectors", Zhang et al. 2025).

At each steered layer a logistic probe (`analyses.kinds.linear_probe`, scikit-learn, seeded)
is trained to tell the positive texts (label 1: the concept) from the negative ones (label
0), on their residuals entering the block at their last position: the texts `mean_diff`
reads. Its unit direction ŵ is the CAV. Two ways to add it:

- a fixed coefficient (the `coeff` sweep): the vector is ŵ scaled to the norm of the same
  texts' mean difference (mean over positives − mean over negatives), so at any coefficient
  it has the norm `mean_diff`'s vector has: the two methods compare at equal norm;
- a target probability (`p_target`): GCAV's per-input strength, c = (logit(p*) − w·x − b)/‖w‖,
  computed in the hook at every steered position from that position's own residual x, so
  the probe reads exactly p* there after the addition (clipped at 0 against the direction
  asked for: `linear_probe.strength`). The `cav` table reports it at the prompt's last
  position, measured in the run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from analyses.core.errors import SpecError
from analyses.kinds import linear_probe
from analyses.kinds.interventions import vectors


@dataclass(frozen=True)
class ConceptProbe:
    probe: linear_probe.Probe
    vector: Tensor  # [d_model] ŵ · ‖mean difference‖: the fixed-coefficient vector
    train_accuracy: float  # on the texts it was trained on (there is no held-out text)


def train(bridge, positive: list[str], negative: list[str], layers: list[int],
          seed: int) -> dict[int, ConceptProbe]:
    """A probe per layer on the texts' last-position residuals entering the block."""
    if not negative:
        raise SpecError("negative", "cav trains a probe: give texts without the concept, one per line")
    pos = vectors._texts_residuals(bridge, positive, "positive", layers, last=True)
    neg = vectors._texts_residuals(bridge, negative, "negative", layers, last=True)
    labels = np.array([1] * len(positive) + [0] * len(negative))
    found = {}
    for layer in layers:
        x = torch.cat([pos[layer], neg[layer]]).cpu().double().numpy()  # [text, d_model]
        probe = linear_probe.fit(x, labels, seed)
        norm = float((pos[layer].mean(0) - neg[layer].mean(0)).norm())
        vector = torch.as_tensor(probe.direction * norm, dtype=torch.float32, device=pos[layer].device)
        accuracy = float(((probe.probability(x) >= 0.5).astype(int) == labels).mean())
        found[layer] = ConceptProbe(probe=probe, vector=vector, train_accuracy=accuracy)
    return found


def gcav_hook(probe: linear_probe.Probe, p_target: float, where, positions):
    """A hook adding GCAV's strength times ŵ at the positions `where` picks (never at BOS):
    each position's strength from its own residual, so the probe reads `p_target` there."""
    weight = torch.as_tensor(probe.weight, dtype=torch.float64)
    unit = weight / weight.norm()

    def hook(resid: Tensor, hook) -> Tensor:  # [batch, pos, d_model]
        mask = where(positions.current(resid.device)) & positions.changeable(resid.device)  # [pos]
        w = weight.to(resid.device)
        c = linear_probe.strength_torch(w, probe.bias, resid.double(), p_target)  # [batch, pos]
        shift = (c * mask[None, :].double())[..., None] * unit.to(resid.device)  # [batch, pos, d_model]
        return (resid.double() + shift).to(resid.dtype)
    return hook


def capture_hook(store: list):
    """A hook that keeps a copy of the residual it sees (and changes nothing)."""
    def hook(resid: Tensor, hook) -> None:  # [batch, pos, d_model]
        store.append(resid.detach().double().cpu())
    return hook
