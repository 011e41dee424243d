"""A spec's `dictionary=` field -> the dictionary it names, checked against the model it runs on.

The field holds a site name (`blocks.1.hook_resid_post`: the dictionary for that site under
`data/dictionaries/<model>/`, where the shipped ones and `dictionaries train`'s default output
live) or a local directory in sparsify's or SAELens's format. A dictionary trained on other
weights (its `model_fingerprint` differs from the model's) or of another width is refused,
naming the field: its latents would mean nothing on this model.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from analyses.core.errors import SpecError, UserError
from analyses.dictionaries import formats, registry, sites
from analyses.dictionaries.coder import SparseCoder

_LOADED: dict[tuple, SparseCoder] = {}  # (folder, weights mtime) -> coder: a retrained one reloads
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Dictionary:
    site: sites.Site
    coder: SparseCoder  # float32, on the model's device
    folder: Path

    @property
    def label(self) -> str:
        return f"{self.site.name} ({self.coder.num_latents} latents, k {self.coder.cfg.k})"


def is_site(text: str) -> bool:
    try:
        sites.parse(text)
    except UserError:
        return False
    return True


def folder_of(model_ref: str, text: str) -> Path:
    """Where the field's dictionary lives: a site name's default folder, or the directory given."""
    text = text.strip()
    return registry.default_folder(model_ref, text) if is_site(text) else Path(text).expanduser()


def load(model, text: str, field: str = "dictionary") -> Dictionary:
    """The dictionary `text` names for `model` (a LoadedModel), on the model's device."""
    bridge = model.bridge
    folder = folder_of(model.ref, text)
    if not (folder / formats.CONFIG).is_file():
        raise SpecError(field, f"no dictionary at {folder} (give a site such as "
                               "blocks.1.hook_resid_post with a dictionary trained for this model, "
                               "or a dictionary directory)")
    raw = json.loads((folder / formats.CONFIG).read_text())
    site_name = raw.get("site") or raw.get("hook_name") or (text.strip() if is_site(text) else "")
    try:
        site = sites.parse(site_name, int(bridge.cfg.n_layers))
    except UserError as err:
        raise SpecError(field, f"{folder}: {err}") from None
    trained_on = raw.get("model_fingerprint")
    if trained_on and trained_on != model.fingerprint:
        raise SpecError(field, f"{folder} was trained on other weights (fingerprint {trained_on[:12]}…, "
                               f"this model's is {model.fingerprint[:12]}…)")
    coder = _cached(folder)
    width = sites.site_width(site, bridge.cfg)
    if coder.cfg.d_in != width:
        raise SpecError(field, f"{folder} reads {coder.cfg.d_in} dimensions; {site.name} has {width} here")
    device = next(bridge.parameters()).device
    return Dictionary(site=site, coder=coder.to(device), folder=folder)


def _cached(folder: Path) -> SparseCoder:
    weights = next((folder / name for name in (formats.SPARSIFY_WEIGHTS, formats.SAELENS_WEIGHTS)
                    if (folder / name).is_file()), folder)
    key = (str(folder.resolve()), weights.stat().st_mtime_ns if weights.exists() else 0)
    with _LOCK:
        if key not in _LOADED:
            coder = formats.load(folder)
            coder.requires_grad_(False).eval()
            _LOADED[key] = coder
        return _LOADED[key]
