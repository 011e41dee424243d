"""Each latent's density (the share of held-out tokens it fires on), measured once per
(model, dictionary) and kept on disk: a `features` run shows it beside every latent without
reading the corpus again. It is the latent index's own measure (`scan.scan` over the same
eval-split tokens), so the prompt view and the latent page show the same numbers.

    <activations cache>/densities/<model fp[:16]>-<dictionary fp[:16]>-t<tokens>-s<seed>.npy
"""
from __future__ import annotations

import threading

import numpy as np

from analyses.core.progress import Progress, silent
from analyses.dictionaries.activations import default_cache_dir
from analyses.dictionaries.scan import scan

DENSITY_TOKENS = 100_000  # the latent index's default corpus (its `corpus_tokens`)
_LOCK = threading.Lock()
_KEPT: dict = {}  # path -> rates read in this process (a few KB a dictionary)


def firing_rates(loaded, dictionary, n_tokens: int = DENSITY_TOKENS, seed: int = 0,
                 progress: Progress = silent) -> np.ndarray:
    """[latent] firing rate on `n_tokens` held-out tokens, from disk when measured before."""
    path = (default_cache_dir() / "densities" /
            f"{loaded.fingerprint[:16]}-{dictionary.fingerprint[:16]}-t{n_tokens}-s{seed}.npy")
    with _LOCK:
        if path in _KEPT:
            return _KEPT[path]
        if path.is_file():
            _KEPT[path] = np.load(path)
            return _KEPT[path]
    rates = scan(loaded, dictionary.site, dictionary.coder, n_tokens, seed, progress=progress).density
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, rates)
    tmp.replace(path)  # whole or not at all: another process may read it now
    with _LOCK:
        _KEPT[path] = rates
    return rates
