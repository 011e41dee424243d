"""A dictionary directory's file names and its JSON files, read without torch (the app's
dictionaries page and the card read them; `formats` reads and writes the weights)."""
from __future__ import annotations

import json
from pathlib import Path

SPARSIFY_WEIGHTS = "sae.safetensors"
SAELENS_WEIGHTS = "sae_weights.safetensors"
CONFIG = "cfg.json"
METRICS = "metrics.json"


def read_config(folder: Path | str) -> dict:
    return json.loads((Path(folder) / CONFIG).read_text())


def read_metrics(folder: Path | str) -> dict | None:
    path = Path(folder) / METRICS
    return json.loads(path.read_text()) if path.is_file() else None


def write_metrics(folder: Path | str, metrics: dict) -> None:
    Path(folder, METRICS).write_text(json.dumps(metrics, indent=1, allow_nan=False) + "\n")
