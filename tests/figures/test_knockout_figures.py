"""Attention knockout's figure: a line per source set over window starts, the relative change
in percent; on a prompt set the means with their 95% intervals as error bars."""
import numpy as np
import pandas as pd
import pytest

from analyses import AnalysisSpec, Result
from analyses.core.summary import mean_interval
from analyses.figures.knockout import figures

SOURCES = ("subject", "other", "last")


def sweep(relative: dict[str, list[float]], intact: float = 0.5) -> pd.DataFrame:
    rows = [dict(window_start=s, window_end=s + 1, source=source, answer_prob=intact * (1 + r),
                 change=intact * r, relative=r, n_keys=1)
            for source, values in relative.items() for s, r in enumerate(values)]
    return pd.DataFrame(rows)


def test_one_prompt_draws_a_line_per_source_in_percent():
    table = sweep({"subject": [-0.9, -0.2, 0.0], "other": [-0.1, 0.05, 0.0], "last": [0.0, -0.3, -0.1]})
    result = Result(spec=AnalysisSpec(kind="knockout", prompt="The capital of France is", subject="France"),
                    tables={"knockout": table}, meta={"intact_prob": 0.5, "answer_token": " Paris"})
    (fig,) = figures(result).values()
    assert [t.name for t in fig.data] == ["subject → last", "other tokens → last", "last → last"]
    subject = fig.data[0]
    assert list(subject.x) == ["L0–L1", "L1–L2", "L2–L3"]  # a window of two layers
    np.testing.assert_allclose(subject.y, [-90, -20, 0])
    assert subject.error_y.array is None  # one prompt: no interval
    assert "window of 2 layers" in fig.layout.title.text and "Paris" in fig.layout.title.text


def test_a_set_draws_each_mean_with_its_interval():
    rng = np.random.default_rng(0)
    per_example = [sweep({s: list(rng.normal(-0.5, 0.2, 2)) for s in SOURCES}).assign(example=i) for i in range(5)]
    table = pd.concat(per_example, ignore_index=True)
    keys = ["window_start", "window_end", "source"]
    summary = pd.concat([
        pd.DataFrame([{**dict(zip(keys, k)), **mean_interval(g[q].to_numpy()), "quantity": q}
                      for k, g in table.groupby(keys, sort=False)])
        for q in ("answer_prob", "change", "relative")], ignore_index=True)
    result = Result(spec=AnalysisSpec(kind="knockout", dataset="facts"),
                    tables={"knockout": table, "knockout_summary": summary}, meta={"n_examples": 5})
    (fig,) = figures(result).values()
    other = fig.data[1]
    values = table[(table.source == "other") & (table.window_start == 1)].relative.to_numpy()
    mean = mean_interval(values)
    assert other.y[1] == pytest.approx(100 * values.mean())
    assert other.error_y.array[1] == pytest.approx(100 * (mean["ci_high"] - mean["mean"]))
    assert other.error_y.arrayminus[1] == pytest.approx(100 * (mean["mean"] - mean["ci_low"]))
    assert "mean over 5 examples" in fig.layout.title.text
