"""Sparsity figures from hand-made tables: every figure titled with labelled axes, one bar
group per p, every neuron in the histogram, the token heatmap labelled by its tokens."""
import numpy as np
import pandas as pd

from analyses import AnalysisSpec, Result
from analyses.figures.sparsity import figures

P = (1.0, 5.0)


def hand_made_result() -> Result:
    layers = pd.DataFrame([dict(p=p, layer=layer, cett=0.1 * p, layer_cett=0.1 * p, threshold=0.02 * (layer + 1),
                                activation_ratio=0.5 - 0.05 * p, sparsity=0.5 + 0.05 * p, ppl_increase=p - 0.05)
                           for p in P for layer in range(3)])
    summary = pd.DataFrame([dict(p=p, cett=0.1 * p, cett_upper=0.1 * p + 0.001, ppl_increase=p - 0.05,
                                 activation_ratio=0.5 - 0.05 * p, sparsity=0.5 + 0.05 * p, steps=6) for p in P])
    curve = pd.DataFrame([dict(cett=c, ppl_increase=20 * c, activation_ratio=1 - c, sparsity=c, mean_threshold=c,
                               source="grid") for c in (0.02, 0.1, 0.3)])
    neurons = pd.DataFrame([dict(p=p, layer=layer, neuron=n, frequency=n / 9, dead=n == 0, always_on=n == 9)
                            for p in P for layer in range(3) for n in range(10)])
    words = ["<|endoftext|>", "Once", " upon", " a", " <b>time"]
    tokens = pd.DataFrame([dict(p=p, document=0, position=i, token=w, layer=layer, activation_ratio=0.1 * i)
                           for p in P for layer in range(3) for i, w in enumerate(words)])
    return Result(spec=AnalysisSpec(kind="sparsity"), tables=dict(
        summary=summary, layers=layers, curve=curve, neurons=neurons, tokens=tokens),
        meta={"text": "corpus sample", "n_tokens": 5})


def test_every_figure_is_titled_with_labelled_axes():
    for name, fig in figures(hand_made_result()).items():
        assert fig.layout.title.text, name
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text, name


def test_one_bar_group_per_p_and_every_neuron_counted():
    shown = figures(hand_made_result())
    assert [trace.name for trace in shown["layers"].data] == ["PPL-1%", "PPL-5%"]
    assert np.allclose(shown["layers"].data[0].y, 100 * 0.55)
    for trace in shown["frequency"].data:
        assert len(trace.x) == 30 and "3 dead, 3 always on" in trace.name


def test_the_token_heatmap_is_labelled_by_its_tokens_escaped():
    heat = figures(hand_made_result())["tokens"]
    ticks = list(heat.layout.xaxis.ticktext)
    assert ticks[1] == "Once" and "<b>" not in "".join(ticks)
    assert heat.data[0].z.shape == (3, 5)
