"""Sparse dictionaries: TopK sparse autoencoders (SAEs) and transcoders over a model's sites.

A dictionary reads one site of a model (a TransformerLens hook name) as a sparse sum of
learned directions: `encode(x) -> (top_acts, top_indices)` keeps the k largest ReLU
pre-activations (k-sparse autoencoders, Makhzani & Frey 2013; Gao et al. 2024, "Scaling and
evaluating sparse autoencoders"), `decode` sums those latents' unit-norm decoder rows. A
transcoder (Dunefsky et al. 2024) encodes an MLP's input and decodes its output.

Modules (torch lives here, never in analyses/core):
- `config`      CoderConfig, the dataclass saved as cfg.json beside the weights
- `coder`       SparseCoder: encode / decode / reconstruct
- `formats`     read and write EleutherAI sparsify's directories, read SAELens's
- `sites`       site names -> hook names, reading and splicing activations on a bridge
- `tokens`      the token stream a dictionary trains and is evaluated on
- `activations` activations from that stream, cached to disk in chunks (resumable)
- `train`       the TopK trainer (Adam, AuxK dead-latent loss, unit-norm decoder)
- `metrics`     L0, explained variance, CE recovered, KL, dead/dense latents, lexicon F1
- `registry`    where dictionaries live (data/dictionaries/<model>/<site>/) and listing them
"""
