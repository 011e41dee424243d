"""Download buttons for a result: each table as CSV and Parquet, each figure as a
standalone HTML file (plotly.js embedded: opens offline), and as PNG where kaleido and a
Chromium browser are present. Files are built only when clicked (deferred `data`), and a
click does not rerun the page.

PNGs: left to itself, kaleido starts a Chromium for every image (seconds of CPU and a few
hundred MB each), so a visitor clicking PNG buttons, or many visitors, started browsers
without bound. Here every PNG goes through one Chromium kept by kaleido's sync server for
the life of the process, one render at a time (that server answers through one shared
queue: two callers at once could take each other's image), and a figure already rendered
is kept by its content (`cached_png`, a small LRU) so a repeat click renders nothing.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import threading
import warnings
from collections import OrderedDict

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyses import Result
from analyses.core.spreadsheet import table_csv

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# plotly passes its default export options with each call; the shared server was started
# with kaleido's own (the same defaults), so its warning that it ignores them is noise
warnings.filterwarnings("ignore", message="The kopts argument is ignored if using a server")
KEPT_PNGS = 32  # rendered PNGs kept per process (a heatmap's is ~100 KB)
_PNG_LOCK = threading.Lock()  # one render at a time through the one shared browser
_PNGS: OrderedDict[str, bytes] = OrderedDict()  # sha256 of the figure's JSON -> PNG, newest last


def file_stem(result: Result) -> str:
    """`<kind>-<8 hex of the spec>`: names differ when the inputs differ."""
    digest = hashlib.sha256(result.spec.to_query().encode()).hexdigest()[:8]
    return f"{result.kind}-{digest}"


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
    """The figure as a PNG, rendered by the process's one shared Chromium (started on the
    first PNG), one render at a time."""
    import kaleido

    with _PNG_LOCK:
        kaleido.start_sync_server(silence_warnings=True)  # once: later calls do nothing
        return fig.to_image(format="png", scale=2)


def cached_png(fig: go.Figure) -> bytes:
    """`figure_png(fig)`, kept under the figure's content (its JSON: data, layout, the
    result's numbers), never under a name that could outlive what it drew."""
    key = hashlib.sha256(fig.to_json().encode()).hexdigest()
    with _PNG_LOCK:
        if key in _PNGS:
            _PNGS.move_to_end(key)
            return _PNGS[key]
    png = figure_png(fig)
    with _PNG_LOCK:
        _PNGS[key] = png
        while len(_PNGS) > KEPT_PNGS:
            _PNGS.popitem(last=False)
    return png


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
            buttons.append((f"{name}.png", lambda f=fig: cached_png(f), f"{stem}-{name}.png", "image/png"))
    for i, (label, data, file_name, mime) in enumerate(buttons):
        columns[i % len(columns)].download_button(
            label, data=data, file_name=file_name, mime=mime, on_click="ignore",
            icon=":material/download:", key=f"download-{file_name}",
        )
    if not png:
        st.caption("PNG export needs `kaleido` and a Chromium browser on the server, and "
                   "they are not both here: use the camera icon on a chart, or the HTML file.")
