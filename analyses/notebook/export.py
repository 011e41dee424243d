"""A notebook as one file: self-contained HTML (interactive figures) or Markdown.

The HTML holds plotly.js once, inline (`plotly.offline.get_plotlyjs()`: the file opens offline
and fetches nothing), then per step its title, its link (which reopens the step in the app),
its note (`notes.note_html`: no raw HTML, no images), its figure as plotly's own `<div>` and
its key numbers as a table. The Markdown has the same text and numbers, and names the figure
(a Markdown file cannot hold an interactive one). Every string from the notebook or a result
is escaped where it is written.

`results[i]` is step i's Result, or None when it is not computed (the step then says so and
keeps its link).
"""
from __future__ import annotations

import html
from collections.abc import Sequence

from analyses.core.notebooks import Notebook, Step
from analyses.core.result import Result
from analyses.notebook.notes import markdown_safe, note_html
from analyses.notebook.numbers import key_numbers

DEFAULT_BASE_URL = "http://localhost:8501"  # the app as `make run` serves it
NOT_COMPUTED = "Not computed here: open the link to compute it."
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2rem auto; padding: 0 1rem; color: #1f2933; line-height: 1.5; }
h1 { font-size: 1.9rem; } h2 { font-size: 1.35rem; margin-top: 2.5rem; }
.step { border-top: 1px solid #d8dee4; padding-top: .5rem; }
.link { font-size: .85rem; word-break: break-all; }
.note { background: #f6f8fa; border-left: 3px solid #8ca0b3; padding: .2rem 1rem; }
table.numbers { border-collapse: collapse; font-size: .9rem; }
table.numbers td { border-bottom: 1px solid #e5e9ee; padding: .15rem .8rem .15rem 0; }
table.numbers td.value { font-variant-numeric: tabular-nums; }
.missing { color: #8a5a00; }
"""


def step_url(step: Step, base_url: str = DEFAULT_BASE_URL) -> str:
    """The link that reopens `step` on its page (`<app>/<kind>?<spec query>`, as app.links
    builds a share link: a kind's page is served at `/<kind>`)."""
    return f"{base_url.rstrip('/')}/{step.kind}?{step.link}"


def chosen_figure(step: Step, result: Result):
    """The figure a step shows: the one it names, else the result's first; None if none."""
    figures = result.figures()
    if step.figure and step.figure in figures:
        return figures[step.figure]
    return next(iter(figures.values()), None)


def to_html(notebook: Notebook, results: Sequence[Result | None],
            base_url: str = DEFAULT_BASE_URL) -> str:
    from plotly.offline import get_plotlyjs

    body = [f"<h1>{html.escape(notebook.title)}</h1>"]
    if notebook.intro:
        body.append(f'<div class="note">{note_html(notebook.intro)}</div>')
    for number, (step, result) in enumerate(zip(notebook.steps, results, strict=True), start=1):
        body.append(_step_html(number, step, result, base_url))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(notebook.title)}</title><style>{STYLE}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head>\n"
            f"<body>\n{chr(10).join(body)}\n<p class=\"link\">Notebook {notebook.reference}</p>\n"
            "</body></html>\n")


def _step_html(number: int, step: Step, result: Result | None, base_url: str) -> str:
    url = step_url(step, base_url)
    parts = [f'<section class="step" id="step-{number}">',
             f"<h2>{number}. {html.escape(step.title or step.kind)}</h2>",
             f'<p class="link"><a href="{html.escape(url)}">{html.escape(url)}</a></p>']
    if step.note:
        parts.append(f'<div class="note">{note_html(step.note)}</div>')
    if result is None:
        parts.append(f'<p class="missing">{NOT_COMPUTED}</p>')
    else:
        figure = chosen_figure(step, result)
        if figure is not None:
            parts.append(figure.to_html(full_html=False, include_plotlyjs=False,
                                        div_id=f"figure-{number}", config={"displaylogo": False}))
        rows = "".join(f"<tr><td>{html.escape(label)}</td><td class=\"value\">{html.escape(value)}</td></tr>"
                       for label, value in key_numbers(result))
        if rows:
            parts.append(f'<table class="numbers">{rows}</table>')
    parts.append("</section>")
    return "\n".join(parts)


def to_markdown(notebook: Notebook, results: Sequence[Result | None],
                base_url: str = DEFAULT_BASE_URL) -> str:
    lines = [f"# {_inline(notebook.title)}", ""]
    if notebook.intro:
        lines += [markdown_safe(notebook.intro), ""]
    for number, (step, result) in enumerate(zip(notebook.steps, results, strict=True), start=1):
        url = step_url(step, base_url)
        lines += [f"## {number}. {_inline(step.title or step.kind)}", "", f"<{url}>", ""]
        if step.note:
            lines += [markdown_safe(step.note), ""]
        if result is None:
            lines += [f"*{NOT_COMPUTED}*", ""]
            continue
        numbers = key_numbers(result)
        if numbers:
            lines += ["| | |", "|---|---|", *(f"| {_cell(label)} | {_cell(value)} |" for label, value in numbers), ""]
    lines.append(f"Notebook `{notebook.reference}`")
    return "\n".join(lines) + "\n"


def _inline(text: str) -> str:
    """A title on one Markdown line, its HTML neutralised."""
    return markdown_safe(" ".join(text.split()))


def _cell(text: str) -> str:
    return _inline(text).replace("|", "\\|")
