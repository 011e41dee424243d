"""llama2.c checkpoints, converted in memory to a Hugging Face `LlamaForCausalLM`.

Karpathy's llama2.c (https://github.com/karpathy/llama2.c) writes its models as one flat
file. The legacy ("v0") format that `run.c` reads is seven little-endian int32

    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len

(a negative `vocab_size` means the classifier is NOT shared with the token embedding),
then float32 arrays, each a PyTorch `Linear.weight` ([out, in]) where it is a matrix:

    token_embedding [V, d]       rms_att [L, d]          wq [L, d, d]
    wk [L, kv_dim, d]            wv [L, kv_dim, d]       wo [L, d, d]
    rms_ffn [L, d]               w1 [L, hidden, d]       w2 [L, d, hidden]
    w3 [L, hidden, d]            rms_final [d]
    freq_cis_real, freq_cis_imag [seq_len, head_dim/2]   (unused: recomputed)
    wcls [V, d]                  (only when vocab_size < 0)

The architecture is Llama 2's: RMSNorm (eps 1e-5), SwiGLU MLP `w2(silu(w1 x) * w3 x)`,
grouped-query attention, rotary embeddings with base 10000, no biases.

One real difference from a Hugging Face Llama: llama2.c rotates ADJACENT pairs of each
head's query/key dimensions (2k, 2k+1) by angle pos * 10000^(-2k/head_dim), while Hugging
Face's `rotate_half` pairs dimension k with k + head_dim/2 at the same angle. Reordering
the rows of wq and wk within each head — evens first, then odds — turns one into the
other; attention scores are unchanged because q and k are reordered alike. This is the
permutation Hugging Face's own Llama conversion applies to Meta's checkpoints.

The tokenizer is the SentencePiece model saved beside the checkpoint (`tokenizer.model`
or `tok<V>.model`); it is wrapped so that `tokenizer(text)` is exactly SentencePiece's
`encode(text)` with BOS (id 1) in front — special-token strings such as "<s>" typed in a
prompt are plain text, as in llama2.c.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analyses.core.errors import ModelError

HEADER = struct.Struct("<7i")  # dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
FLOAT_BYTES = 4
V1_MAGIC = 0x616B3432  # "ak42": llama2.c's newer export formats (v1 fp32, v2 int8), not read here
RMS_NORM_EPS = 1e-5  # hard-coded in llama2.c's model.py and run.c
ROPE_THETA = 10000.0
BOS_ID, EOS_ID, UNK_ID = 1, 2, 0  # SentencePiece's ids in every llama2.c tokenizer


@dataclass(frozen=True)
class Llama2cConfig:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int  # always positive here; the sign in the file is `shared_classifier`
    seq_len: int
    shared_classifier: bool  # True: the output classifier is the token embedding

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def array_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The float32 arrays of the file, in file order, with their shapes."""
        d, h, L, V, kv = self.dim, self.hidden_dim, self.n_layers, self.vocab_size, self.kv_dim
        shapes = [
            ("token_embedding", (V, d)), ("rms_att", (L, d)), ("wq", (L, d, d)),
            ("wk", (L, kv, d)), ("wv", (L, kv, d)), ("wo", (L, d, d)), ("rms_ffn", (L, d)),
            ("w1", (L, h, d)), ("w2", (L, d, h)), ("w3", (L, h, d)), ("rms_final", (d,)),
            ("freq_cis_real", (self.seq_len, self.head_dim // 2)),
            ("freq_cis_imag", (self.seq_len, self.head_dim // 2)),
        ]
        if not self.shared_classifier:
            shapes.append(("wcls", (V, d)))
        return shapes

    def file_bytes(self) -> int:
        return HEADER.size + FLOAT_BYTES * sum(int(np.prod(s)) for _, s in self.array_shapes())


def read_config(path: Path) -> Llama2cConfig:
    """Read and check the header of a legacy llama2.c checkpoint (28 bytes, never the weights)."""
    with open(path, "rb") as f:
        head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        raise ModelError(f"{path} is not a llama2.c checkpoint: only {len(head)} bytes")
    if struct.unpack("<I", head[:4])[0] == V1_MAGIC:
        raise ModelError(f"{path} is a llama2.c v1/v2 export (magic 'ak42'); only the legacy v0 "
                         "format is read: export with `python export.py --version 0`")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = HEADER.unpack(head)
    cfg = Llama2cConfig(dim, hidden, n_layers, n_heads, n_kv, abs(vocab), seq_len, vocab > 0)
    sizes_ok = min(dim, hidden, n_layers, n_heads, n_kv, abs(vocab), seq_len) > 0
    if not (sizes_ok and dim % n_heads == 0 and n_heads % n_kv == 0 and cfg.head_dim % 2 == 0):
        raise ModelError(f"{path} is not a llama2.c checkpoint: implausible header "
                         f"(dim={dim} hidden_dim={hidden} n_layers={n_layers} n_heads={n_heads} "
                         f"n_kv_heads={n_kv} vocab_size={vocab} seq_len={seq_len})")
    actual = path.stat().st_size
    if actual != cfg.file_bytes():
        raise ModelError(f"{path} has {actual} bytes; a llama2.c v0 checkpoint with this header "
                         f"has {cfg.file_bytes()} (truncated, or another format)")
    return cfg


def read_arrays(path: Path) -> tuple[Llama2cConfig, dict[str, np.ndarray]]:
    """The config and every float32 array of the file, by llama2.c's names (shapes above)."""
    cfg = read_config(path)
    flat = np.fromfile(path, dtype="<f4", offset=HEADER.size)  # [all floats]
    arrays, start = {}, 0
    for name, shape in cfg.array_shapes():
        n = int(np.prod(shape))
        arrays[name] = flat[start:start + n].reshape(shape)
        start += n
    return cfg, arrays


def find_tokenizer(path: Path, vocab_size: int | None = None) -> Path:
    """The SentencePiece model beside a checkpoint: `tokenizer.model`, else `tok<V>.model`,
    else the only `tok*.model` there."""
    folder = path.parent
    preferred = [folder / "tokenizer.model"]
    if vocab_size is not None:
        preferred.append(folder / f"tok{vocab_size}.model")
    for candidate in preferred:
        if candidate.is_file():
            return candidate
    others = sorted(folder.glob("tok*.model"))
    if len(others) == 1:
        return others[0]
    if not others:
        raise ModelError(f"no SentencePiece tokenizer beside {path}: put its `tokenizer.model` "
                         f"(or `tok{vocab_size or '<V>'}.model`) in {folder}")
    names = ", ".join(p.name for p in others)
    raise ModelError(f"several tokenizers beside {path} ({names}): name the right one "
                     "`tokenizer.model`")


def content_files(path: Path) -> tuple[Path, Path]:
    """The files whose bytes define the model: the checkpoint and its tokenizer."""
    return path, find_tokenizer(path, read_config(path).vocab_size)


def hf_config(cfg: Llama2cConfig):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
        max_position_embeddings=cfg.seq_len, rms_norm_eps=RMS_NORM_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        tie_word_embeddings=cfg.shared_classifier, hidden_act="silu",
        attention_bias=False, mlp_bias=False,
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=None,
        architectures=["LlamaForCausalLM"],
    )


def interleaved_to_halves(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the output rows of a q or k projection from llama2.c's rotary layout to HF's.

    w: [n_heads * head_dim, d_in]. Within each head, row 2k+j (pair k, member j) moves to
    j * head_dim/2 + k: evens first, then odds.
    """
    rows, d_in = w.shape
    half = rows // n_heads // 2
    return w.reshape(n_heads, half, 2, d_in).transpose(1, 2).reshape(rows, d_in)


def hf_state_dict(cfg: Llama2cConfig, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Hugging Face `LlamaForCausalLM` parameter names -> float32 tensors."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    sd = {"model.embed_tokens.weight": t(arrays["token_embedding"]),  # [V, d]
          "model.norm.weight": t(arrays["rms_final"])}  # [d]
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"] if cfg.shared_classifier else t(arrays["wcls"])
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = t(arrays["rms_att"][i])
        sd[p + "self_attn.q_proj.weight"] = interleaved_to_halves(t(arrays["wq"][i]), cfg.n_heads)
        sd[p + "self_attn.k_proj.weight"] = interleaved_to_halves(t(arrays["wk"][i]), cfg.n_kv_heads)
        sd[p + "self_attn.v_proj.weight"] = t(arrays["wv"][i])
        sd[p + "self_attn.o_proj.weight"] = t(arrays["wo"][i])
        sd[p + "post_attention_layernorm.weight"] = t(arrays["rms_ffn"][i])
        sd[p + "mlp.gate_proj.weight"] = t(arrays["w1"][i])  # silu branch
        sd[p + "mlp.down_proj.weight"] = t(arrays["w2"][i])
        sd[p + "mlp.up_proj.weight"] = t(arrays["w3"][i])  # linear branch
    return sd


def to_hf_model(path: Path):
    """A float32 `LlamaForCausalLM` on the CPU, in eval mode, with the checkpoint's weights."""
    from transformers import LlamaForCausalLM

    cfg, arrays = read_arrays(path)
    model = LlamaForCausalLM(hf_config(cfg))
    state = hf_state_dict(cfg, arrays)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if cfg.shared_classifier else set()
    if unexpected or set(missing) - tied:
        raise ModelError(f"cannot convert {path}: missing {missing}, unexpected {unexpected}")
    if cfg.shared_classifier:
        model.tie_weights()
    return model.eval()


def load_tokenizer(path: Path):
    """A Hugging Face tokenizer around the checkpoint's SentencePiece model: BOS first, no EOS,
    and special-token text split like any other text (as SentencePiece does)."""
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    cfg = read_config(path)
    model_file = find_tokenizer(path, cfg.vocab_size)
    tokenizer = SentencePieceBackend(
        vocab_file=str(model_file), unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        # `add_bos_token` in init kwargs also stops TransformerLens from reloading the
        # tokenizer by name (it cannot: this one has no name on the hub or on disk).
        add_bos_token=True, add_eos_token=False, special_tokens_pattern="bos",
        split_special_tokens=True, padding_side="right", model_max_length=cfg.seq_len,
        name_or_path=str(model_file),
    )
    if tokenizer.sp_model.get_piece_size() != cfg.vocab_size:
        raise ModelError(f"{model_file.name} has {tokenizer.sp_model.get_piece_size()} pieces but "
                         f"{path.name} has a vocabulary of {cfg.vocab_size}")
    if tokenizer.sp_model.bos_id() != BOS_ID:
        raise ModelError(f"{model_file.name}: BOS is id {tokenizer.sp_model.bos_id()}, expected {BOS_ID}")
    return tokenizer
