"""The dictionaries page's by-document-type chart: what it colours, what each cell says, and
that a dictionary measured before the split stays a labelled blank, not a zero."""
import numpy as np
import pandas as pd

from analyses.figures.dictionaries import KIND_LABELS, by_kind_chart

KINDS = ["mixed", "needle", "repeat"]


def _frames():
    sites = ["blocks.1.hook_resid_post", "blocks.1.attn.hook_z"]
    explained = pd.DataFrame([[0.967, 0.958, 0.857], [0.923, 0.921, 0.793]], index=sites, columns=KINDS)
    share = pd.DataFrame([[0.61, 0.26, 0.13], [0.45, 0.26, 0.30]], index=sites, columns=KINDS)
    ce = pd.DataFrame([[0.999, 1.0, 0.992], [0.998, 0.999, np.nan]], index=sites, columns=KINDS)
    return explained, share, ce


def test_each_panel_colours_the_shortfall_and_writes_the_measured_value():
    explained, share, ce = _frames()
    fig = by_kind_chart(explained, share, ce)
    variance, entropy = fig.data
    np.testing.assert_allclose(np.array(variance.z), 1 - explained.to_numpy(), atol=1e-12)
    assert variance.text[1][2] == "0.793" and "30% of the site's variance" in variance.customdata[1][2]
    assert entropy.text[1][2] == "–" and entropy.z[1][2] == 0.0  # not measured: blank, named
    assert list(fig.layout.xaxis.ticktext) == [KIND_LABELS[k] for k in KINDS] and fig.layout.xaxis.tickangle == 0
    assert list(fig.layout.yaxis.ticktext) == list(explained.index)
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text and fig.layout.xaxis2.title.text
    # one unsigned scale from 0 to the worst shortfall (1 - 0.793), named
    assert fig.layout.coloraxis.cmin == 0.0 and np.isclose(fig.layout.coloraxis.cmax, 0.207)
    assert fig.layout.coloraxis.colorbar.title.text == "share lost"
