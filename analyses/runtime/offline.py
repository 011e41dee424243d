"""Decide, once and before transformers is imported, whether the Hugging Face hub is reachable.

`transformers` and `huggingface_hub` read `HF_HUB_OFFLINE` when they are imported. Without
it, a machine with no network retries every hub call for ~23 s before failing; with it, a
name that is not in the local cache fails at once. So everything that is about to import
them calls `ensure_offline_if_unreachable()` first (`analyses.kinds`, `analyses.embedded`,
the hub look-ups in `models`): one TCP connection attempt, ~1.5 s at worst, once per
process, and only when the user has not already said (`HF_HUB_OFFLINE=0` or `=1`) what they
want. Specs, the catalogue and cached results never pay it.
"""
from __future__ import annotations

import os
import socket

HUB_HOST = "huggingface.co"
HUB_PORT = 443
CONNECT_TIMEOUT_S = 1.5


def hub_reachable(host: str = HUB_HOST, port: int = HUB_PORT, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """True when one TCP connection to the hub opens within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:  # DNS failure, refused, unreachable, timed out
        return False


_decided = False


def ensure_offline_if_unreachable() -> None:
    """Set `HF_HUB_OFFLINE=1` when the user left it unset and the hub cannot be reached
    (asked once per process)."""
    global _decided
    if _decided or "HF_HUB_OFFLINE" in os.environ:
        return
    _decided = True
    if not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
