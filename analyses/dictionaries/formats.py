"""Dictionaries on disk: EleutherAI sparsify's format (read and written) and SAELens's (read).

sparsify (one directory per hookpoint):
    cfg.json          SparseCoderConfig fields + d_in (we add site, model, seed... which it drops)
    sae.safetensors   encoder.weight [latents, d_in], encoder.bias [latents], W_dec [latents, d_in],
                      b_dec [d_in], W_skip [d_in, d_in] where skip_connection
SAELens (`SAE.save_model`):
    cfg.json          d_in, d_sae, architecture "topk" + k (SAELens 6) or activation_fn_str "topk" +
                      activation_fn_kwargs {k} (SAELens 5), apply_b_dec_to_input, hook_name ...
    sae_weights.safetensors   W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]
We write sparsify's format only: it is the one our module's parameters mirror.
A `metrics.json` beside the weights holds the dictionary's measured metrics (metrics.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from analyses.core.errors import UserError
from analyses.dictionaries.coder import SparseCoder
from analyses.dictionaries.config import CoderConfig
from analyses.dictionaries.files import (  # noqa: F401 - formats.read_metrics etc. stay importable
    CONFIG,
    METRICS,
    SAELENS_WEIGHTS,
    SPARSIFY_WEIGHTS,
    read_metrics,
    write_metrics,
)


def save(coder: SparseCoder, folder: Path) -> Path:
    """Write `coder` in sparsify's format (cfg.json + sae.safetensors); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().contiguous().cpu() for name, p in coder.state_dict().items()}
    # written to a temporary name first, so a reader never sees half a file
    tmp = folder / (SPARSIFY_WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(folder / SPARSIFY_WEIGHTS)
    (folder / CONFIG).write_text(json.dumps(coder.cfg.to_dict(), indent=1) + "\n")
    return folder


def load(folder: Path | str, dtype: torch.dtype = torch.float32) -> SparseCoder:
    """A dictionary from a local directory in sparsify's or SAELens's format (found by its
    weights file's name). Weights stored in half precision are widened to `dtype`."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise UserError(f"{folder}: not a dictionary directory (no {CONFIG})")
    raw = json.loads((folder / CONFIG).read_text())
    if (folder / SPARSIFY_WEIGHTS).is_file():
        return _load_sparsify(raw, folder / SPARSIFY_WEIGHTS, dtype)
    if (folder / SAELENS_WEIGHTS).is_file():
        return _load_saelens(raw, folder / SAELENS_WEIGHTS, dtype)
    raise UserError(f"{folder}: neither {SPARSIFY_WEIGHTS} (sparsify) nor {SAELENS_WEIGHTS} (SAELens) is there")


def _load_sparsify(raw: dict, weights: Path, dtype: torch.dtype) -> SparseCoder:
    if raw.get("activation", "topk") != "topk":
        raise UserError(f"{weights.parent}: activation {raw['activation']!r} is not supported (TopK only)")
    raw = dict(raw)
    if not raw.get("num_latents"):  # sparsify's expansion_factor form
        raw["num_latents"] = raw["d_in"] * raw.get("expansion_factor", 32)
    tensors = load_file(str(weights))
    coder = SparseCoder(CoderConfig.from_dict(raw), dtype=dtype)
    coder.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True)
    return coder


def _saelens_k(raw: dict, folder: Path) -> int:
    architecture = raw.get("architecture") or raw.get("activation_fn_str") or raw.get("activation_fn")
    if architecture != "topk":
        raise UserError(f"{folder}: SAELens architecture {architecture!r} is not supported (TopK only)")
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    if not k:
        raise UserError(f"{folder}: a TopK SAELens config without k")
    return int(k)


def _load_saelens(raw: dict, weights: Path, dtype: torch.dtype) -> SparseCoder:
    folder = weights.parent
    k = _saelens_k(raw, folder)
    for field, neutral in (("normalize_activations", "none"), ("rescale_acts_by_decoder_norm", False)):
        if raw.get(field, neutral) not in (neutral, None):
            raise UserError(f"{folder}: SAELens {field}={raw[field]!r} is not supported")
    tensors = load_file(str(weights))
    metadata = raw.get("metadata") or {}
    cfg = CoderConfig(d_in=int(raw["d_in"]), num_latents=int(raw["d_sae"]), k=k,
                      site=raw.get("hook_name") or metadata.get("hook_name") or "",
                      model=raw.get("model_name") or metadata.get("model_name") or "",
                      center_input=bool(raw.get("apply_b_dec_to_input", True)),
                      normalize_decoder=False)  # a published decoder is read as it is
    coder = SparseCoder(cfg, dtype=dtype)
    state = {"encoder.weight": tensors["W_enc"].T, "encoder.bias": tensors["b_enc"],
             "W_dec": tensors["W_dec"], "b_dec": tensors["b_dec"]}
    coder.load_state_dict({name: t.to(dtype).contiguous() for name, t in state.items()}, strict=True)
    return coder
