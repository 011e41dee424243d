"""Figures are drawn by plotly.js's cartesian bundle at the Python plotly package's own
plotly.js version, with `st.plotly_chart` for anything the bundle cannot draw."""
import json
import os

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from app.components import plot, plotly_bundle
from helpers import page_figures


def test_the_bundle_is_the_plotly_js_the_python_package_writes_for():
    if not plot.bundle_available():
        if os.environ.get("CI"):
            pytest.fail(f"{plot.BUNDLE} is missing: `make setup` fetches it (npm)")
        pytest.skip(f"{plot.BUNDLE} is missing: `make setup` fetches it with npm")
    assert plotly_bundle.bundle_version() == plotly_bundle.plotly_js_version()
    assert plot.BUNDLE.with_name("plotly-cartesian.LICENSE").is_file()


def test_every_trace_type_the_bundle_lacks_falls_back(monkeypatch):
    monkeypatch.setattr(plot, "bundle_available", lambda: True)
    assert plot.drawable(go.Figure([go.Heatmap(z=[[1]]), go.Bar(y=[1]), go.Scatter(y=[1])]))
    assert not plot.drawable(go.Figure([go.Heatmap(z=[[1]]), go.Scattergl(y=[1])]))
    monkeypatch.setattr(plot, "bundle_available", lambda: False)
    assert not plot.drawable(go.Figure([go.Bar(y=[1])]))  # no bundle: Streamlit's Plotly


def _page(figure_json: str, available: bool) -> AppTest:
    def script(figure_json, available):
        import plotly.io as pio

        from app.components import plot
        plot.bundle_available = lambda: available
        plot.plot(pio.from_json(figure_json), "figure", {"displaylogo": False})

    return AppTest.from_function(script, args=(figure_json, available)).run()


@pytest.mark.parametrize("available", [True, False])
def test_the_page_shows_the_figures_own_json_either_way(available):
    fig = go.Figure(go.Heatmap(z=[[0.5, -1.0]], x=["a", "b"]), layout={"title": {"text": "t"}})
    at = _page(fig.to_json(), available)
    assert not at.exception
    [shown] = page_figures(at)
    assert shown["data"][0]["z"] == [[0.5, -1.0]] and shown["layout"]["title"]["text"] == "t"
    assert bool(at.get("plotly_chart")) is not available  # the fallback only without the bundle
    if available:
        data = json.loads(at.get("bidi_component")[0].proto.json)
        assert data["config"] == {"displaylogo": False, "responsive": True}
