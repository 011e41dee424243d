"""Activations of the token stream at a model's sites, cached to disk one chunk per file.

    <cache>/<model fingerprint[:16]>/<split>-s<seed>-c<n_ctx>/chunk_00012.safetensors
        tokens        [docs, n_ctx] int32
        <hook name>   [docs * (n_ctx - 1), d] float16: every position but BOS, flattened

A chunk is written whole (temporary name, then rename), so an interrupted run loses at most
the chunk in flight and resumes by computing the chunks that are missing. BOS positions are
left out: their activations are outliers (the attention sink) that no dictionary should
spend latents on; splices keep BOS clean for the same reason.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from analyses.dictionaries import sites as st
from analyses.dictionaries.tokens import TokenStream, builder_for

FP16_MAX = 6e4  # stored in float16 below this magnitude (halves the disk), float32 above


def default_cache_dir() -> Path:
    return Path(os.environ.get("ANALYSES_ACTIVATIONS", Path.home() / ".cache" / "analyses-activations"))


class ActivationChunks:
    """The chunks of one (model, split, stream) under `root`, for the hooks of `sites`."""

    def __init__(self, loaded, sites: list[st.Site], stream: TokenStream, split: str, root: Path | None = None):
        self.loaded, self.sites, self.stream, self.split = loaded, sites, stream, split
        self.hooks = sorted({h for s in sites for h in (s.input_hook, s.output_hook)})
        root = Path(root) if root else default_cache_dir()
        self.folder = root / loaded.fingerprint[:16] / f"{split}-s{stream.seed}-c{stream.n_ctx}"
        self._builder = None

    def path(self, index: int) -> Path:
        return self.folder / f"chunk_{index:05d}.safetensors"

    def has(self, index: int) -> bool:
        """True when chunk `index` is on disk with every hook these sites need."""
        if not self.path(index).is_file():
            return False
        from safetensors import safe_open

        with safe_open(str(self.path(index)), framework="pt") as f:
            return set(self.hooks) <= set(f.keys())

    def ensure(self, n_chunks: int, progress=None) -> None:
        """Compute the chunks 0..n_chunks-1 that are not on disk yet."""
        missing = [i for i in range(n_chunks) if not self.has(i)]
        for done, index in enumerate(missing):
            self._write(index)
            if progress:
                progress(done + 1, len(missing))

    def _write(self, index: int) -> None:
        if self._builder is None:
            self._builder = builder_for(self.loaded.tokenizer, self.stream.n_ctx)
        tokens = torch.from_numpy(self.stream.chunk(self._builder, self.split, index))
        # keep whatever another site's run stored in this chunk already
        tensors = load_file(str(self.path(index))) if self.path(index).is_file() else {}
        values = st.read(self.loaded.bridge, tokens, self.sites)
        for hook in self.hooks:
            flat = values[hook][:, 1:].reshape(-1, values[hook].shape[-1]).float()  # drop BOS
            tensors[hook] = flat.half() if flat.abs().max() < FP16_MAX else flat
        tensors["tokens"] = tokens.to(torch.int32)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path(index).with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        tmp.replace(self.path(index))

    def load(self, index: int, site: st.Site) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of chunk `index` for `site`, float32 [tokens, d] each (y is x for an SAE)."""
        tensors = load_file(str(self.path(index)))
        x = tensors[site.input_hook].float()
        return x, tensors[site.output_hook].float() if site.transcode else x

    def tokens(self, index: int) -> np.ndarray:
        return load_file(str(self.path(index)))["tokens"].numpy()
