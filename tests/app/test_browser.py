"""The whole path in a real browser: the Streamlit server, a share link, a preset click.

Drives Debian's Chromium (/usr/bin/chromium; `make test` installs it) through Playwright's
Python package; never `playwright install`. The server runs as a subprocess on a free
port, offline, loading a tiny model from this test's model roots.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from unittest import mock
from urllib.parse import quote

import pytest

from analyses import AnalysisSpec
from app import links

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
START_TIMEOUT_S = 90  # the server imports torch and transformer_lens on a shared CPU
RESULT_TIMEOUT_MS = 180_000
CHART = ".js-plotly-plot"  # a drawn plotly figure (app/components/plot.py, or st.plotly_chart)
PROGRESS = '[data-testid="stProgress"], [data-testid="stStatusWidget"]'

if not CHROMIUM.is_file():
    pytest.skip("/usr/bin/chromium is missing: `make test` installs it (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing: "
                               "pip install -r requirements-dev.txt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_model(_tiny_model_builder) -> Path:
    return _tiny_model_builder("gpt2")


# Text that Markdown would turn into remote images, were model text read as Markdown.
INJECTED_GENERATION = [" ![x](http://127.0.0.1:1/x.png)", " <img src=http://127.0.0.1:1/y.png>", " **b**"]
INJECTED_PROMPT = "![p](http://127.0.0.1:1/p.png) When Mary"


def injected_steering_spec(model: Path) -> AnalysisSpec:
    return AnalysisSpec(kind="steering", model=str(model), prompt=INJECTED_PROMPT, ablate="L0H0",
                        max_new_tokens=3)


def store_injected_steering(cache: Path, model: Path) -> None:
    """Store, under the key of `injected_steering_spec`, the tiny model's real result with its
    ablated continuation replaced by `INJECTED_GENERATION` (no model writes that on demand)."""
    from analyses.core.catalogue import CATALOGUE
    from analyses.runtime import models
    from analyses.runtime.local_worker import LocalWorker
    from analyses.runtime.service import compute, result_key
    from analyses.runtime.store import Store

    spec = injected_steering_spec(model)
    scratch = Store(cache.with_name("scratch.duckdb"))
    result = compute(spec, worker=LocalWorker(store=scratch), store=scratch)
    scratch.close()
    generations = result.tables["generations"].copy()
    ablated = generations["ablated"].astype(bool)
    generations.loc[ablated, "tokens"] = json.dumps(INJECTED_GENERATION)
    generations.loc[ablated, "text"] = "".join(INJECTED_GENERATION)
    generations.loc[ablated, "logprobs"] = json.dumps([-1.0] * len(INJECTED_GENERATION))
    store = Store(cache)
    stored = store.put(result_key(spec), replace(result, tables={**result.tables, "generations": generations}),
                       models.fingerprint(str(model)), CATALOGUE["steering"].version)
    store.close()
    assert stored


@pytest.fixture(scope="module")
def server(tiny_model, tiny_models_root, tmp_path_factory):
    """The app served by `streamlit run` on a free port (one server for this module), with
    a fixed example suite whose names are single tokens of the tiny model, loading models
    from the tiny models' folder; yields its base URL."""
    from analyses.runtime import models
    from app.components.presets import PROMPTS_ENV

    folder = tmp_path_factory.mktemp("server")
    prompts = folder / "prompts.json"
    prompts.write_text(json.dumps({"ioi": [{
        "clean": "When Mary and John went to the store, John gave a drink to",
        "corrupted": "When Mary and John went to the store, Mary gave a drink to",
        "answer": " Mary", "wrong": " John"}]}))
    roots = os.pathsep.join(str(r) for r in (tiny_models_root, *models.allowed_roots()))
    env = dict(os.environ, HF_HUB_OFFLINE="1", ANALYSES_CACHE=str(folder / "cache.duckdb"),
               **{PROMPTS_ENV: str(prompts), models.ROOTS_ENV: roots})
    with mock.patch.dict(os.environ, {models.ROOTS_ENV: roots}):  # before the server holds the file
        store_injected_steering(folder / "cache.duckdb", tiny_model)
    port = free_port()
    streamlit = Path(sys.executable).with_name("streamlit")
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen(
        [str(streamlit), "run", "app/main.py", "--server.port", str(port),
         "--server.headless", "true", "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}): "
                            f"{(folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 2200})
        finally:
            browser.close()


@pytest.mark.slow
def test_share_link_then_preset_in_a_real_browser(server, page, tiny_model, tmp_path):
    spec = AnalysisSpec(kind="logit_lens", model=str(tiny_model), prompt="Once upon a time",
                        top_k=3)
    page.goto(links.share_url(spec, server))
    page.wait_for_selector(CHART, timeout=RESULT_TIMEOUT_MS)
    page.wait_for_selector(f"{CHART} .xtick text", state="attached", timeout=30_000)
    assert page.locator(CHART).count() == 1  # no targets: the heatmap alone
    assert page.get_by_text("This link cannot be opened").count() == 0

    page.get_by_text("Inputs", exact=True).first.click()  # a complete link folds its inputs away
    page.get_by_role("button", name="ioi: When Mary and John").click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot .xtick text')]
                 .some(t => t.textContent.includes('\u2423Mary'))""", timeout=RESULT_TIMEOUT_MS)
    page.wait_for_function(f"() => document.querySelectorAll('{CHART}').length === 2",
                           timeout=RESULT_TIMEOUT_MS)  # the heatmap and the target ranks
    assert "prompt=When" in page.url and "token=" in page.url  # the URL is the new state
    page.wait_for_function(  # the share box follows once the run has drawn it
        """() => (document.querySelector('.workbench-copy pre') || {}).innerText
                 ?.replace(/\\n/g, '').includes('token=%20Mary%2C%20John')""",
        timeout=RESULT_TIMEOUT_MS)
    share = page.locator(".workbench-copy pre").first.inner_text().replace("\n", "")
    assert share.startswith(f"{server}/logit_lens?kind=logit_lens&")
    page.screenshot(path=tmp_path / "logit_lens.png", full_page=True)
    assert (tmp_path / "logit_lens.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_long_job_shows_its_progress_in_a_real_browser(server, page, tiny_model):
    """A link whose job takes a second or two (head detectors with ablation: needle prompts,
    then six ablated runs per detector) shows a progress bar until its figures come. (A
    tiny model's logit lens is done before the bar's script has even loaded.)"""
    page.add_init_script("""
        window.__sawProgress = false;
        new MutationObserver(() => {
            if (document.querySelector('%s')) window.__sawProgress = true;
        }).observe(document, {subtree: true, childList: true});
    """ % PROGRESS.replace("'", "\\'"))
    spec = AnalysisSpec(kind="heads", model=str(tiny_model), detector="induction,retrieval", ablate=True,
                        seed=11)
    page.goto(links.share_url(spec, server))
    page.wait_for_selector(CHART, timeout=RESULT_TIMEOUT_MS)
    assert page.evaluate("window.__sawProgress"), "no progress indicator while running"


@pytest.mark.slow
def test_bad_link_and_home_in_a_real_browser(server, page, tmp_path):
    page.goto(f"{server}/logit_lens?kind=logit_lens&prompt=Hi&top_k=abc")
    page.get_by_text("This link cannot be opened").wait_for(timeout=RESULT_TIMEOUT_MS)
    assert page.locator(CHART).count() == 0
    page.goto(server)
    page.get_by_text("Interpretability workbench").first.wait_for(timeout=RESULT_TIMEOUT_MS)
    page.get_by_text("ioi: When Mary and John").first.wait_for(timeout=30_000)
    page.screenshot(path=tmp_path / "home.png", full_page=True)


@pytest.mark.slow
def test_a_cached_link_loads_only_what_its_figure_needs(server, tiny_model):
    """A share link whose result is stored, opened in a fresh browser context (no HTTP cache):
    the figure is drawn by plotly.js's 1.5 MB cartesian bundle, not Streamlit's 4.7 MB Plotly,
    and neither the table viewer nor the syntax highlighter is fetched before it. How long it
    takes is `make bench`'s row "app: a cached link's figure in a fresh browser" (timings are
    not asserted in tests); printed here too."""
    from app.components.plot import bundle_available

    if not bundle_available():
        pytest.skip("plotly.js's cartesian bundle is missing (`make setup` fetches it with npm)")
    spec = AnalysisSpec(kind="logit_lens", model=str(tiny_model), prompt="Once upon a time there", top_k=2)
    url = links.share_url(spec, server)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            first = browser.new_context().new_page()  # computes and stores the result
            first.goto(url)
            first.wait_for_selector(f"{CHART} .main-svg", timeout=RESULT_TIMEOUT_MS)
            first.context.close()
            context = browser.new_context()
            page = context.new_page()
            fetched = []
            page.on("request", lambda request: fetched.append(request.url.rsplit("/", 1)[-1]))
            start = time.monotonic()
            page.goto(url)
            page.wait_for_selector(f"{CHART} .main-svg", timeout=RESULT_TIMEOUT_MS)
            seconds = time.monotonic() - start
            print(f"cached link: figure drawn {seconds:.2f} s after the link was opened")
            assert "plotly-cartesian.min.js" in fetched
            assert page.evaluate("typeof window.Plotly.newPlot") == "function"
            for chunk in ("PlotlyChart", "StreamlitSyntaxHighlighter", "DataFrame"):
                assert not [f for f in fetched if f.startswith(chunk)], f"{chunk} was fetched"
            assert page.locator(".workbench-copy pre").first.inner_text().startswith(server)
        finally:
            browser.close()


@pytest.mark.slow
def test_a_set_uploaded_in_the_browser_runs_with_intervals(server, page, tiny_model, tmp_path):
    rows = [{"prompt": "When Mary and John went to the store, John gave a drink to", "answer": " Mary",
             "wrong": " John"},
            {"prompt": "When Mary and John went to the park, John gave a ball to", "answer": " Mary",
             "wrong": " John"},
            {"prompt": "When Mary and John went to the store, Mary gave a drink to", "answer": " John",
             "wrong": " Mary"}]
    upload = tmp_path / "three.jsonl"
    upload.write_text("".join(json.dumps(r) + "\n" for r in rows))
    page.goto(f"{server}/dla?model={quote(str(tiny_model), safe='')}")  # a link that picks the model
    page.get_by_text("Add a prompt set from a file").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
    page.get_by_text("Stored three.jsonl as sha256:").wait_for(timeout=RESULT_TIMEOUT_MS)
    box = page.get_by_role("textbox", name="Prompt set (runs every row instead of the inputs above)")
    page.wait_for_function("""() => [...document.querySelectorAll('input')]
                              .some(i => i.value.startsWith('sha256:'))""", timeout=30_000)
    reference = box.input_value()
    page.get_by_test_id("stBaseButton-primary").filter(has_text="Run").click()  # Run: the one primary button
    page.get_by_text("Examples run").wait_for(timeout=RESULT_TIMEOUT_MS)
    page.wait_for_selector(f"{CHART} .main-svg", timeout=RESULT_TIMEOUT_MS)
    assert f"dataset={reference.replace(':', '%3A')}" in page.url
    assert "prompt=" not in page.url  # the set's rows give the inputs
    page.screenshot(path=tmp_path / "set.png", full_page=True)


@pytest.mark.slow
def test_model_and_user_text_show_as_text_never_as_markdown_or_html(server, page, tiny_model):
    """A stored steering result whose continuation (model text) and prompt (user text) hold
    Markdown images and an HTML image: the page shows their characters and fetches nothing."""
    fetched = []
    page.on("request", lambda request: fetched.append(request.url))
    page.goto(links.share_url(injected_steering_spec(tiny_model), server))
    page.get_by_text("intact model", exact=True).wait_for(timeout=RESULT_TIMEOUT_MS)
    markdown = page.locator("[data-testid='stMarkdownContainer']")  # the text, not the figures
    markdown.get_by_text("127.0.0.1:1/x.png", exact=False).first.wait_for(timeout=30_000)
    shown = "\n".join(markdown.all_inner_texts())
    for text in ("![x](http://127.0.0.1:1/x.png)", "<img src=http://127.0.0.1:1/y.png>", "**b**",
                 "![p](http://127.0.0.1:1/p.png)"):
        assert text in shown, text
    assert page.locator('img[src*="127.0.0.1:1"]').count() == 0
    assert page.locator("a[href*='127.0.0.1:1']").count() == 0
    assert not [url for url in fetched if "127.0.0.1:1/" in url]


@pytest.mark.slow
def test_the_token_preview_follows_typing_before_run(server, page, tiny_model):
    """Typing in a one-line box updates its token preview after a short pause, leaving a
    multi-line box (Tab) updates the prompt's: neither needs Run, and the link stays."""
    spec = AnalysisSpec(kind="logit_lens", model=str(tiny_model), prompt="Once upon", top_k=3)
    url = links.share_url(spec, server)
    page.goto(url)
    page.wait_for_selector(CHART, timeout=RESULT_TIMEOUT_MS)
    page.get_by_text("Inputs", exact=True).first.click()  # a complete link folds its inputs away
    captions = page.locator("[data-testid='stCaptionContainer']")
    prompt_caption = captions.filter(has_text="tokens with BOS")
    prompt_caption.first.wait_for(timeout=30_000)
    before = prompt_caption.first.inner_text()

    page.get_by_role("textbox", name="Target tokens").press_sequentially(" Mary", delay=40)
    captions.filter(has_text="Mary").first.wait_for(timeout=30_000)  # no Enter, no Run
    prompt = page.get_by_role("textbox", name="Prompt", exact=True)
    prompt.press_sequentially(" a time there was", delay=20)
    prompt.press("Tab")
    page.wait_for_function(
        """before => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
                    .some(c => c.innerText.includes('tokens with BOS') && c.innerText !== before
                               && c.innerText.includes('ime'))""", arg=before, timeout=30_000)  # t·ime: new text
    page.get_by_text("The inputs above were edited").wait_for(timeout=30_000)
    assert page.url == url  # nothing ran: the link is still the one opened
    page.get_by_role("textbox", name="Target tokens").press("Control+Enter")  # Run from the keyboard
    page.wait_for_function("() => new URLSearchParams(location.search).get('token') === ' Mary'",
                           timeout=RESULT_TIMEOUT_MS)  # the URL is the new state
    assert page.evaluate("new URLSearchParams(location.search).get('prompt')") == "Once upon a time there was"
    page.wait_for_function(f"() => document.querySelectorAll('{CHART}').length === 2",
                           timeout=RESULT_TIMEOUT_MS)  # the heatmap and the target's ranks


NOTE_ATTACK = ("<script>window.pwned = 1</script> <img src=x onerror=\"window.pwned = 2\"> "
               "![x](http://127.0.0.1:1/x.png) **kept bold**")
SCREENSHOTS = Path(os.environ.get("ANALYSES_SCREENSHOTS", "/tmp/workbench-screenshots"))


@pytest.mark.slow
def test_a_three_step_notebook_reopens_in_a_fresh_context_and_downloads_as_html(server, tiny_model, tmp_path):
    """Add a result to the notebook from its page, add two more steps by their share links,
    write a note that tries HTML and a remote image, then open the notebook's link in a fresh
    browser context and download it as one HTML file."""
    specs = [AnalysisSpec(kind="logit_lens", model=str(tiny_model), prompt="Once upon a time", top_k=2),
             AnalysisSpec(kind="attention", model=str(tiny_model), prompt="When Mary and John went"),
             AnalysisSpec(kind="dla", model=str(tiny_model), prompt="When Mary and John went to the store, "
                          "John gave a drink to", answer=" Mary", wrong=" John")]
    remote = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(links.share_url(specs[0], server))
            page.wait_for_selector(CHART, timeout=RESULT_TIMEOUT_MS)
            page.get_by_role("button", name="Add to notebook").click()
            page.get_by_text("Added as step 1").wait_for(timeout=60_000)
            page.get_by_role("link", name="Open the notebook").click()  # same session
            box = page.get_by_label("Add a step from a share link")
            for n, spec in enumerate(specs[1:], start=2):
                box.fill(links.share_url(spec, server))
                page.get_by_role("button", name="Add the step").click()
                page.get_by_role("heading", name=f"{n}. ").wait_for(timeout=RESULT_TIMEOUT_MS)
            page.get_by_text("Edit step 1").click()
            note = page.get_by_label("Note (Markdown", exact=False)
            note.first.fill(NOTE_ATTACK)
            note.first.press("Control+Enter")
            # the note drawn (not its text box), and the share box on the notebook the URL names
            page.locator(".workbench-note").get_by_text("kept bold").wait_for(timeout=60_000)
            page.wait_for_function("""() => {
                const box = document.querySelector('.workbench-copy pre');
                const ref = new URLSearchParams(location.search).get('notebook');
                return box && ref && box.innerText.replace(/\\n/g, '').endsWith(ref); }""", timeout=60_000)
            page.wait_for_function(f"() => document.querySelectorAll('{CHART}').length === 3",
                                   timeout=RESULT_TIMEOUT_MS)
            shared = page.locator(".workbench-copy pre").first.inner_text().replace("\n", "")
            assert shared.startswith(f"{server}/notebook?notebook=sha256:")
            assert "notebook=sha256" in page.url
            context.close()

            fresh = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
            page = fresh.new_page()
            page.on("request", lambda r: remote.append(r.url) if "127.0.0.1:1/" in r.url else None)
            page.goto(shared)
            page.wait_for_function(f"() => document.querySelectorAll('{CHART} .main-svg').length >= 3",
                                   timeout=RESULT_TIMEOUT_MS)
            assert page.get_by_role("heading", name="3. ").count() == 1
            notes = page.locator(".workbench-note")
            assert notes.count() == 1 and "kept bold" in notes.first.inner_text()
            assert notes.locator("img, script").count() == 0
            assert "<script>" in notes.first.inner_text()  # shown as text
            assert page.evaluate("window.pwned === undefined")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOTS / "notebook-3-steps.png")
            page.get_by_role("button", name="Download HTML").scroll_into_view_if_needed()
            page.screenshot(path=SCREENSHOTS / "notebook-3-steps-end.png")
            with page.expect_download(timeout=120_000) as download:
                page.get_by_role("button", name="Download HTML").click()
            saved = tmp_path / "notebook.html"
            download.value.save_as(saved)
        finally:
            browser.close()
    document = saved.read_text()
    assert document.count('class="step"') == 3 and len(re.findall(r'<div id="figure-\d"', document)) == 3
    for spec in specs:
        assert links.share_url(spec, server).replace("&", "&amp;") in document
    assert "<strong>kept bold</strong>" in document and "<img" not in document.split("<script", 1)[0]
    assert "127.0.0.1:1" not in document
    assert not remote, remote


FOLD_PX = 900  # the window's height: a link must show its first figure without scrolling
IOI_PAIR = {"clean": "When Mary and John went to the store, John gave a drink to",
            "corrupted": "When Mary and John went to the store, Mary gave a drink to",
            "answer": " Mary", "wrong": " John"}
# A cheap complete spec per page on the tiny model (its names are single tokens)
LANDING_SPECS = {
    "logit_lens": {"prompt": "Once upon a time", "top_k": 2},
    "heads": {"detector": "induction", "seed": 3},
    "activation_patching": {**IOI_PAIR, "granularity": "attn_out"},
    "neurons": {"prompt": "When Mary and John went", "top_k": 3},
    "dla": {"prompt": IOI_PAIR["clean"], "answer": " Mary", "wrong": " John"},
    "attribution_patching": IOI_PAIR,
    "attention": {"prompt": "When Mary and John went to the store"},
    "steering": {"prompt": "When Mary", "positive": "Mary", "negative": "John", "layer": "1",
                 "coeff": "0,2", "max_new_tokens": 3},
    "circuit": {**IOI_PAIR, "steps": 2},
    "ablation_sweep": {"prompt": IOI_PAIR["clean"], "answer": " Mary", "wrong": " John"},
    "knockout": {"prompt": IOI_PAIR["clean"], "answer": " Mary", "subject": "Mary"},
    "sparsity": {"prompt": "Once upon a time there was a little girl. She liked to play in the park "
                           "with her friends and her dog every day after school.", "p": "5"},
    "probe": {"dataset": "name_concept"},
    # the pages that read a dictionary: only the embedded model ships them
    "features": {"model": "default", "prompt": IOI_PAIR["clean"], "dictionary": "blocks.1.attn.hook_z"},
    "latent_index": {"model": "default", "dictionary": "blocks.0.mlp", "corpus_tokens": 2_000},
    "graph": {"model": "default", "prompt": "When Mary and John went to the store, John gave a drink to",
              "max_features": 50},
}


@pytest.fixture(scope="module")
def window():
    """One browser page the size of a laptop screen (1400 × 900), shared by the landing tests."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": FOLD_PX})
        finally:
            browser.close()


def test_every_page_has_a_landing_spec():
    from app.routes import PAGES

    assert set(LANDING_SPECS) == set(PAGES)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(LANDING_SPECS))
def test_a_complete_link_lands_on_its_result(server, window, tiny_model, kind):
    """A link whose spec is complete opens with its first figure on screen, without
    scrolling, and its inputs folded away (one click opens them)."""
    spec = AnalysisSpec(kind=kind, **{"model": str(tiny_model), **LANDING_SPECS[kind]})
    view = {"layer": "1", "head": "1"} if kind == "attention" else None  # its one head, in the link
    window.goto(links.share_url(spec, server, view))
    window.wait_for_selector(f"{CHART} .main-svg", timeout=RESULT_TIMEOUT_MS)
    share = window.locator(".workbench-copy pre").first
    share.wait_for(timeout=60_000)  # the page is drawn to its end
    if view:
        assert share.inner_text().replace("\n", "").endswith("&view.layer=1&view.head=1")
    assert window.get_by_text("This link cannot be opened").count() == 0
    top = window.locator(CHART).first.bounding_box()["y"]
    print(f"{kind}: first figure's top at {top:.0f} px")
    assert top < FOLD_PX - 300, f"{kind}: the first figure starts {top:.0f} px down"
    run = window.get_by_test_id("stBaseButton-primary").filter(has_text="Run").first
    assert not run.is_visible()  # the inputs are folded away
    window.get_by_text("Inputs", exact=True).first.click()  # one click opens them
    run.wait_for(timeout=30_000)


@pytest.mark.slow
def test_a_set_link_shows_no_single_prompt_inputs(server, window, tiny_model):
    spec = AnalysisSpec(kind="activation_patching", model=str(tiny_model), dataset="ioi",
                        granularity="attn_out")
    window.goto(links.share_url(spec, server))
    window.locator(".workbench-copy pre, [data-testid='stAlert']").first.wait_for(timeout=RESULT_TIMEOUT_MS)
    window.get_by_text("Inputs", exact=True).first.click()
    window.get_by_test_id("stBaseButton-primary").filter(has_text="Run").first.wait_for(timeout=30_000)
    for label in ("Clean prompt", "Corrupted prompt", "Answer", "Wrong answer"):
        assert window.get_by_role("textbox", name=label, exact=True).count() == 0, label
    assert window.get_by_role("textbox", name="Prompt set (runs every row instead of the inputs above)",
                              exact=False).input_value() == "ioi"
