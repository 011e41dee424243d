"""Does a single dictionary latent steer France → Germany as well as the contrast vector?

On the shipped steering preset (`presets.STEERING`: "The capital of France is", the layer-2
difference Germany − France, answer " Berlin" against " Paris"), the contrast vector enters
block 2, i.e. block 1's `hook_resid_post`, where the residual SAE `blocks.1.hook_resid_post`
reads. Two latents are chosen by a stated rule, never by trying them all:

- `cosine`: the latent whose decoder row has the largest cosine with the contrast vector;
- `atp`: the latent with the largest AtP estimate for the pair (Germany prompt clean, France
  prompt corrupted) over that dictionary (`attribution_patching` with `dictionary=`).

Each is added with `method=feature` at the contrast vector's norm (the same size of push) and
at larger coefficients, beside the contrast vector at coefficient 1; each row gives the
metric (logit Berlin − logit Paris at the last position), whether Berlin is the top token,
and the KL on the neutral text. `python -m analyses.embedded.latent_steering` prints them.
"""
from __future__ import annotations

import json

import torch

from analyses import AnalysisSpec
from analyses.dictionaries import lookup
from analyses.embedded.presets import STEERING
from analyses.kinds import attribution_patching, steering
from analyses.kinds.interventions import vectors

SITE = "blocks.1.hook_resid_post"  # = blocks.2.hook_resid_pre, where the preset's vector is added
EXTRA_COEFFS = (20.0, 30.0)  # larger pushes than the contrast vector's norm


def contrast_vector(bridge) -> torch.Tensor:
    preset = STEERING[0]
    layer = int(preset["layer"])
    return vectors.steering_vectors(bridge, "mean_diff", [preset["positive"]], [preset["negative"]], [layer])[layer]


def cosine_latent(dictionary: lookup.Dictionary, vector: torch.Tensor) -> tuple[int, float]:
    w_dec = dictionary.coder.W_dec.detach().float()
    cosines = (w_dec @ vector) / (w_dec.norm(dim=1) * vector.norm())
    return int(cosines.argmax()), float(cosines.max())


def atp_latent(model) -> tuple[int, float]:
    preset = STEERING[0]
    spec = AnalysisSpec(kind="attribution_patching", clean=preset["positive"], corrupted=preset["negative"],
                        answer=preset["answer"], wrong=preset["wrong"], dictionary=SITE, exact=False)
    table = attribution_patching.run(model, spec).tables["latents"]
    best = table[table["node"] == "latent"].sort_values("atp", ascending=False).iloc[0]
    return int(best["latent"]), float(best["atp"])


def compare(model) -> dict:
    bridge = model.bridge
    preset = STEERING[0]
    base = dict(prompt=preset["prompt"], answer=preset["answer"], wrong=preset["wrong"], max_new_tokens=1)
    vector = contrast_vector(bridge)
    norm = float(vector.norm())
    rows = []
    contrast = steering.run(model, AnalysisSpec(kind="steering", **base, positive=preset["positive"],
                                                negative=preset["negative"], layer=preset["layer"], coeff="1"))
    for row in contrast.tables["effects"].itertuples():
        rows.append({"intervention": "contrast vector" if row.coeff else "none", "coeff": row.coeff,
                     "norm": norm * row.coeff, "metric": row.metric, "top1": row.top1, "kl": row.kl})
    dictionary = lookup.load(model, SITE)
    chosen = {"cosine": cosine_latent(dictionary, vector), "atp": atp_latent(model)}
    for rule, (latent, score) in chosen.items():
        coeffs = [norm, *EXTRA_COEFFS]
        result = steering.run(model, AnalysisSpec(kind="steering", **base, method="feature", dictionary=SITE,
                                                  latent=latent, coeff=",".join(f"{c:.4f}" for c in coeffs)))
        for row in result.tables["effects"].itertuples():
            if row.coeff:
                rows.append({"intervention": f"latent {latent} ({rule} {score:.3g})", "coeff": row.coeff,
                             "norm": row.coeff, "metric": row.metric, "top1": row.top1, "kl": row.kl})
    return {"site": SITE, "contrast_norm": norm, "rows": rows}


if __name__ == "__main__":
    from analyses.runtime import models

    print(json.dumps(compare(models.load("default")), indent=1))
