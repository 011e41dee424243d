"""Where dictionaries live and how to list them: data/dictionaries/<model>/<site>/ (shipped
ones and any trained with the default --out), each a sparsify-format directory with metrics.json."""
from __future__ import annotations

import json
import re
from pathlib import Path

from analyses.dictionaries import files as formats

ROOT = Path(__file__).resolve().parents[2] / "data" / "dictionaries"


def model_slug(ref: str) -> str:
    """A folder name for a model reference: the embedded model's or checkpoint's own name,
    a hub id with '/' as '--'."""
    from analyses.runtime import models

    resolved = models.resolve(ref)
    if resolved.path is not None:
        return resolved.path.stem if resolved.path.is_file() else resolved.path.name
    return re.sub(r"[^A-Za-z0-9._-]", "--", resolved.hub_id)


def default_folder(ref: str, site: str) -> Path:
    return ROOT / model_slug(ref) / site


def listing(root: Path = ROOT) -> list[dict]:
    """One row per dictionary directory under `root`: its config's essentials and headline metrics."""
    rows = []
    for cfg_path in sorted(Path(root).glob("**/" + formats.CONFIG)):
        folder = cfg_path.parent
        cfg = json.loads(cfg_path.read_text())
        metrics = formats.read_metrics(folder) or {}
        rows.append({"path": str(folder), "site": cfg.get("site") or cfg.get("hook_name", ""),
                     "model": cfg.get("model", ""), "latents": cfg.get("num_latents") or cfg.get("d_sae"),
                     "k": cfg.get("k"), "transcode": cfg.get("transcode", False),
                     "tokens_seen": cfg.get("tokens_seen"),
                     **{m: metrics.get(m) for m in ("explained_variance", "l0", "ce_recovered", "dead_share")}})
    return rows
