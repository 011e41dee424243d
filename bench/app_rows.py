"""App rows: cold start of the server to the first page served, and the server-side time
to render a cached share link."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import parse_qsl

from bench.common import REPO_ROOT, ioi_pair, row
from analyses import AnalysisSpec, compute

STREAMLIT = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode(errors="replace")


def _browser():
    """A headless Debian Chromium through Playwright, or None where either is missing."""
    chromium = "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not os.path.exists(chromium):
        return None
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=chromium,
                                         args=["--no-sandbox", "--disable-gpu"])
    return playwright, browser


def cold_start_row(limit_s: float = 60.0) -> dict:
    """`make run` minus its (already done) setup: a fresh `streamlit run` process until the
    home page is on screen in a browser (its title rendered: the script ran, imports and
    all), or — without a browser — until the server answers its health check and serves /."""
    opened = _browser()  # started before the clock: a user's browser is already open
    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen([*STREAMLIT, "--server.port", str(port)], cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "TQDM_DISABLE": "1"})
    try:
        while True:
            if time.perf_counter() - started > limit_s:
                raise TimeoutError(f"no page served within {limit_s} s")
            try:
                if _get(f"http://127.0.0.1:{port}/_stcore/health") == (200, "ok"):
                    break
            except OSError:
                time.sleep(0.05)
        served = time.perf_counter() - started
        rendered = None
        if opened is not None:
            page = opened[1].new_page()
            page.goto(f"http://127.0.0.1:{port}/", timeout=limit_s * 1000)
            page.get_by_role("heading", name="Interpretability workbench").wait_for(
                timeout=limit_s * 1000)
            rendered = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)
        if opened is not None:
            opened[1].close()
            opened[0].stop()
    seconds = rendered if rendered is not None else served
    how = ("until the home page's title is on screen in headless Chromium" if rendered is not None
           else "until /_stcore/health is ok (no browser here to render the page)")
    return row("app: cold start to the first page served", seconds, None, None, None,
               "<= 15 s", seconds <= 15, f"a fresh `streamlit run app/main.py` {how}; server "
               f"ready after {served:.2f} s (setup already done)")


def cached_link_row() -> dict:
    """A stored activation-patching link opened in the app (Streamlit's AppTest: the whole
    server-side script run: router, page, store read, figures)."""
    from streamlit.testing.v1 import AppTest

    spec = AnalysisSpec(kind="activation_patching", model="default", **ioi_pair())
    compute(spec)  # stored
    query = dict(parse_qsl(spec.to_query()))

    def session():  # a session already on the page, as a browser is after the router's redirect
        at = AppTest.from_file(str(REPO_ROOT / "app" / "main.py"), default_timeout=60).run()
        at.switch_page("views/activation_patching.py")
        at.query_params = query
        return at

    def open_link(at):
        at.run()
        if at.exception or at.error:
            raise RuntimeError(f"the page failed: {[e.value for e in (*at.exception, *at.error)]}")
        if not at.get("plotly_chart"):
            raise RuntimeError("the page showed no figure")

    times = []
    for _ in range(4):  # the first is a warm-up
        at = session()
        start = time.perf_counter()
        open_link(at)
        times.append(time.perf_counter() - start)
    seconds = sorted(times[1:])[1]
    return row("app: render a cached share link (server side)", seconds, None, None, None,
               "<= 0.5 s", seconds <= 0.5, "activation_patching on the embedded model, stored "
               "beforehand; the page's script run (AppTest) with the link's query, median of 3 "
               "after a warm-up")
