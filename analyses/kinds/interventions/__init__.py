"""Interventions: forward hooks that change what a model computes, scoped to one run.

- `positions`: which absolute positions a forward pass reads (generation with a KV cache
  feeds one token at a time, so a hook cannot tell from its input alone);
- `ablation`: knock out heads, attention outputs or MLP outputs (zero or mean);
- `vectors`: steering vectors built from contrast texts, and what they say through the
  unembedding;
- `generation`: generate under hooks, and read each generated token's log-probability;
- `neutral`: the text that means, the mean-centred vector and the KL are measured on.

Every hook is added with `bridge.hooks(...)`, which removes exactly the hooks it added
when the block ends: nothing is left on the shared model.
"""
