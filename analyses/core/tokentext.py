"""A token's text as a reader sees it in the prompt (torch-free: tables, previews, errors)."""
from __future__ import annotations

import re

WORD_START = "\u2581"  # ▁: SentencePiece's mark of a token that begins a word (a space)
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte fallback


def piece_text(piece, decoded: str) -> str:
    """One token's text as a reader would see it in the prompt, from its piece and its
    one-token decode: a SentencePiece word start (`▁Lily`) keeps its space (` Lily`), which
    the decode drops; a byte-fallback piece of an ASCII byte (`<0x3D>`) is that character
    (`=`), others stay as written (one byte of a longer character shows nothing alone).
    Byte-level BPE tokens already carry their space (`Ġ` decodes to one)."""
    if not isinstance(piece, str):
        return decoded
    byte = _BYTE_PIECE.fullmatch(piece)
    if byte:
        code = int(byte.group(1), 16)
        return chr(code) if code < 0x80 else piece
    if piece.startswith(WORD_START) and not decoded.startswith(" "):
        return " " + decoded
    return decoded
