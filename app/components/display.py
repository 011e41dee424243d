"""Showing untrusted text safely: prompts and token strings come from users and links.

Three places interpret text, each escaped here in one function:

- `display_token`: invisible characters (zero-width spaces, direction marks, control
  characters, odd spaces) become visible escapes like `\\u200b`, so two tokens that look
  alike on screen never are different in secret.
- `plot_text`: plotly renders a little HTML in labels, hover text and legends (`<b>`,
  `<br>`, `<a href=…>`), so `<`, `>`, `&` are escaped after `display_token`.
- `md_escape`: Streamlit renders Markdown in `st.error`, `st.caption`, button labels and
  progress messages; every Markdown-active ASCII character is backslash-escaped.
"""
from __future__ import annotations

import html
import re
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


_MARKDOWN_ACTIVE = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:=&\"'^%@/])")
# Words Markdown would turn into links even when escaped (GFM autolinks run on the text
# after escapes are undone): URLs, www. names, e-mail addresses, mailto:/xmpp: targets.
_LINK_LIKE = re.compile(r"://|www\.|@|(mailto|xmpp):", re.IGNORECASE)
_WORD = re.compile(r"(\S+)")


def md_escape(text: str) -> str:
    """`text` shown literally where Streamlit renders Markdown.

    Every ASCII punctuation mark Markdown or Streamlit's extensions (`:red[…]`, `:smile:`,
    `$math$`) could act on is backslash-escaped; words that would become links (URLs,
    e-mail addresses) are set as inline code instead, the one place no link is made;
    invisible characters are made visible. Line breaks are kept.
    """
    lines = [display_token(line) for line in str(text).split("\n")]
    return "  \n".join("".join(_escape_word(part) for part in _WORD.split(line)) for line in lines)


def _escape_word(word: str) -> str:
    if word and not word.isspace() and _LINK_LIKE.search(word):
        return _code_span(word)
    return _MARKDOWN_ACTIVE.sub(r"\\\1", word)


def _code_span(text: str) -> str:
    """Inline code holding `text` exactly: the fence is longer than any backtick run in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
