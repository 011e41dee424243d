"""Download buttons for a result: each table as CSV and Parquet, each figure as a
standalone HTML file (plotly.js embedded: opens offline), and as PNG where kaleido and a
Chromium browser are present. Files are built only when clicked (deferred `data`), and a
click does not rerun the page.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyses import Result

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def file_stem(result: Result) -> str:
    """`<kind>-<8 hex of the spec>`: names differ when the inputs differ."""
    digest = hashlib.sha256(result.spec.to_query().encode()).hexdigest()[:8]
    return f"{result.kind}-{digest}"


# A cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A text cell a spreadsheet would run as a formula (a token `=cmd|…`, a prompt
    `@SUM(…)`) gets a leading `'`, which spreadsheets read as "this is text"; numbers,
    negative ones included, and every other cell stay as they are."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def table_csv(frame: pd.DataFrame) -> bytes:
    """The table as CSV for a spreadsheet: its text cells guarded by `spreadsheet_safe`
    (the Parquet file keeps every string exactly)."""
    text_columns = [c for c in frame.columns
                    if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    guarded = frame.assign(**{str(c): frame[c].map(spreadsheet_safe) for c in text_columns})
    # CRLF rows, as RFC 4180 has them: the csv writer then quotes any cell holding a \r or a
    # \n (with \n rows, a token's lone \r went out unquoted and split its row in two)
    return guarded.to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def table_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def figure_html(fig: go.Figure) -> str:
    """A standalone page that works offline: plotly.js is inlined (~4.5 MB), not a CDN link."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def png_available() -> bool:
    """kaleido renders PNGs through a Chromium-family browser; both must be here."""
    if importlib.util.find_spec("kaleido") is None:
        return False
    configured = os.environ.get("BROWSER_PATH")
    return bool(configured and os.path.isfile(configured)) or any(shutil.which(b) for b in BROWSERS)


def figure_png(fig: go.Figure) -> bytes:
    return fig.to_image(format="png", scale=2)


def download_buttons(result: Result, figures: dict[str, go.Figure]) -> None:
    stem = file_stem(result)
    st.markdown("**Downloads**")
    columns = st.columns(4)
    buttons = []
    for name, frame in result.tables.items():
        buttons.append((f"{name}.csv", lambda f=frame: table_csv(f), f"{stem}-{name}.csv", "text/csv"))
        buttons.append((f"{name}.parquet", lambda f=frame: table_parquet(f),
                        f"{stem}-{name}.parquet", "application/vnd.apache.parquet"))
    png = png_available()
    for name, fig in figures.items():
        buttons.append((f"{name}.html", lambda f=fig: figure_html(f), f"{stem}-{name}.html", "text/html"))
        if png:
            buttons.append((f"{name}.png", lambda f=fig: figure_png(f), f"{stem}-{name}.png", "image/png"))
    for i, (label, data, file_name, mime) in enumerate(buttons):
        columns[i % len(columns)].download_button(
            label, data=data, file_name=file_name, mime=mime, on_click="ignore",
            icon=":material/download:", key=f"download-{file_name}",
        )
    if not png:
        st.caption("PNG export needs `kaleido` and a Chromium browser on the server, and "
                   "they are not both here: use the camera icon on a chart, or the HTML file.")
