"""The features kind's error chart and the latent dashboard's logit effects: what the legend and
the layout promise a reader."""
import pandas as pd

from analyses.figures import features as ff
from analyses.figures import latent_index as lf


def _errors() -> pd.DataFrame:
    return pd.DataFrame({"position": [0, 1, 2], "token": ["<bos>", "a", "b"], "error_norm": [40.0, 1.0, 2.0],
                         "norm": [60.0, 10.0, 11.0], "relative": [40 / 60, 0.1, 2 / 11]})


def test_the_error_legend_shows_each_kind_of_bar_in_its_own_colour():
    fig = ff.error_chart(_errors(), None, first=1, site="blocks.1.hook_resid_post")
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert bars["|error| = |y − ŷ|"].marker.color == ff.BAR_COLOUR
    assert list(bars["|error| = |y − ŷ|"].y) == [1.0, 2.0]
    bos = next(t for name, t in bars.items() if "BOS" in name)
    assert bos.marker.color == ff.BOS_COLOUR and list(bos.y) == [40.0]
    assert fig.layout.yaxis.range[1] < 40  # the axis fits the positions after BOS; the title says so
    assert "axis fits the other positions" in fig.layout.title.text


def test_without_bos_in_view_there_is_one_error_trace():
    fig = ff.error_chart(_errors(), [1, 2], first=1)
    assert [t.name for t in fig.data if t.type == "bar"] == ["|error| = |y − ŷ|"]


def test_promoted_and_suppressed_tokens_sit_one_above_the_other():
    effects = pd.DataFrame({"latent": 3, "direction": ["promote"] * 2 + ["suppress"] * 2, "rank": [1, 2, 1, 2],
                            "token_str": [" Paris", " Rome", " cat", " dog"], "score": [0.9, 0.5, -0.7, -0.2]})
    fig = lf.logit_effects_chart(effects, 3)
    promote, suppress = fig.data
    assert [label[:3] for label in promote.y] == ["1. ", "2. "] and promote.y[0].endswith("Paris")
    # stacked: the two panels share the full width and split the height
    assert fig.layout.xaxis.domain == fig.layout.xaxis2.domain
    assert fig.layout.yaxis.domain[0] > fig.layout.yaxis2.domain[1]
    assert all(ax.title.text == "logits per unit of activation" for ax in (fig.layout.xaxis, fig.layout.xaxis2))
    assert list(suppress.x) == [-0.7, -0.2]
