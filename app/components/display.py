"""Showing untrusted text safely in the app: prompts and token strings come from users and links.

Three places interpret text, each escaped in one function:

- `display_token` and `plot_text` (from `analyses.figures.text`, where the figures use
  them): invisible characters made visible; HTML escaped for plotly labels.
- `md_escape` (here): Streamlit renders Markdown in `st.markdown`, `st.error`, `st.caption`,
  button labels and progress messages; every Markdown-active ASCII character is
  backslash-escaped. Its output is inert HTML too (`<` is `\\<`), so text set between the
  tags of `st.markdown(…, unsafe_allow_html=True)` (the steering page's marked tokens) goes
  through it as well: every model, user, token, prompt and dataset string the app writes
  as Markdown goes through `md_escape`, or `md_code` where it is shown as code.
"""
from __future__ import annotations

import re

from analyses.figures.text import VISIBLE_SPACE, display_token, plot_text

__all__ = ["VISIBLE_SPACE", "display_token", "md_code", "md_escape", "plot_text", "without_server_paths"]

_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/:,;'\"()\[\]]+/)+([^\s/:,;'\"()\[\]]*)")


def without_server_paths(text: str) -> str:
    """`text` with each absolute path on the server cut to its last part (`…/hub`): a
    visitor learns what was tried, not how the server's disk is laid out."""
    return _ABSOLUTE_PATH.sub(lambda m: "…/" + m.group(1) if m.group(1) else "…/", text)


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
        return md_code(word)
    return _MARKDOWN_ACTIVE.sub(r"\\\1", word)


def md_code(text: str) -> str:
    """Inline code holding `text` exactly (a token in a caption): the fence is longer than
    any backtick run in it, so no backtick in `text` can end the code early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
