"""Dictionary references: what a spec's `dictionary=` names, resolved without torch.

A reference is a site name (`blocks.1.hook_resid_post`, `blocks.1.attn.hook_z`,
`blocks.1.mlp`), read as the model's own dictionary at that site under
data/dictionaries/<model>/<site>/ (the registry's folder), or a local directory in
sparsify's or SAELens's format, inside the folders models may be loaded from. Its
`fingerprint` hashes the directory's config and weights, so a result keyed by it is never
served for another dictionary (a retrained one, a different download) at the same name.
Resolving and fingerprinting import no torch: a cached result answers without it.
"""
from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

from analyses.core.errors import UserError

SITE_NAME = re.compile(r"^blocks\.\d+\.(hook_resid_post|attn\.hook_z|mlp)$")  # as sites.parse reads them
CONFIG = "cfg.json"
WEIGHTS = ("sae.safetensors", "sae_weights.safetensors")  # sparsify's, SAELens's
_HASH_CHUNK = 1 << 20
_FINGERPRINTS: dict[tuple, str] = {}
_LOCK = threading.Lock()


def resolve(model: str, dictionary: str) -> Path:
    """The directory `dictionary` names for `model` (a UserError naming `dictionary` when
    there is none)."""
    name = (dictionary or "").strip()
    if SITE_NAME.match(name):
        from analyses.dictionaries import registry

        folder = registry.default_folder(model, name)
        if not (folder / CONFIG).is_file():
            raise UserError(f"dictionary: the model {model!r} has no dictionary at {name} "
                            f"(looked in {folder}); train one with `python -m analyses dictionaries "
                            f"train --model {model} --site {name}`, or give a directory")
        return folder
    return _local_directory(name)


def _local_directory(name: str) -> Path:
    from analyses.dictionaries import registry
    from analyses.runtime import models

    if not name:
        raise UserError("dictionary: empty; give a site name (blocks.1.hook_resid_post) or a directory")
    path = Path(name).expanduser()
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()
    roots = [*models.allowed_roots(), registry.ROOT.resolve()]
    if not any(path.is_relative_to(root) for root in roots):
        raise UserError(f"dictionary: {name!r} is neither a site name (blocks.L.hook_resid_post, "
                        f"blocks.L.attn.hook_z, blocks.L.mlp) nor a directory inside the allowed "
                        f"folders ({', '.join(map(str, roots))})")
    if not (path / CONFIG).is_file():
        raise UserError(f"dictionary: {name!r} is not a dictionary directory (no {CONFIG} in {path})")
    return path


def fingerprint(model: str, dictionary: str) -> str:
    """sha256 over the dictionary's cfg.json and weights, cached until a file changes."""
    folder = resolve(model, dictionary)
    files = [folder / CONFIG, *(folder / w for w in WEIGHTS if (folder / w).is_file())]
    key = tuple((str(p), *_signature(p)) for p in files)
    with _LOCK:
        if key in _FINGERPRINTS:
            return _FINGERPRINTS[key]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    with _LOCK:
        _FINGERPRINTS[key] = digest.hexdigest()
    return _FINGERPRINTS[key]


def _signature(path: Path) -> tuple:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino
