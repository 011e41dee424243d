"""Who may load what: the operator's allowlist and parameter cap, checked before a load.

A public server must not download whatever hub model a visitor names. Two settings,
both unset by default (local use: everything loads, as before):

  ANALYSES_MODEL_ALLOWLIST   comma-separated references or glob patterns (`gpt2`,
                             `EleutherAI/pythia-*`, `/srv/models/*`): a hub id must match one,
                             and so must a local directory or llama2.c file (by the reference
                             as typed or by its resolved path) — a shared server's operator
                             wants arbitrary paths closed too.
  ANALYSES_MAX_PARAMS        the most parameters a model may have (`2e9`), counted from its
                             config.json alone (the model built on PyTorch's meta device: no
                             weights read or downloaded); a llama2.c file from its size.

The embedded models (shipped in data/models/, no download) are always allowed. A model
whose parameters cannot be counted is refused under a cap: the cap is a safeguard.
"""
from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Callable
from pathlib import Path

from analyses.core.errors import ModelError

ALLOWLIST_ENV = "ANALYSES_MODEL_ALLOWLIST"
MAX_PARAMS_ENV = "ANALYSES_MAX_PARAMS"
LLAMA2C_HEADER_BYTES = 28  # seven int32s; the rest of the file is float32 weights


def allowlist() -> list[str] | None:
    """The operator's patterns, or None when every reference is allowed."""
    patterns = [p.strip() for p in os.environ.get(ALLOWLIST_ENV, "").split(",") if p.strip()]
    return patterns or None


def max_params() -> int | None:
    """The operator's parameter cap, or None for none."""
    text = os.environ.get(MAX_PARAMS_ENV, "").strip()
    if not text:
        return None
    try:
        cap = float(text)
    except ValueError:
        cap = -1.0
    if not cap > 0 or cap == float("inf"):
        raise ModelError(f"{MAX_PARAMS_ENV}={text!r} on this server is not a number of parameters "
                         "(e.g. 2e9); ask its operator to fix or unset it")
    return int(cap)


def check(ref: str, resolved, config_file: Callable[[], Path] | None = None) -> None:
    """Refuse `ref` (resolved by `models.resolve`) when the operator's rules forbid it.
    `config_file()` gives the model's config.json (for a hub id it may fetch that one file)."""
    if resolved.source == "embedded":
        return
    patterns = allowlist()
    if patterns is not None and not _matches(patterns, ref, resolved):
        raise ModelError(f"model {ref!r} is not allowed on this server: {ALLOWLIST_ENV} allows only "
                         f"{', '.join(patterns)}")
    cap = max_params()
    if cap is None:
        return
    count = _count(ref, resolved, config_file)
    if count > cap:
        raise ModelError(f"model {ref!r} has {count:,} parameters; this server loads at most "
                         f"{cap:,} ({MAX_PARAMS_ENV})")


def _matches(patterns: list[str], ref: str, resolved) -> bool:
    names = {ref, resolved.location}
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns)


def _count(ref: str, resolved, config_file) -> int:
    if resolved.source == "llama2c":
        return (resolved.path.stat().st_size - LLAMA2C_HEADER_BYTES) // 4
    path = config_file() if config_file is not None else resolved.path / "config.json"
    try:
        return parameter_count(path)
    except Exception as err:  # noqa: BLE001 - any architecture transformers cannot build
        raise ModelError(f"model {ref!r}: its parameters cannot be counted from its config "
                         f"({type(err).__name__}), and this server caps them ({MAX_PARAMS_ENV})") from err


def parameter_count(config_json: Path) -> int:
    """Parameters of the causal LM a config.json describes, tied ones once: the model is
    built on the meta device (shapes only, no memory), as transformers would build it."""
    stat = config_json.stat()
    return _parameter_count(str(config_json), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _parameter_count(config_json: str, mtime_ns: int, size: int) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_json)
    with torch.device("meta"):
        return int(AutoModelForCausalLM.from_config(config).num_parameters())
