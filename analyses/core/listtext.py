r"""Comma lists in spec fields, read without torch: numbers (`coeff=0,0.5,1`), layer indices
(`layer=1,2`), model components (`ablate=L1H7,L1H6,L0.mlp,L2.attn`) and tokens
(`token= Paris, London`).

Tokens are any text, commas and spaces included, so their list has an escape
(`text_items` / `join_text_items`): a backslash before a comma, a backslash or a blank
character makes that character part of the token (`\,` is the token `,`, `\\` is `\`, `\ `
is the token ` `); a backslash before anything else is a backslash, and an item that is
empty or only unescaped blanks is no token (a trailing comma, as a form leaves it).

Each reader raises ValueError with a message that names the bad item; the spec turns it
into a SpecError naming the field. Whether an index fits the model is checked where the
model is known (the kind's runner).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_ITEMS = 32  # a sweep or a knockout list longer than this is surely a mistake
MAX_MAGNITUDE = 1_000.0  # a steering coefficient or temperature beyond this means nothing


def items(text: str) -> list[str]:
    """The comma-separated items of `text`, trimmed; empty items refused."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise ValueError("is empty")
    if "" in parts:
        raise ValueError(f"has an empty item in {text[:60]!r} (a doubled or trailing comma?)")
    if len(parts) > MAX_ITEMS:
        raise ValueError(f"{len(parts)} items; at most {MAX_ITEMS} are accepted")
    return parts


ESCAPE = "\\"
# An escaped character (comma, backslash or blank), an item separator, or plain text.
_TEXT_PART = re.compile(r"\\([,\\\s])|(,)|([^,\\]+|\\)")


def text_items(text: str) -> list[str]:
    """`' Paris, London'` -> [' Paris', ' London']: tokens split at unescaped commas, each
    kept as written (leading spaces matter), escapes undone, blank items skipped."""
    found: list[str] = []
    chars: list[str] = []
    escaped = False  # an escape in the item keeps it even when it is only blanks

    def end_item():
        item = "".join(chars)
        if escaped or item.strip():
            found.append(item)

    for match in _TEXT_PART.finditer(text):
        literal, comma, plain = match.groups()
        if comma:
            end_item()
            chars, escaped = [], False
        elif literal is not None:
            chars.append(literal)
            escaped = True
        else:
            chars.append(plain)
    end_item()
    return found


def join_text_items(tokens: list[str]) -> str:
    """The comma list `text_items` reads back as `tokens` exactly: commas and backslashes
    escaped, and the first character of a token made only of blanks, so it is kept."""
    written = []
    for token in tokens:
        if not token:
            raise ValueError("an empty token cannot be listed")
        escaped = token.replace(ESCAPE, ESCAPE * 2).replace(",", ESCAPE + ",")
        written.append(ESCAPE + escaped if escaped.isspace() else escaped)
    return ",".join(written)


def numbers(text: str) -> list[float]:
    """`0, 0.5, 1` -> [0.0, 0.5, 1.0]: finite, at most `MAX_MAGNITUDE` in size, no repeats."""
    values = []
    for part in items(text):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{part[:40]!r} is not a number") from None
        if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
            raise ValueError(f"{part[:40]!r} must be a finite number of size at most {MAX_MAGNITUDE:g}")
        if value in values:
            raise ValueError(f"{part[:40]!r} is given twice")
        values.append(value)
    return values


def number(text: str, minimum: float = 0.0) -> float:
    """One number, at least `minimum` (a temperature)."""
    values = numbers(text)
    if len(values) != 1:
        raise ValueError(f"expected one number, got {len(values)}")
    if values[0] < minimum:
        raise ValueError(f"must be at least {minimum:g}, got {values[0]:g}")
    return values[0]


MAX_PERCENTAGES = 8  # sparsity: each p is a search of about ten forwards


def positive_numbers(text: str) -> list[float]:
    """`1, 5, 10` -> [1.0, 5.0, 10.0]: percentages above 0, at most MAX_PERCENTAGES of them."""
    values = numbers(text)
    if len(values) > MAX_PERCENTAGES:
        raise ValueError(f"{len(values)} values; at most {MAX_PERCENTAGES} are accepted")
    small = [v for v in values if v <= 0]
    if small:
        raise ValueError(f"must be above 0 (a perplexity increase in %), got {small[0]:g}")
    return values
def fraction(text: str) -> float:
    """One number from 0 to 1 (a share: a pruning threshold)."""
    value = number(text, 0.0)
    if value > 1.0:
        raise ValueError(f"must be at most 1, got {value:g}")
    return value


def indices(text: str) -> list[int]:
    """`2` or `1, 2` -> [1, 2]: whole numbers from 0, no repeats (layers)."""
    values = []
    for part in items(text):
        if not re.fullmatch(r"\d{1,6}", part):
            raise ValueError(f"{part[:40]!r} is not a layer index (a whole number from 0)")
        if int(part) in values:
            raise ValueError(f"{part!r} is given twice")
        values.append(int(part))
    return values


def spans(text: str) -> list[int]:
    """`3, 40-63` -> [3, 40, 41, ..., 63]: positions from 0, single or as inclusive ranges,
    sorted, each once."""
    values: set[int] = set()
    for part in items(text):
        found = re.fullmatch(r"(\d{1,7})(?:\s*[-–]\s*(\d{1,7}))?", part)
        if not found:
            raise ValueError(f"{part[:40]!r} is not a position (a whole number from 0) or a range like 40-63")
        lo, hi = int(found[1]), int(found[2] if found[2] is not None else found[1])
        if hi < lo:
            raise ValueError(f"{part!r} runs backwards: write the lower position first")
        values.update(range(lo, hi + 1))
    if not values:
        raise ValueError("names no position")
    return sorted(values)


@dataclass(frozen=True, order=True)
class Component:
    """One thing an ablation knocks out: a head's output (`site` "head"), a layer's whole
    attention output ("attn") or its MLP's output ("mlp")."""

    layer: int
    site: str
    head: int | None = None

    @property
    def label(self) -> str:
        return f"L{self.layer}H{self.head}" if self.site == "head" else f"L{self.layer}.{self.site}"


_COMPONENT = re.compile(r"L(\d{1,6})(?:H(\d{1,6})|\.(mlp|attn))", re.IGNORECASE)


def components(text: str) -> list[Component]:
    """`L1H7, L0.mlp, L2.attn` -> Components, in the order given, no repeats."""
    found = []
    for part in items(text):
        match = _COMPONENT.fullmatch(part)
        if not match:
            raise ValueError(f"{part[:40]!r} is not a component: write a head as L1H7, a layer's "
                             "MLP as L0.mlp, its attention output as L0.attn")
        layer, head, site = match.groups()
        component = (Component(int(layer), "head", int(head)) if head is not None
                     else Component(int(layer), site.lower()))
        if component in found:
            raise ValueError(f"{component.label} is given twice")
        found.append(component)
    return found


def lines(text: str) -> list[str]:
    """The non-blank lines of `text` (contrast texts, one per line), each kept as written
    apart from its line ending."""
    kept = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not kept:
        raise ValueError("has no text")
    if len(kept) > MAX_LINES:
        raise ValueError(f"{len(kept)} lines; at most {MAX_LINES} are accepted")
    return kept


MAX_LINES = 256  # contrast texts per field
