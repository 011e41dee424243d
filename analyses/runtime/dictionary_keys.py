"""What a result depends on besides its spec and model: the dictionaries it reads, by content.

A graph reads one transcoder per layer from a folder that can be retrained in place; the
result key then has to change with them. The signature is each weights and config file's
name, size and modification time (a retrain rewrites them), hashed: cheap enough for every
cache lookup, and torch-free (a cache hit imports no torch).
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def transcoders_folder(spec) -> Path:
    """The folder holding the spec's `blocks.L.mlp/` transcoders (`transcoders=`, or the model's own)."""
    from analyses.dictionaries import registry

    if spec.transcoders:
        return Path(spec.transcoders).expanduser().resolve()
    return registry.default_folder(spec.model, "blocks.0.mlp").parent


def transcoders_content(spec) -> str:
    root = transcoders_folder(spec)
    files = sorted(p for pattern in ("blocks.*.mlp/*.safetensors", "blocks.*.mlp/cfg.json")
                   for p in root.glob(pattern))
    signature = [(p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return "transcoders:" + hashlib.sha256(repr(signature).encode()).hexdigest()[:16]
