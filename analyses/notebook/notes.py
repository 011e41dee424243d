"""A researcher's notes, shown as Markdown without letting a note inject anything.

A note comes from whoever made the notebook and travels in its link, so it is untrusted:
rendered to HTML by markdown-it (CommonMark) with raw HTML off (`<script>` and `<img>` show
as text), every image shown as its alt text only (an image would make the reader's browser
fetch a remote URL), links limited to http(s) and `#anchors` and opened without a referrer.
The same HTML serves the app's page and the HTML export.

For the Markdown export, `markdown_safe` neutralises the same two things in the note's own
text — `<` becomes `&lt;` and `![` becomes `!\\[` outside code — so a Markdown viewer neither
runs HTML nor loads an image from it.
"""
from __future__ import annotations

import functools
import html
import re

from markdown_it import MarkdownIt

SAFE_SCHEMES = ("http://", "https://", "#")
_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.DOTALL)  # fenced blocks and inline code spans


@functools.cache
def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table").enable("strikethrough")
    md.validateLink = _safe_link
    md.add_render_rule("image", _image_as_text)
    md.add_render_rule("link_open", _link_open)
    return md


def _safe_link(url: str) -> bool:
    return url.strip().lower().startswith(SAFE_SCHEMES)


def _image_as_text(self, tokens, idx, options, env) -> str:
    """`![alt](url)` → its alt text, escaped: nothing is fetched."""
    return html.escape(tokens[idx].content)


def _link_open(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    token.attrSet("rel", "noopener noreferrer nofollow")
    token.attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


def note_html(note: str) -> str:
    """`note` (Markdown) as HTML with no raw HTML, no images and only http(s) links."""
    return _renderer().render(note or "")


def markdown_safe(note: str) -> str:
    """`note` for a Markdown file: raw HTML and image syntax neutralised outside code."""
    parts = _CODE.split(note or "")
    return "".join(part if i % 2 else part.replace("<", "&lt;").replace("![", "!\\[")
                   for i, part in enumerate(parts))
