"""Tiny random dictionaries for the unit tests (SAELens's build_sae_cfg habit: tiny defaults)."""
import torch

from analyses.dictionaries.coder import SparseCoder
from analyses.dictionaries.config import CoderConfig


def random_coder(d_in=8, num_latents=32, k=4, seed=0, **cfg) -> SparseCoder:
    gen = torch.Generator().manual_seed(seed)
    coder = SparseCoder(CoderConfig(d_in=d_in, num_latents=num_latents, k=k, **cfg))
    with torch.no_grad():
        for p in coder.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        coder.normalize_decoder_()
    return coder


def random_inputs(n=64, d_in=8, seed=1) -> torch.Tensor:
    return torch.randn(n, d_in, generator=torch.Generator().manual_seed(seed))
