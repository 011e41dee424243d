"""AtP over a sparse dictionary's latents and its error node (`dictionary=`), as in sparse
feature circuits (Marks et al. 2024): the site's output is read as

    x = z @ W_dec + b_dec + err,   z = the TopK code of the site's input, err = the rest

(a transcoder's skip term, if it has one, is in `err`), with `err` held as it is, so
d x / d z_j = W_dec[j] and

    atp(p, j)   = (z_clean − z_corrupted)[p, j] · (W_dec[j] · d metric / d x[p])
    atp(p, err) = (err_clean − err_corrupted)[p] · d metric / d x[p]

from the same single forward and backward pass as every AtP node (`atp.gradients`), the
gradient on the corrupted run. Per position the latents and the error node sum to the site's
own AtP node (Δx = Δz @ W_dec + Δerr). Only latents active in either run are nodes (Δz = 0
elsewhere: their AtP and their exact effect are 0).

Exact patching of a node sets that one latent (or the error) at that position to its clean
value in the corrupted run, everything else kept — x[p] += Δz[p, j] · W_dec[j] (or Δerr[p])
— one batch row per node, and the metric's change is its exact effect.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from analyses.core.progress import Progress, silent
from analyses.dictionaries import sites
from analyses.dictionaries.lookup import Dictionary
from analyses.kinds.attribution_patching.atp import gradients
from analyses.kinds.patching.engine import logit_diff

ROWS_PER_FORWARD = 64  # patched corrupted runs per batched forward in exact patching


@dataclass(frozen=True)
class SiteValues:
    """One run's code and error at the site, per position."""

    code: Float[Tensor, "pos latent"]  # the dense TopK code of the site's input
    error: Float[Tensor, "pos d_in"]  # the site's output minus the code's decoding


def site_values(dictionary: Dictionary, x_in: Tensor, x_out: Tensor) -> SiteValues:
    """x_in, x_out: [pos, d_in] (flattened heads) -> the code and the error term."""
    coder = dictionary.coder
    code = coder.dense(*coder.encode(x_in.float()))
    return SiteValues(code=code, error=x_out.float() - (code @ coder.W_dec + coder.b_dec))


@dataclass(frozen=True)
class LatentEstimates:
    nodes: pd.DataFrame  # node ("latent" | "error"), layer, position, latent, clean_act, corrupted_act, atp
    shifts: Float[Tensor, "node d_in"]  # what patching each node adds to x at its position
    clean_baseline: float
    corrupted_baseline: float


def attribute_latents(bridge, dictionary: Dictionary, pair, metric=None) -> LatentEstimates:
    """Every active latent's and each position's error node's AtP estimate (module docstring)."""
    site = dictionary.site
    metric = metric or partial(logit_diff, answer=pair.answer, wrong=pair.wrong)
    hooks = list(dict.fromkeys([site.input_hook, site.output_hook]))
    attribution = gradients(bridge, pair, hooks, False, metric)
    clean_read = sites.read(bridge, pair.clean, [site])  # exact clean values (no rounding of a delta)
    clean = site_values(dictionary, clean_read[site.input_hook][0], clean_read[site.output_hook][0])
    corrupted = site_values(dictionary, sites.flat(attribution.corrupted[site.input_hook][None])[0],
                            sites.flat(attribution.corrupted[site.output_hook][None])[0])
    grad = sites.flat(attribution.grads[site.output_hook][:1])[0].float()  # [pos, d_in]
    w_dec = dictionary.coder.W_dec.float()  # [latent, d_in]
    delta_code = clean.code - corrupted.code  # [pos, latent]
    latent_atp = delta_code * (grad @ w_dec.T)  # [pos, latent]
    delta_error = clean.error - corrupted.error  # [pos, d_in]
    error_atp = (delta_error * grad).sum(-1)  # [pos]

    active = (clean.code != 0) | (corrupted.code != 0)  # [pos, latent]
    position, latent = (i.cpu().numpy() for i in torch.nonzero(active, as_tuple=True))
    n_pos = int(delta_error.shape[0])
    frame = pd.DataFrame({
        "node": np.r_[np.full(len(position), "latent"), np.full(n_pos, "error")],
        "layer": site.layer,
        "position": np.r_[position, np.arange(n_pos)],
        "latent": np.r_[latent, np.full(n_pos, -1)],
        "clean_act": np.r_[clean.code[active].cpu().numpy(), np.full(n_pos, np.nan)],
        "corrupted_act": np.r_[corrupted.code[active].cpu().numpy(), np.full(n_pos, np.nan)],
        "atp": np.r_[latent_atp[active].cpu().numpy(), error_atp.cpu().numpy()].astype(np.float64),
    })
    shifts = torch.cat([delta_code[active][:, None] * w_dec[torch.as_tensor(latent, dtype=torch.long)],
                        delta_error])  # [node, d_in]
    return LatentEstimates(frame, shifts, attribution.clean_metric, attribution.corrupted_metric)


@torch.no_grad()
def exact_latent_effects(bridge, dictionary: Dictionary, pair, positions: Int[Tensor, "node"],  # noqa: F821
                         shifts: Float[Tensor, "node d_in"], metric=None, progress: Progress = silent,
                         span: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, float]:
    """Each node's exact effect, (metric with x[position] += shift in the corrupted run) −
    (the corrupted metric), [node]; and that corrupted metric. Batches of `ROWS_PER_FORWARD`."""
    metric = metric or partial(logit_diff, answer=pair.answer, wrong=pair.wrong)
    site = dictionary.site
    corrupted_metric = float(metric(bridge(pair.corrupted, return_type="logits"))[0])
    out = np.empty(len(positions))
    lo, hi = span
    for start in range(0, len(positions), ROWS_PER_FORWARD):
        rows = slice(start, min(start + ROWS_PER_FORWARD, len(positions)))
        progress(lo + (hi - lo) * start / max(len(positions), 1), f"exact patching: nodes {start + 1}…{rows.stop}")
        pos, shift = positions[rows], shifts[rows]

        def patch(value: Tensor, hook, pos=pos, shift=shift) -> Tensor:  # [rows, pos, ...]
            value = value.clone()
            flat = value.view(value.shape[0], value.shape[1], -1)  # hook_z's heads as one axis
            flat[torch.arange(len(pos)), pos.to(value.device)] += shift.to(value.device, value.dtype)
            return value

        batch = pair.corrupted.expand(len(pos), -1)
        logits = bridge.run_with_hooks(batch, fwd_hooks=[(site.output_hook, patch)], return_type="logits")
        out[rows] = (metric(logits) - corrupted_metric).float().cpu().numpy()
    return out, corrupted_metric
