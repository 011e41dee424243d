"""Untrusted text on screen: invisible characters made visible, HTML and Markdown inert."""
import re

import pytest

from app.components.display import display_token, md_escape, plot_text


@pytest.mark.parametrize("raw, shown", [
    ("Paris", "Paris"),
    (" Paris", " Paris"),  # the plain space stays
    ("a\u200bb", "a\\u200bb"),  # zero-width space
    ("\u200e\u200f", "\\u200e\\u200f"),  # left-to-right and right-to-left marks
    ("\u202eevil", "\\u202eevil"),  # right-to-left override
    ("\u2066x\u2069", "\\u2066x\\u2069"),  # bidi isolates
    ("\ufeff", "\\ufeff"),  # byte order mark
    ("\x00", "\\x00"),
    ("\x7f\x85", "\\x7f\\x85"),  # DEL and a C1 control
    ("\n\t\r", "\\n\\t\\r"),
    ("\u00a0", "\\xa0"),  # no-break space looks like a space but is not one
    ("\u3000", "\\u3000"),
    ("\u2028", "\\u2028"),  # line separator
    ("\ue000", "\\ue000"),  # private use
    ("e\ufe0f", "e\\ufe0f"),  # variation selector
    ("\U000e0041", "\\U000e0041"),  # tag character
    ("\u3164", "\\u3164"),  # Hangul filler: a letter that draws nothing
    ("é日本\ufffd", "é日本\ufffd"),  # visible text, the replacement character included
])
def test_display_token_makes_invisible_characters_visible(raw, shown):
    assert display_token(raw) == shown


def test_display_token_keeps_everything_visible_as_is():
    text = "<b>&amp; `code` *x* $y$ \\ 123 Ωmega"
    assert display_token(text) == text


def test_plot_text_escapes_html_and_can_show_spaces():
    assert plot_text("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    assert plot_text(" Paris", visible_spaces=True) == "\u2423Paris"
    assert plot_text("<br>\u200b") == "&lt;br&gt;\\u200b"
    assert '"' in plot_text('"q"')  # plotly does not decode &quot;: quotes stay as they are


def test_md_escape_leaves_no_markdown_active():
    shown = md_escape(":red[boom] **b** $x$ [l](u) <b> `c` # h")
    for active in (":red[", "**", "$x$", "[l](", "<b>", "`c`"):
        assert active not in shown
    assert "\\# h" in shown  # a heading mark, escaped
    assert shown.replace("\\", "") == ":red[boom] **b** $x$ [l](u) <b> `c` # h"


@pytest.mark.parametrize("word", ["http://e.invalid/x.png", "www.evil.example", "me@evil.example",
                                  "(https://x.example)", "mailto:a"])
def test_md_escape_sets_link_like_words_as_code(word):
    assert md_escape(f"see {word} now") == f"see `{word}` now"


def test_md_escape_code_span_outgrows_backticks_inside():
    assert md_escape("http://x/`a``") == "``` http://x/`a`` ```"


def test_md_escape_keeps_line_breaks_and_shows_invisibles():
    assert md_escape("one\ntwo\u200b") == "one  \ntwo\\\\u200b"


@pytest.mark.parametrize("raw", [
    "![x](https://e.com/a.png)", "<img src=x>", "**bold**", "[link](javascript:alert(1))",
    "`code` and ``two``", "$math$ and $$x$$", "<script>alert(1)</script>", "~~s~~ _i_ # h",
])
def test_md_escape_leaves_every_construct_inert(raw):
    """Each Markdown/HTML-active character is escaped or inside a code span: Markdown can
    make no image, link, tag, emphasis, code or math of the text."""
    shown = md_escape(raw)
    outside_code = re.sub(r"(`+) ?.*? ?\1", "", shown)  # what Markdown reads as markup
    assert not re.search(r"(?<!\\)[!\[\]()<>*`$_~#]", outside_code), shown
    for word in raw.split():
        if "://" in word:
            assert f"`{word}`" in shown  # a link-like word is code, never a link


def test_md_code_fences_any_backticks():
    from app.components.display import md_code

    assert md_code("Paris") == "`Paris`"
    assert md_code("`") == "`` ` ``"
    assert md_code("a``b") == "```a``b```"


def test_highlighted_tokens_take_the_apps_escape():
    from analyses.figures.steering import highlighted_html

    shown = highlighted_html([" ![x](http://e.invalid/a.png)", " **b**"], [" a", " **b**"], escape=md_escape)
    assert "<mark" in shown and "`![x](http://e.invalid/a.png)`" in shown and "\\*\\*b\\*\\*" in shown
