"""Figures on a page, drawn by plotly.js's cartesian bundle instead of Streamlit's own Plotly.

Streamlit's `st.plotly_chart` loads a 4.7 MB script, and only once the first figure has
arrived: on a fresh browser that alone takes 1–2 s (fetched, then compiled, on a busy
2-core machine), so a cached link showed its figure after 3–4 s. plotly.js's
`cartesian` partial bundle (the npm package `plotly.js-cartesian-dist-min`, at the plotly.js
version the Python `plotly` package ships) holds every trace type the figures use in 1.5 MB
and compiles in about a third of the time; `make setup` puts it under `app/static/vendor/`,
Streamlit serves it as a static file, and a small component (Streamlit's components v2,
drawn in the page itself, not in an iframe) loads it once per page for every figure.

Where the bundle is missing (setup skipped it) or a figure has a trace type the bundle
lacks, `st.plotly_chart` draws it as before. Either way the figure is `fig`'s own JSON:
the page shows exactly what `result.figures()` gives a notebook.
"""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

BUNDLE = Path(__file__).resolve().parents[1] / "static" / "vendor" / "plotly-cartesian.min.js"
BUNDLE_URL = "app/static/vendor/plotly-cartesian.min.js"  # Streamlit's static serving of app/static/
# trace types in plotly.js's cartesian bundle (its README): anything else falls back
CARTESIAN_TRACES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d",
                              "histogram2dcontour", "image", "pie", "scatter", "scatterternary",
                              "violin"})

_JS = """
const SOURCE = "__SOURCE__";

function loadPlotly() {
  // one script tag per page, shared by every figure
  if (!window.__workbenchPlotly) {
    window.__workbenchPlotly = new Promise((resolve, reject) => {
      if (window.Plotly) { resolve(window.Plotly); return; }
      const script = document.createElement("script");
      script.src = SOURCE;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => reject(new Error("plotly.js could not be loaded from " + SOURCE));
      document.head.appendChild(script);
    });
  }
  return window.__workbenchPlotly;
}

export default function (component) {
  const { data, parentElement } = component;
  const promise = loadPlotly();
  let target = parentElement.querySelector(".workbench-figure");
  if (!target) {
    target = document.createElement("div");
    target.className = "workbench-figure";
    target.style.width = "100%";
    parentElement.appendChild(target);
  }
  const figure = JSON.parse(data.figure);
  let drawn = null, observer = null;
  promise.then((Plotly) => {
    drawn = Plotly;
    return Plotly.react(target, figure.data, figure.layout || {}, data.config).then(() => {
      // the page's width can settle after the first draw (or change later): follow it
      observer = new ResizeObserver(() => { if (target.offsetWidth) Plotly.Plots.resize(target); });
      observer.observe(target);
    });
  }).catch((err) => { target.textContent = String(err); });
  return () => {
    if (observer) observer.disconnect();
    if (drawn) drawn.purge(target);
  };
}
""".replace("__SOURCE__", BUNDLE_URL)

_component = None


def _mount():
    global _component
    if _component is None:
        _component = st.components.v2.component("workbench_plot", js=_JS, isolate_styles=False)
    return _component


def bundle_available() -> bool:
    return BUNDLE.is_file()


def drawable(fig: go.Figure) -> bool:
    """True when the cartesian bundle can draw every trace of `fig`."""
    return bundle_available() and all(trace.type in CARTESIAN_TRACES for trace in fig.data)


def plot(fig: go.Figure, key: str, config: dict) -> None:
    """`fig` drawn at the page's width, as plotly.js draws it in a notebook."""
    if not drawable(fig):
        st.plotly_chart(fig, key=key, config=config)
        return
    layout_config = {**config, "responsive": True}
    _mount()(key=key, data={"figure": fig.to_json(), "config": layout_config})
