"""CoderConfig: what a dictionary is, saved as `cfg.json` beside its weights.

The first fields are EleutherAI sparsify's own (`SparseCoderConfig` plus `d_in`), so a
directory we write loads in sparsify unchanged (it drops fields it does not know); the rest
say where the dictionary belongs and how it was made.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

SPARSIFY_FIELDS = ("activation", "expansion_factor", "normalize_decoder", "num_latents", "k",
                   "multi_topk", "skip_connection", "transcode", "d_in")


ENCODINGS = ("topk", "matching_pursuit")


@dataclass
class CoderConfig:
    d_in: int  # width of the site read (d_model; n_heads * d_head for attention outputs)
    num_latents: int = 1024  # 8x the embedded model's d_model: every lexicon category fits
    k: int = 16  # latents active per token (L0): the bound for explained variance
    transcode: bool = False  # True: predict the site's output (MLP out) from its input
    skip_connection: bool = False  # a linear skip x @ W_skip.T added to the output (transcoders)
    normalize_decoder: bool = True  # decoder rows kept at unit norm (autoencoders only)
    activation: str = "topk"  # the only activation we encode with (sparsify also has groupmax)
    expansion_factor: int = 0  # sparsify's alternative to num_latents; 0: num_latents is given
    multi_topk: bool = False  # sparsify's Multi-TopK loss: not used here, kept for its format
    # subtract b_dec from the input before encoding; None: sparsify's rule (autoencoders do,
    # transcoders do not). SAELens says it per SAE (apply_b_dec_to_input).
    center_input: bool | None = None
    # where it belongs and how it was made (ignored by sparsify)
    site: str = ""  # a site name, see sites.py: blocks.1.hook_resid_post, blocks.1.attn.hook_z, blocks.1.mlp
    model: str = ""  # the model reference it was trained on ("default", a hub id, a path)
    model_fingerprint: str = ""  # models.fingerprint(model): the weights it belongs to
    seed: int = 0  # initialisation and token-stream seed: one seed, one dictionary
    tokens_seen: int = 0  # training tokens so far (a resumed run counts on)
    # distinct tokens those were drawn from: training cycles over this pool when tokens_seen
    # is larger (epochs); 0: not recorded (every token seen once)
    distinct_tokens: int = 0
    kl_finetune_tokens: int = 0  # tokens of KL fine-tuning after the MSE training (finetune.py)
    kl_coeff: float = 0.0  # the KL term's weight in that fine-tune
    kl_decoder_only: bool = False  # that fine-tune moved only the decoder (the encoder as MSE-trained)
    # Matryoshka training (Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka
    # SAEs"): for each m here, latents 0..m-1 alone must also reconstruct the target, so the
    # first latents learn general features (a word's category) rather than splitting them by
    # context. [] plain TopK. Encoding is TopK over every latent either way: this says how the
    # dictionary was trained (train.py's loss reads it), not how it reads
    matryoshka_prefixes: list[int] = field(default_factory=list)
    # then this many tokens trained on the whole dictionary's loss alone, the prefix terms
    # dropped (pipeline.release_site): the prefixes' general latents stay, and the variance
    # they cost comes back. Later stages (a KL fine-tune) train without the prefix terms too
    matryoshka_release_tokens: int = 0
    # how a token's code is found: "topk" (the encoder's k largest pre-activations), or
    # "matching_pursuit" (k greedy steps over the decoder's rows, each taking the row most
    # aligned with what is left unexplained: MP-SAEs, Costa et al. 2025; autoencoders only).
    # sparsify knows only the first: a pursuit dictionary's encoder weights are its decoder
    # rows, so sparsify reads it as a TopK of one projection, the pursuit's first step
    encoding: str = "topk"
    mp_finetune_tokens: int = 0  # tokens the decoder was trained through the pursuit (pursuit.py)
    # then this many tokens of KL fine-tuning through the pursuit (pursuit.pursuit_kl_finetune),
    # the KL term weighted mp_kl_coeff against FVU
    mp_kl_finetune_tokens: int = 0
    mp_kl_coeff: float = 0.0

    def __post_init__(self):
        if self.d_in <= 0 or self.num_latents <= 0:
            raise ValueError(f"d_in and num_latents must be positive, got {self.d_in}, {self.num_latents}")
        if not 0 < self.k <= self.num_latents:
            raise ValueError(f"k must be in 1..num_latents ({self.num_latents}), got {self.k}")
        prefixes = list(self.matryoshka_prefixes)
        if prefixes != sorted(set(prefixes)) or any(not 0 < m < self.num_latents for m in prefixes):
            raise ValueError(f"matryoshka_prefixes must be increasing sizes in 1..num_latents - 1 "
                             f"({self.num_latents - 1}), got {prefixes}")
        if self.matryoshka_release_tokens and not prefixes:
            raise ValueError("matryoshka_release_tokens needs matryoshka_prefixes: only a Matryoshka dictionary "
                             "has prefix terms to drop")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        if self.encoding == "matching_pursuit" and self.transcode:
            raise ValueError("matching pursuit reconstructs its own input: a transcoder cannot use it")
        if self.activation != "topk":
            raise ValueError(f"only TopK dictionaries are supported, got activation={self.activation!r}")

    @property
    def prefixes_in_loss(self) -> list[int]:
        """The Matryoshka prefixes training's loss still applies: none once released."""
        return [] if self.matryoshka_release_tokens else list(self.matryoshka_prefixes)

    @property
    def centers_input(self) -> bool:
        return (not self.transcode) if self.center_input is None else self.center_input

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CoderConfig":
        """From a cfg.json: unknown fields are dropped (as sparsify does), so newer files load."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
