"""Tiny transcoders and replacement models for the graph tests."""
import torch

from analyses.dictionaries.coder import SparseCoder
from analyses.dictionaries.config import CoderConfig


def random_transcoders(bridge, num_latents=48, k=6, seed=0, skip=False) -> list[SparseCoder]:
    """One random transcoder per layer of `bridge` (encoder rows scaled so latents fire)."""
    coders = []
    d = bridge.cfg.d_model
    for layer in range(bridge.cfg.n_layers):
        gen = torch.Generator().manual_seed(seed + layer)
        coder = SparseCoder(CoderConfig(d_in=d, num_latents=num_latents, k=k, transcode=True,
                                        skip_connection=skip, site=f"blocks.{layer}.mlp"))
        with torch.no_grad():
            for p in coder.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            coder.normalize_decoder_()
        coders.append(coder.eval())
    return coders
