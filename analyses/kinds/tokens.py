"""Prompt and answer tokenization shared by every analysis, with input checks
that name the field and the limit (a user's text never reaches the model unchecked)."""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from analyses.core.errors import SpecError
from analyses.core.tokentext import piece_text

MAX_TOKENS_ENV = "ANALYSES_MAX_TOKENS"  # a deployment's own cap on prompt length, in tokens


def token_limit(bridge) -> tuple[int, str]:
    """(the most tokens a prompt may have, with BOS; what sets it): the model's context, or
    `ANALYSES_MAX_TOKENS` where that is smaller (a shared server's guard on time and memory)."""
    context = int(bridge.cfg.n_ctx)
    configured = os.environ.get(MAX_TOKENS_ENV, "").strip()
    if configured:
        try:
            cap = int(configured)
        except ValueError:
            raise ValueError(f"{MAX_TOKENS_ENV}={configured!r} is not a whole number") from None
        if 0 < cap < context:
            return cap, f"this server accepts at most {cap} ({MAX_TOKENS_ENV})"
    return context, f"the model's context holds {context}"


def text_tokens(bridge, text: str, prepend_bos: bool) -> Int[Tensor, "1 pos"]:
    """`text` as the model reads it: TransformerLens's `to_tokens` (BOS first when asked, the
    tokenizer's own or prepended; a trailing EOS the tokenizer adds dropped), except that
    text is text on every model — typing a special token's spelling (`<|endoftext|>`, `<s>`)
    gives its characters, never the special token, so what a link says is what is read
    (SentencePiece checkpoints already read it so); BOS comes from here, by id."""
    tokenizer, cfg = bridge.tokenizer, bridge.cfg
    adds_bos = bool(getattr(cfg, "tokenizer_prepends_bos", True))
    ids = tokenizer(text, add_special_tokens=adds_bos, split_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if adds_bos and not prepend_bos and ids and ids[0] == bos:
        ids = ids[1:]
    elif prepend_bos and not adds_bos and bos is not None:
        ids = [bos, *ids]
    eos = tokenizer.eos_token_id
    if getattr(cfg, "tokenizer_appends_eos", False) and eos is not None:
        while len(ids) > 1 and ids[-1] == eos:
            ids = ids[:-1]
    return torch.tensor([ids], dtype=torch.long, device=cfg.device)


def prompt_tokens(bridge, text: str, field: str = "prompt") -> Int[Tensor, "1 pos"]:
    """BOS + the prompt's tokens, refused (before any inference) if longer than the limit."""
    if not text:
        raise SpecError(field, "is empty")
    tokens = text_tokens(bridge, text, prepend_bos=True)  # never cut: TL would cut silently
    limit, why = token_limit(bridge)
    if tokens.shape[1] > limit:
        raise SpecError(field, f"{tokens.shape[1]} tokens (with BOS); {why}")
    return tokens


def token_strings(bridge, tokens: Int[Tensor, "pos"]) -> list[str]:  # noqa: F821 - a jaxtyping shape
    """Each token id as the text it stands for (leading spaces kept)."""
    ids = tokens.cpu().numpy() if isinstance(tokens, Tensor) else np.asarray(tokens)
    return token_texts(bridge, ids).tolist()


def single_token(bridge, text: str, field: str) -> int:
    """The id of a one-token answer such as ' Paris'; anything else is refused."""
    ids = text_tokens(bridge, text, prepend_bos=False)[0]
    if len(ids) != 1:
        pieces = token_strings(bridge, ids)
        raise SpecError(field, f"{text!r} is {len(ids)} tokens {pieces}; it must be exactly one")
    return int(ids[0])


def decode_one(tokenizer, ids: list[int]) -> list[str]:
    """Each id's text as a reader would see it (`piece_text`)."""
    texts = tokenizer.batch_decode([[i] for i in ids])
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return [piece_text(piece, text) for text, piece in zip(texts, pieces)]


def token_decoder(bridge):
    """id -> token text, memoised: tables decode the same few ids many times."""
    def decode(token_id) -> str:
        return str(token_texts(bridge, [int(token_id)])[0])
    return decode


@dataclass(frozen=True)
class _Decoded:
    """One tokenizer's decoded ids so far, indexed by id (grown as larger ids come)."""

    texts: np.ndarray  # [capacity] object: each decoded id's text (None: not yet)
    known: np.ndarray  # [capacity] bool


_DECODED: weakref.WeakKeyDictionary[object, _Decoded] = weakref.WeakKeyDictionary()


def token_texts(bridge, ids) -> np.ndarray:
    """The text of each token id in `ids` (any shape), as an object array of that shape.
    Each id is decoded once per tokenizer for the life of the process (tables repeat the
    same few ids thousands of times, and every analysis of a model asks for the same ones),
    then looked up by numpy indexing: a table of a few thousand ids costs microseconds."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and int(ids.min()) < 0:
        raise ValueError(f"token ids must be 0 or more, got {int(ids.min())}")
    decoded = _DECODED.get(bridge.tokenizer) or _Decoded(np.full(len(bridge.tokenizer), None, dtype=object),
                                                         np.zeros(len(bridge.tokenizer), dtype=bool))
    top = int(ids.max()) + 1 if ids.size else 0
    if top > len(decoded.texts):  # ids beyond the tokenizer (a padded vocabulary): room for them
        grown = _Decoded(np.full(top, None, dtype=object), np.zeros(top, dtype=bool))
        grown.texts[:len(decoded.texts)], grown.known[:len(decoded.known)] = decoded.texts, decoded.known
        decoded = grown
    missing = np.unique(ids[~decoded.known[ids]])
    if len(missing):
        decoded.texts[missing] = decode_one(bridge.tokenizer, missing.tolist())
        decoded.known[missing] = True  # after the texts: a reader that sees known sees its text
    _DECODED[bridge.tokenizer] = decoded
    return decoded.texts[ids]


def device_of(bridge) -> torch.device:
    return next(bridge.parameters()).device
