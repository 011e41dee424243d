"""Showing untrusted text safely in figures: prompts and token strings come from users.

- `display_token`: invisible characters (zero-width spaces, direction marks, control
  characters, odd spaces) become visible escapes like `\\u200b`, so two tokens that look
  alike on screen never are different in secret.
- `plot_text`: plotly renders a little HTML in labels, hover text and legends (`<b>`,
  `<br>`, `<a href=…>`), so `<`, `>`, `&` are escaped after `display_token`.

(The app's Markdown escaping, `md_escape`, lives with the app: `app/components/display.py`.)
"""
from __future__ import annotations

import html
import unicodedata
from functools import lru_cache

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
# Characters that draw nothing yet are not in a control/format/separator category.
_INVISIBLE_LETTERS = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0}
_INVISIBLE_RANGES = ((0x180B, 0x180F), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF))  # variation selectors
VISIBLE_SPACE = "\u2423"  # ␣: where a token's leading space must show in a figure


def display_token(text: str) -> str:
    """`text` with every invisible or ambiguous character written as an escape.

    Newline, tab and carriage return become `\\n`, `\\t`, `\\r`; other control characters,
    format characters (zero-width, bidirectional marks and overrides, BOM), separators other
    than the plain space (no-break space, line separator…), unassigned and private-use code
    points, and variation selectors become `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN` as Python
    writes them. Everything else, the plain space included, is kept as it is.
    """
    return "".join(_visible(c) for c in text)


@lru_cache(maxsize=4096)
def _visible(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char == " ":
        return char
    code = ord(char)
    category = unicodedata.category(char)
    hidden = (category[0] in "CZ" or code in _INVISIBLE_LETTERS
              or any(lo <= code <= hi for lo, hi in _INVISIBLE_RANGES))
    if not hidden:
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def plot_text(text: str, visible_spaces: bool = False) -> str:
    """`text` ready for a plotly label, hover text or legend entry: invisible characters
    escaped, HTML escaped (plotly decodes `&lt;` `&gt;` `&amp;` back for display), and
    with `visible_spaces` each space drawn as ␣ so ' Paris' and 'Paris' differ."""
    shown = display_token(text)
    if visible_spaces:
        shown = shown.replace(" ", VISIBLE_SPACE)
    return html.escape(shown, quote=False)  # plotly knows &lt; &gt; &amp;, not &quot;
