"""Direct-path patching over a prompt set: one sender × receiver grid per receiver input (q,
k, v) of the ratio of the means, values printed, its paired interval on hover, the three on
one scale set by the data (not by one saturating cell)."""
import numpy as np
import pandas as pd
import pytest

from analyses import AnalysisSpec, Result
from analyses.figures.sets import path_mean_heatmap


def path_summary() -> pd.DataFrame:
    rows = [dict(n_tokens=-1, granularity="direct_path", layer=rl, position=-1, head=rh, sender_layer=sl,
                 sender_head=sh, receiver_input=name, mean=(sl + sh / 10 + rh / 100) * (2 if name == "k" else 1),
                 sem=0.01, ci_low=-0.5, ci_high=0.5, n=7, interval="paired delta")
            for rl in (1, 2) for sl in range(rl) for sh in range(2) for rh in range(2) for name in ("q", "k")]
    return pd.DataFrame(rows)


def test_a_sets_direct_paths_get_one_sender_by_receiver_grid_per_input():
    summary = path_summary()
    effects = summary.drop(columns=["mean", "sem", "ci_low", "ci_high", "n", "interval", "n_tokens"]).assign(
        example=0, n_tokens=5, value=0.1, raw=1.0)
    result = Result(spec=AnalysisSpec(kind="activation_patching", dataset="ioi", granularity="direct_path"),
                    tables={"effects": effects, "effects_summary": summary}, meta={"n_examples": 7})
    figures = result.figures()
    assert {"mean_direct_path_q", "mean_direct_path_k"} <= set(figures)
    k = figures["mean_direct_path_k"]
    q = figures["mean_direct_path_q"]
    assert k.data[0].zmax == q.data[0].zmax == pytest.approx(2 * (1 + 0.1 + 0.01))  # one scale for q, k, v
    assert k.data[0].zmid == 0


def test_the_path_grid_prints_values_and_puts_the_interval_on_hover():
    fig = path_mean_heatmap(path_summary(), "q")
    z = np.array(fig.data[0].z, dtype=float)
    assert list(fig.layout.yaxis.ticktext) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    assert list(fig.layout.xaxis.ticktext) == ["L1H0", "L1H1", "L2H0", "L2H1"]
    assert z[3, 2] == pytest.approx(1.1)  # L1H1 -> L2H0
    assert np.isnan(z[2, 0])  # no L1 -> L1 path: blank
    assert fig.data[0].text[3][2] == "1.100" and fig.data[0].text[2][0] == ""  # values printed, 3 decimals
    hover = fig.data[0].customdata[3][2]
    assert "paired 95% interval -0.500 to 0.500" in hover and "n = 7" in hover
    assert fig.data[0].zmax == pytest.approx(1.11)  # scaled to the data
