"""The attribution graph page in a real browser: build a graph from a link, pin a node,
group two into a named supernode, and reopen the share link with both (Chromium through
Playwright, the server of test_browser.py)."""
from urllib.parse import unquote

import pytest

from analyses import AnalysisSpec
from app import links
from tests.app.test_browser import CHART, RESULT_TIMEOUT_MS, page, server, tiny_model  # noqa: F401 - fixtures
from tests.kinds.graph_helpers import random_transcoders


def _pick(browser_page, label: str, nodes: list[str]) -> None:
    """Choose `nodes` in the multiselect labelled `label`: type each id, Enter, then leave."""
    box = browser_page.locator('[data-testid="stMultiSelect"]').filter(has_text=label)
    for node in nodes:
        box.locator("input").fill(node)
        browser_page.keyboard.press("Enter")
        browser_page.wait_for_timeout(1500)  # the pick reruns the page: let it settle before the next
    browser_page.locator("h1").first.click()  # close the menu


def _groups_line(browser_page):
    return browser_page.locator('[data-testid="stMarkdownContainer"]', has_text="(2 nodes)").first


@pytest.mark.slow
def test_build_pin_group_and_reopen_the_share_link(server, page, tiny_model, tiny_models_root,  # noqa: F811
                                                  model_roots, tmp_path):
    from analyses.dictionaries import formats
    from analyses.runtime import models

    folder = tiny_models_root / "graph-transcoders"
    if not folder.exists():
        bridge = models.load(str(tiny_model)).bridge
        for layer, coder in enumerate(random_transcoders(bridge)):
            formats.save(coder, folder / f"blocks.{layer}.mlp")
    spec = AnalysisSpec(kind="graph", model=str(tiny_model), prompt="When Mary and John went",
                        transcoders=str(folder))
    page.goto(links.share_url(spec, server))
    page.wait_for_selector(CHART, timeout=RESULT_TIMEOUT_MS)
    from analyses.kinds.graph.run import run

    kept = run(models.load(str(tiny_model)), spec).tables["nodes"].query("kept").sort_values(
        "influence", ascending=False)["node"].tolist()
    _pick(page, "Pinned nodes", kept[:1])
    page.wait_for_function("() => location.href.includes('view.pinned=')", timeout=60_000)
    _pick(page, "Nodes to group", kept[1:3])
    page.get_by_label("Group name").fill("names")
    page.get_by_label("Group name").press("Enter")
    page.get_by_role("button", name="Group them").click()
    page.wait_for_function("() => location.href.includes('view.groups=')", timeout=60_000)
    try:
        _groups_line(page).wait_for(timeout=60_000)
    finally:
        page.screenshot(path=str(tmp_path / "graph_groups.png"), full_page=True)
    url = unquote(page.url)
    assert f"view.pinned={kept[0]}" in url and f"view.groups=names={kept[1]}|{kept[2]}" in url
    share = page.url
    page.goto("about:blank")
    page.goto(share)  # the link alone brings the pins and the group back
    page.wait_for_selector(CHART, timeout=RESULT_TIMEOUT_MS)
    _groups_line(page).wait_for(timeout=60_000)
    pinned = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Pinned nodes")
    page.screenshot(path=str(tmp_path / "graph_reopened.png"), full_page=True)
    assert pinned.get_by_text(kept[0], exact=True).count() == 1
    assert pinned.get_by_text(kept[1], exact=True).count() == 0
    assert page.locator(f"{CHART} .annotation-text", has_text="names").count() == 1
