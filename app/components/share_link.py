"""The "Share link" box and the headless snippet: both come from `app.links`."""
from __future__ import annotations

import streamlit as st

from analyses import AnalysisSpec
from app import links
from app.components.copy_box import copy_box


def current_base() -> str:
    """The app's root URL as the browser sees it (`st.context.url`), else localhost."""
    try:
        url = st.context.url
    except Exception:  # noqa: BLE001 - older Streamlit, or no browser session
        url = None
    return links.app_base(url)


def share_box(spec: AnalysisSpec) -> str:
    """The full URL of this view, in a box with a Copy button; returns it."""
    view = links.view_state(links.read_query_params(st.query_params))  # e.g. the head shown large
    url = links.share_url(spec, current_base(), view)
    st.markdown("**Share link** — opens this exact view")
    copy_box(url, "Copy the share link", key="share:link")
    return url


def snippet_box(spec: AnalysisSpec) -> None:
    st.markdown("**Reproduce headless** (Python, no browser)")
    copy_box(links.snippet(spec), "Copy the Python snippet", key="share:snippet")
