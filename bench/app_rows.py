"""User-visible latency: the CLI's answers in a fresh process, the app's cold start to its first
paint and to a first result, and the server-side time to render a cached share link."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import parse_qsl

from analyses import AnalysisSpec, compute
from bench.common import REPO_ROOT, ioi_pair, row

STREAMLIT = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true"]
FOLD_PX = 900  # a laptop window's height: a shared link's first figure must start above it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode(errors="replace")


def _wait_until_served(port: int, started: float, limit_s: float) -> None:
    """Poll the server's health check until it answers ok, at most `limit_s` after `started`."""
    while True:
        if time.perf_counter() - started > limit_s:
            raise TimeoutError(f"no page served within {limit_s} s")
        try:
            if _get(f"http://127.0.0.1:{port}/_stcore/health") == (200, "ok"):
                return
        except OSError:
            time.sleep(0.05)


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


def cli_rows(repeats: int = 3) -> list[dict]:
    """`python -m analyses` in a fresh process, as a user types it: a bad spec's one-line
    error, and the list of kinds (neither imports torch). Median of `repeats`."""
    def fresh(*args: str) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "analyses", *args], cwd=REPO_ROOT, capture_output=True,
                           timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    error = fresh("run", "--spec", "kind=nope")
    kinds = fresh("kinds")
    note = f"a fresh `python -m analyses {{}}` (interpreter start included), median of {repeats}"
    return [row("cli: a bad spec's error, fresh process", error, None, None, None, "<= 1.5 s",
                error <= 1.5, note.format("run --spec 'kind=nope'")),
            row("cli: list the kinds, fresh process", kinds, None, None, None, "<= 2 s", kinds <= 2.0,
                note.format("kinds"))]


def cold_start_rows(limit_s: float = 120.0) -> list[dict]:
    """`make run` minus its (already done) setup, in a fresh `streamlit run` process: the time
    until the home page's title is on screen in a browser (its first paint: the script ran,
    imports and all), and until a logit-lens link on the embedded model, opened next, shows
    its figure (torch loaded, the model loaded and run: a first result). Without a browser,
    only until the server answers its health check."""
    opened = _browser()  # started before the clock: a user's browser is already open
    port = _free_port()
    cache = REPO_ROOT / "bench" / ".cold-start.duckdb"  # empty: the first result is computed
    cache.unlink(missing_ok=True)
    started = time.perf_counter()
    server = subprocess.Popen([*STREAMLIT, "--server.port", str(port)], cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "TQDM_DISABLE": "1", "ANALYSES_CACHE": str(cache)})
    try:
        _wait_until_served(port, started, limit_s)
        served = time.perf_counter() - started
        painted = first_result = None
        if opened is not None:
            page = opened[1].new_page()
            page.goto(f"http://127.0.0.1:{port}/", timeout=limit_s * 1000)
            page.get_by_role("heading", name="Interpretability workbench").wait_for(timeout=limit_s * 1000)
            painted = time.perf_counter() - started
            spec = AnalysisSpec(kind="logit_lens", model="default", prompt="The capital of France is")
            page.goto(f"http://127.0.0.1:{port}/logit_lens?{spec.to_query()}", timeout=limit_s * 1000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=limit_s * 1000)
            first_result = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)
        cache.unlink(missing_ok=True)
        if opened is not None:
            opened[1].close()
            opened[0].stop()
    if painted is None:
        return [row("app: cold start to the first paint", served, None, None, None, "<= 5 s",
                    served <= 5, "until /_stcore/health is ok (no browser here to render the page)")]
    return [row("app: cold start to the first paint", painted, None, None, None, "<= 5 s", painted <= 5,
                f"a fresh `streamlit run app/main.py` until the home page's title is on screen in headless "
                f"Chromium; server ready after {served:.2f} s (setup already done)"),
            row("app: cold start to a first result", first_result, None, None, None, "report", None,
                "the same server: then a logit-lens link on the embedded model (not cached) until its "
                "figure is on screen; torch loads in the background after the first paint")]


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
        drawn = [e for e in at.get("bidi_component") if e.proto.component_name == "workbench_plot"]
        if not drawn and not at.get("plotly_chart"):
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


def cached_link_browser_row(repeats: int = 5, limit_s: float = 120.0) -> dict:
    """A stored activation-patching link opened in a fresh browser context each time (no HTTP
    cache, as a colleague opening a shared link), on an app server already running: the
    time until its first figure is drawn on screen. Median of `repeats` after one warm-up."""
    opened = _browser()
    if opened is None:
        return row("app: a cached link's figure in a fresh browser", None, None, None, None, "<= 2.5 s",
                   None, "not measured: headless Chromium or playwright is missing")
    spec = AnalysisSpec(kind="activation_patching", model="default", **ioi_pair())
    cache = REPO_ROOT / "bench" / ".cached-link.duckdb"
    cache.unlink(missing_ok=True)
    env = {**os.environ, "TQDM_DISABLE": "1", "ANALYSES_CACHE": str(cache)}
    subprocess.run([sys.executable, "-c", "import sys; from analyses import AnalysisSpec, compute; "
                    "compute(AnalysisSpec.from_query(sys.argv[1]))", spec.to_query()],
                   cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=600)  # stored first
    port = _free_port()
    server = subprocess.Popen([*STREAMLIT, "--server.port", str(port)], cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}/activation_patching?{spec.to_query()}"
    figure = ".js-plotly-plot .main-svg >> visible=true"
    try:
        started = time.perf_counter()
        _wait_until_served(port, started, limit_s)
        times, tops = [], []
        for attempt in range(repeats + 1):
            context = opened[1].new_context(viewport={"width": 1400, "height": FOLD_PX})
            page = context.new_page()
            start = time.perf_counter()
            page.goto(url, timeout=limit_s * 1000)
            page.locator(figure).first.wait_for(timeout=limit_s * 1000)
            times.append(time.perf_counter() - start)
            tops.append(page.locator(figure).first.bounding_box()["y"])  # above the fold: no scrolling
            context.close()
            if attempt == 0:
                time.sleep(15)  # the server imports torch in the background after a first paint
    finally:
        server.terminate()
        server.wait(timeout=10)
        cache.unlink(missing_ok=True)
        opened[1].close()
        opened[0].stop()
    seconds = sorted(times[1:])[len(times[1:]) // 2]
    top = max(tops)
    return row("app: a cached link's figure in a fresh browser", seconds, None, None, None,
               f"<= 2.5 s, top < {FOLD_PX} px", seconds <= 2.5 and top < FOLD_PX,
               f"activation_patching on the embedded model, stored beforehand; a new headless Chromium "
               f"context (1400 × {FOLD_PX}) per visit (no HTTP cache) until the first figure is drawn, "
               f"its top {top:.0f} px down; median of {repeats} (each: "
               f"{', '.join(f'{t:.2f}' for t in times[1:])} s)")
