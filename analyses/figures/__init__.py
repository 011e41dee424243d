"""Plotly figures from a result's tables, with no Streamlit: a notebook gets the figures
the app shows.

    from analyses import compute, figures_for
    result = compute(spec)
    figures_for(result)       # == result.figures(): {name: plotly Figure}, in display order

One module per kind (`logit_lens`, `activation_patching`, …), each with
`figures(result)` and the single-figure builders it uses; the catalogue names each
kind's `figures` function. `layout.heatmap` is the one heatmap builder (labels, a
centred diverging scale for signed values, hover text); `text` escapes untrusted text.
"""
from __future__ import annotations


def figures_for(result, **view) -> dict:
    """The named figures of `result` (its kind's figure function from the catalogue)."""
    return result.figures(**view)
