"""Token previews without torch: the tokens a model will read, for forms and links.

A form shows under each text box the tokens its text becomes, before anything runs, so a
user sees `answer=Paris` read as `Par` `is` (not ` Paris`) while typing. The model stack
(torch, transformers) is not needed for that: the `tokenizers` library reads a Hugging Face
model's `tokenizer.json` and SentencePiece reads a llama2.c checkpoint's model, in a few
milliseconds. Prompts get the model's BOS first, as every analysis reads them
(`kinds/tokens.prompt_tokens`); a test holds the preview to the loaded model's own tokens.
A model with neither file (an old slow-only tokenizer) gets no preview, never an error.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from analyses.core.errors import ModelError
from analyses.core.tokentext import piece_text
from analyses.runtime import models

_READERS: dict[str, object] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Preview:
    tokens: list[str]  # each token's text, leading spaces kept; BOS as its own text
    with_bos: bool

    @property
    def count(self) -> int:
        return len(self.tokens)


class _FastReader:
    def __init__(self, folder: Path):
        import tokenizers

        self.tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.encode_special_tokens = True  # text is text, as `kinds/tokens.text_tokens`
        config = folder / "tokenizer_config.json"
        settings = json.loads(config.read_text()) if config.is_file() else {}
        bos = settings.get("bos_token") or settings.get("eos_token")  # as TransformerLens falls back
        self.bos = bos.get("content") if isinstance(bos, dict) else bos

    def read(self, text: str, with_bos: bool) -> list[str]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids  # BOS by its text below
        texts = [self.tokenizer.decode([i], skip_special_tokens=False) for i in ids]
        return ([self.bos] if with_bos and self.bos else []) + texts


class _SentencePieceReader:
    def __init__(self, checkpoint: Path):
        import sentencepiece

        from analyses.runtime import llama2c

        model_file = llama2c.find_tokenizer(checkpoint, llama2c.read_config(checkpoint).vocab_size)
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))

    def read(self, text: str, with_bos: bool) -> list[str]:
        ids = self.sp.encode(text)
        texts = [piece_text(self.sp.id_to_piece(i), self.sp.decode([i])) for i in ids]
        return ([self.sp.id_to_piece(self.sp.bos_id())] if with_bos else []) + texts


def _folder(resolved: models.Resolved) -> Path | None:
    if resolved.source == "huggingface":
        return models.cached_snapshot(resolved.hub_id)
    return resolved.path


def _reader(ref: str):
    resolved = models.resolve(ref)
    fingerprint = models.fingerprint(ref)
    with _LOCK:
        if fingerprint in _READERS:
            return _READERS[fingerprint]
    if resolved.source == "llama2c":
        reader = _SentencePieceReader(resolved.path)
    else:
        folder = _folder(resolved)
        reader = _FastReader(folder) if folder and (folder / "tokenizer.json").is_file() else None
    with _LOCK:
        _READERS[fingerprint] = reader
    return reader


def preview(ref: str, text: str, with_bos: bool = True) -> Preview | None:
    """The tokens `text` becomes for model `ref` (BOS first with `with_bos`), or None when
    the model cannot be previewed (unknown, or no fast tokenizer file)."""
    try:
        reader = _reader(ref)
    except (ModelError, OSError, ValueError):
        return None
    if reader is None or not text:
        return None
    return Preview(reader.read(text, with_bos), with_bos)


def spacing_hint(ref: str, text: str) -> str | None:
    """For a one-token answer typed without its leading space (`Paris`), when the spaced form
    (` Paris`) is one token: say so, since that is nearly always the token meant."""
    if not text or text.startswith(" "):
        return None
    plain, spaced = preview(ref, text, with_bos=False), preview(ref, " " + text, with_bos=False)
    if plain is None or spaced is None or spaced.count != 1:
        return None
    what = "one token" if plain.count == 1 else f"{plain.count} tokens"
    return (f"{text!r} has no leading space, so the model reads {what} {plain.tokens}; "
            f"the word after a space is {spaced.tokens[0]!r}, one token — add the space if you meant that")
