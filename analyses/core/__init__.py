"""The torch-free core: what a spec is, which kinds exist, what a result holds.

Nothing here imports torch, transformers or TransformerLens (a test holds it to that):
building and checking a spec, listing kinds and reading a cached result stay fast.
"""
