"""llama2.c checkpoints: conversion against a plain-torch llama2.c forward pass, the
SentencePiece tokenizer, and the real stories260K model's known behaviour."""
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from analyses.core.errors import ModelError
from analyses.runtime import llama2c, models

STORY_START = "Once upon a time, there was a little girl named Lily."
TEXTS = [
    "Once upon a time",
    "Lily and Ben went to the park. They saw a big, red ball!",
    " leading space and  two spaces",
    "lines\n\nand\ttabs",
    "numbers 12345 and 3.14",
    "unicode: héllo ✓ 日本",  # byte fallback
    "a literal <s> and </s> are text",
    "",
]


# --------------------------------------------------------------------------- a reference

def read_raw(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of a v0 file, read here independently of analyses.llama2c."""
    raw = path.read_bytes()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    hd, V, L = dim // n_heads, abs(vocab), n_layers
    kv = n_kv * hd
    shapes = dict(token_embedding=(V, dim), rms_att=(L, dim), wq=(L, dim, dim), wk=(L, kv, dim),
                  wv=(L, kv, dim), wo=(L, dim, dim), rms_ffn=(L, dim), w1=(L, hidden, dim),
                  w2=(L, dim, hidden), w3=(L, hidden, dim), rms_final=(dim,),
                  freq_cis_real=(seq_len, hd // 2), freq_cis_imag=(seq_len, hd // 2))
    if vocab < 0:
        shapes["wcls"] = (V, dim)
    flat, arrays, at = np.frombuffer(raw, "<f4", offset=28), {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape))
        arrays[name] = flat[at:at + n].reshape(shape).astype(np.float64)
        at += n
    assert at == flat.size
    header = dict(dim=dim, n_heads=n_heads, n_kv=n_kv, n_layers=L)
    return header, arrays


def reference_logits(path: Path, tokens: list[int]) -> torch.Tensor:
    """llama2.c's forward pass (run.c), in float64: rotary on ADJACENT pairs, using the
    file's own freq_cis tables. Returns [pos, vocab]."""
    h, a = read_raw(path)
    w = {k: torch.from_numpy(v) for k, v in a.items()}
    n_heads, n_kv, hd = h["n_heads"], h["n_kv"], h["dim"] // h["n_heads"]
    T = len(tokens)
    cos, sin = w["freq_cis_real"][:T, None, :], w["freq_cis_imag"][:T, None, :]  # [pos, 1, hd/2]

    def rmsnorm(x, g):  # x [pos, d]
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g

    def rotate_adjacent(x):  # x [pos, heads, hd]: pairs (2i, 2i+1)
        even, odd = x[..., 0::2], x[..., 1::2]  # [pos, heads, hd/2]
        out = torch.empty_like(x)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out

    x = w["token_embedding"][tokens]  # [pos, d]
    causal = torch.full((T, T), float("-inf"), dtype=x.dtype).triu(1)
    for layer in range(h["n_layers"]):
        xn = rmsnorm(x, w["rms_att"][layer])
        q = rotate_adjacent((xn @ w["wq"][layer].T).view(T, n_heads, hd))
        k = rotate_adjacent((xn @ w["wk"][layer].T).view(T, n_kv, hd))
        v = (xn @ w["wv"][layer].T).view(T, n_kv, hd)
        group = n_heads // n_kv  # query head i reads key/value head i // group
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / hd**0.5 + causal  # [heads, pos, pos]
        out = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(T, -1)  # [pos, d]
        x = x + out @ w["wo"][layer].T
        xn = rmsnorm(x, w["rms_ffn"][layer])
        gate = torch.nn.functional.silu(xn @ w["w1"][layer].T) * (xn @ w["w3"][layer].T)
        x = x + gate @ w["w2"][layer].T
    classifier = w.get("wcls", w["token_embedding"])
    return rmsnorm(x, w["rms_final"]) @ classifier.T


def write_random_checkpoint(path: Path, dim=16, hidden=40, n_layers=2, n_heads=4, n_kv=2,
                            vocab=24, seq_len=32, shared=False, seed=0) -> Path:
    """A random v0 checkpoint; `shared=False` writes a separate classifier (negative vocab)."""
    rng = np.random.default_rng(seed)
    hd = dim // n_heads
    kv = n_kv * hd
    r = lambda *shape: rng.normal(0, 0.3, shape)  # noqa: E731
    angles = np.outer(np.arange(seq_len), 10000.0 ** (-np.arange(0, hd, 2) / hd))  # [pos, hd/2]
    parts = [r(vocab, dim), 1 + r(n_layers, dim), r(n_layers, dim, dim), r(n_layers, kv, dim),
             r(n_layers, kv, dim), r(n_layers, dim, dim), 1 + r(n_layers, dim),
             r(n_layers, hidden, dim), r(n_layers, dim, hidden), r(n_layers, hidden, dim),
             1 + r(dim), np.cos(angles), np.sin(angles)]
    if not shared:
        parts.append(r(vocab, dim))
    header = struct.pack("<7i", dim, hidden, n_layers, n_heads, n_kv, vocab if shared else -vocab, seq_len)
    path.write_bytes(header + b"".join(p.astype("<f4").tobytes() for p in parts))
    return path


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def stories_bin(stories260k_dir) -> Path:
    return stories260k_dir / "stories260K.bin"


@pytest.fixture(scope="module")
def stories(stories_bin):
    """stories260K through the public loader (the shared fixtures are a default root)."""
    return models.load(str(stories_bin), device="cpu")


@pytest.fixture(scope="module")
def sentencepiece(stories260k_dir):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(stories260k_dir / "tok512.model"))


# --------------------------------------------------------------------------- conversion

def test_stories260k_logits_match_the_llama2c_reference(stories, stories_bin, sentencepiece):
    tokens = [1] + sentencepiece.encode("Once upon a time, there was a little dog named Max.")
    with torch.no_grad():
        logits = stories.bridge(torch.tensor([tokens]))[0].double()  # [pos, vocab]
    expected = reference_logits(stories_bin, tokens)
    assert expected.std() > 1.0
    assert (logits - expected).abs().max() < 1e-4


@pytest.mark.parametrize("shared", [False, True])
def test_random_checkpoint_converts_exactly(tmp_path, shared):
    path = write_random_checkpoint(tmp_path / "random.bin", shared=shared)
    model = llama2c.to_hf_model(path)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == shared
    tokens = [1, 5, 9, 2, 17, 23, 0, 11, 4, 4]
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].double()
    assert (logits - reference_logits(path, tokens)).abs().max() < 1e-4


def test_adjacent_pairs_become_halves():
    # One head of dim 4 whose rows are labelled by their index: pairs (0,1), (2,3) ->
    # HF order [first of each pair..., second of each pair...].
    w = torch.arange(8.0).view(8, 1)  # two heads
    assert llama2c.interleaved_to_halves(w, n_heads=2).view(-1).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_stories260k_config(stories):
    cfg = stories.bridge.cfg
    assert (stories.source, cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads) == \
        ("llama2c", 5, 64, 8, 4)
    assert not stories.bridge.training


# --------------------------------------------------------------------------- tokenizer

@pytest.mark.parametrize("text", TEXTS)
def test_tokens_equal_sentencepiece_with_bos(stories, sentencepiece, text):
    assert stories.bridge.to_tokens(text)[0].tolist() == [1] + sentencepiece.encode(text)


def test_greedy_decoding_tells_the_lily_story(stories, sentencepiece):
    tokens = torch.tensor([[1]])  # BOS alone
    with torch.no_grad():
        for _ in range(18):
            next_token = stories.bridge(tokens)[0, -1].argmax()
            tokens = torch.cat([tokens, next_token.view(1, 1)], dim=1)
    story = sentencepiece.decode(tokens[0, 1:].tolist())
    assert story.startswith(STORY_START), story
    assert stories.tokenizer.decode(tokens[0], skip_special_tokens=True).startswith(STORY_START)


# --------------------------------------------------------------------------- files

def copy_stories(stories260k_dir: Path, folder: Path, tokenizer_names=("tok512.model",)) -> Path:
    folder.mkdir()
    shutil.copy(stories260k_dir / "stories260K.bin", folder / "stories260K.bin")
    for name in tokenizer_names:
        shutil.copy(stories260k_dir / "tok512.model", folder / name)
    return folder / "stories260K.bin"


def test_fingerprint_tracks_the_checkpoint_bytes(stories260k_dir, stories, model_roots, tmp_path):
    path = copy_stories(stories260k_dir, tmp_path / "m")
    fp = models.fingerprint(str(path))
    assert fp == models.fingerprint(str(path)) == stories.fingerprint  # same bytes, same hash
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x01  # one bit of one weight; same size, same path
    path.write_bytes(bytes(raw))
    assert models.fingerprint(str(path)) != fp


def test_tokenizer_must_be_beside_and_unambiguous(stories260k_dir, model_roots, tmp_path):
    alone = copy_stories(stories260k_dir, tmp_path / "alone", tokenizer_names=())
    with pytest.raises(ModelError, match="no SentencePiece tokenizer"):
        models.fingerprint(str(alone))
    two = copy_stories(stories260k_dir, tmp_path / "two", tokenizer_names=("tokA.model", "tokB.model"))
    with pytest.raises(ModelError, match="several tokenizers"):
        models.fingerprint(str(two))
    named = copy_stories(stories260k_dir, tmp_path / "named", tokenizer_names=("tokenizer.model",
                                                                               "tok512.model"))
    assert llama2c.find_tokenizer(named, 512).name == "tokenizer.model"
    # The fingerprint follows the bytes, not the file names.
    (named.parent / "tok512.model").unlink()
    named.rename(named.parent / "renamed.bin")
    assert models.fingerprint(str(named.parent / "renamed.bin")) == models.fingerprint(
        str(stories260k_dir / "stories260K.bin"))


def test_other_formats_are_refused(tmp_path, stories_bin):
    v1 = tmp_path / "v1.bin"
    v1.write_bytes(struct.pack("<Ii", 0x616B3432, 1) + bytes(256))
    with pytest.raises(ModelError, match="v0"):
        llama2c.read_config(v1)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(stories_bin.read_bytes()[:5000])
    with pytest.raises(ModelError, match="truncated"):
        llama2c.read_config(truncated)


def test_word_start_tokens_show_their_space_everywhere(stories):
    """SentencePiece marks a word's first token `▁Lily`; a one-token decode drops the mark,
    so tables and error messages showed `Lily` for ` Lily`. They show the space it stands for."""
    from analyses import SpecError
    from analyses.kinds.tokens import single_token, token_strings

    bridge = stories.bridge
    ids = bridge.to_tokens(" Lily went", prepend_bos=False)[0]
    pieces = bridge.tokenizer.convert_ids_to_tokens(ids.tolist())
    shown = token_strings(bridge, ids)
    assert any(p.startswith("\u2581") for p in pieces)
    assert [s.startswith(" ") for s in shown] == [p.startswith("\u2581") for p in pieces]
    assert all("\u2581" not in s for s in shown) and "".join(shown).endswith(" Lily went")
    with pytest.raises(SpecError) as refused:
        single_token(bridge, " Tom went", "answer")
    assert "[' T', 'om', ' w', 'ent']" in str(refused.value)  # word starts keep their space
