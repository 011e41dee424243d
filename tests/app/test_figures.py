"""Figure builders on hand-made tables: shapes, labels, hover text, and escaping."""
import numpy as np
import pandas as pd
import pytest

from analyses import AnalysisSpec
from analyses.logit_lens import TARGET_COLUMNS, TOP_COLUMNS
from app.components.figures import logit_lens_heatmap, rank_ticks, target_rank_chart

LAYERS = ["0_pre", "1_pre", "final_post"]
INPUTS = ["<|endoftext|>", "When", " Mary", "\u200b<b>"]


def top_table(k: int = 2) -> pd.DataFrame:
    """[layer, pos, k] with token_str 'L{layer}P{pos}R{rank}', prob decreasing with rank."""
    rows = []
    for li, layer in enumerate(LAYERS):
        for p, tok in enumerate(INPUTS):
            for r in range(1, k + 1):
                token_str = " <i>&" if (li, p, r) == (2, 3, 1) else f"L{li}P{p}R{r}"
                rows.append(dict(layer=layer, layer_index=li, position=p, token=tok, rank=r,
                                 token_id=100 + r, token_str=token_str, prob=0.5 / r + 0.1 * li,
                                 logit=1.0))
    frame = pd.DataFrame(rows)
    assert set(TOP_COLUMNS) <= set(frame.columns)
    return frame.sample(frac=1.0, random_state=0)  # order must not matter


def target_table() -> pd.DataFrame:
    rows = []
    for li, layer in enumerate(LAYERS):
        for p in range(len(INPUTS)):
            for tid, tok, rank in ((7, " Mary", 50 - 20 * li), (8, "<John>", 3)):
                rows.append(dict(layer=layer, layer_index=li, position=p, token_id=tid,
                                 token_str=tok, rank=rank + p, prob=1.0 / (rank + p)))
    frame = pd.DataFrame(rows)
    assert set(TARGET_COLUMNS) <= set(frame.columns)
    return frame


def test_heatmap_is_layer_by_position_of_top1_probability():
    top = top_table()
    fig = logit_lens_heatmap(top)
    heat = fig.data[0]
    z = np.array(heat.z)
    assert z.shape == (len(LAYERS), len(INPUTS))
    expected = top[top["rank"] == 1].set_index(["layer_index", "position"])["prob"]
    for li in range(len(LAYERS)):
        for p in range(len(INPUTS)):
            assert z[li, p] == pytest.approx(expected[(li, p)])
    assert np.array(heat.text)[0, 1] == "L0P1R1"  # the top-1 token is the cell's text


def test_heatmap_axes_are_labelled_by_input_tokens_and_layers():
    fig = logit_lens_heatmap(top_table())
    assert list(fig.layout.xaxis.tickvals) == [0, 1, 2, 3]
    assert list(fig.layout.xaxis.ticktext) == ["&lt;|endoftext|&gt;", "When", "\u2423Mary",
                                               "\\u200b&lt;b&gt;"]
    assert list(fig.layout.yaxis.ticktext) == LAYERS


def test_heatmap_hover_lists_the_top_k_escaped():
    fig = logit_lens_heatmap(top_table(k=3))
    hover = np.array(fig.data[0].customdata)
    cell = hover[1, 2]
    assert "1. L1P2R1" in cell and "2. L1P2R2" in cell and "3. L1P2R3" in cell
    assert cell.index("1. L1P2R1") < cell.index("2. L1P2R2") < cell.index("3. L1P2R3")
    assert "position 2 (\u2423Mary)" in cell
    escaped = hover[2, 3]
    assert "\u2423&lt;i&gt;&amp;" in escaped and "<i>" not in escaped
    assert "<b>" not in escaped  # the input token "\u200b<b>"
    assert np.array(fig.data[0].text)[2, 3] == "\u2423&lt;i&gt;&amp;"


def test_rank_chart_draws_each_target_at_the_last_position_on_a_log_axis():
    fig = target_rank_chart(target_table())
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.autorange == "reversed"  # rank 1 on top
    assert [trace.name for trace in fig.data] == ["\u2423Mary", "&lt;John&gt;"]
    mary = fig.data[0]
    assert list(mary.x) == [0, 1, 2]
    assert list(mary.y) == [50 + 3, 30 + 3, 10 + 3]  # last position is 3
    assert list(fig.layout.xaxis.ticktext) == LAYERS
    assert "<John>" not in str(fig.data[1].customdata)


def test_rank_chart_takes_another_position():
    fig = target_rank_chart(target_table(), position=0)
    assert list(fig.data[0].y) == [50, 30, 10]


@pytest.mark.parametrize("highest, ticks", [(1, [1]), (2, [1, 2]), (7, [1, 2, 5, 10]),
                                            (100, [1, 2, 5, 10, 20, 50, 100])])
def test_rank_ticks(highest, ticks):
    assert rank_ticks(highest) == ticks


def test_figures_on_a_real_result(tiny_gpt2_dir):
    from analyses import AnalysisSpec, compute

    result = compute(AnalysisSpec(kind="logit_lens", model=str(tiny_gpt2_dir),
                                  prompt="When Mary and John", token=" Mary, John", top_k=3))
    heat = logit_lens_heatmap(result.tables["top"])
    n_layer = result.tables["top"]["layer_index"].nunique()
    assert np.array(heat.data[0].z).shape == (n_layer, result.meta["n_tokens"])
    ranks = target_rank_chart(result.tables["targets"])
    assert len(ranks.data) == 2
    assert heat.to_html(include_plotlyjs=False)  # serialises


# --------------------------------------------------------------------------- downloads

def test_tables_download_as_csv_and_parquet_exactly():
    import io

    from app.components.downloads import table_csv, table_parquet

    top = top_table().reset_index(drop=True)
    assert pd.read_csv(io.BytesIO(table_csv(top)))["token_str"].tolist() == top["token_str"].tolist()
    back = pd.read_parquet(io.BytesIO(table_parquet(top)))
    pd.testing.assert_frame_equal(back, top, check_dtype=False)


def test_figure_html_is_standalone_offline():
    from app.components.downloads import figure_html

    page = figure_html(logit_lens_heatmap(top_table()))
    assert "<script src=" not in page  # no CDN: plotly.js is inlined
    assert "Plotly.newPlot" in page and len(page) > 1_000_000


def test_figure_png_when_kaleido_and_a_browser_are_here():
    from app.components.downloads import figure_png, png_available

    if not png_available():
        pytest.skip("PNG export needs kaleido and a Chromium browser; one is missing")
    assert figure_png(target_rank_chart(target_table()))[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- presets

def test_presets_map_suites_to_each_kinds_fields(tmp_path):
    from app.components.presets import load_suites, presets_for

    suites = {
        "facts": [{"prompt": "The capital of France is", "answer": " Paris"}],
        "ioi": [{"clean": "A and B", "corrupted": "B and A", "answer": " A", "wrong": " B"}],
        "odd": [{"nothing": "useful"}, "not an object"],
    }
    presets = presets_for("logit_lens", suites)
    assert [p.fields for p in presets] == [
        {"prompt": "The capital of France is", "token": " Paris"},
        {"prompt": "A and B", "token": " A, B"},
    ]
    assert presets[0].label == "facts: The capital of France is"
    for preset in presets:
        AnalysisSpec(kind="logit_lens", **preset.fields)  # each is a valid spec
    assert load_suites(tmp_path / "absent.json") == {}
    (tmp_path / "broken.json").write_text("{not json")
    assert load_suites(tmp_path / "broken.json") == {}


def test_the_shipped_prompt_suites_give_every_page_examples():
    from app.components.presets import load_suites, presets_for
    from app.main import PAGES

    assert load_suites(), "data/prompts.json is missing or empty"
    for kind in PAGES:
        assert presets_for(kind), f"no example in data/prompts.json fits {kind}"


def test_heatmap_of_a_long_prompt_keeps_hover_small_and_cells_blank():
    from app.components import figures as f

    rows = [dict(layer=f"{li}", layer_index=li, position=p, token="t", rank=r, token_id=r,
                 token_str=f"r{r}", prob=1.0 / r, logit=0.0)
            for li in range(2) for p in range(f.MAX_TEXT_COLUMNS + 1) for r in range(1, 31)]
    fig = logit_lens_heatmap(pd.DataFrame(rows))
    assert fig.data[0].texttemplate == ""
    cell = np.array(fig.data[0].customdata)[0, 0]
    assert f"{f.MAX_HOVER_K}. r{f.MAX_HOVER_K}" in cell and f"{f.MAX_HOVER_K + 1}. " not in cell
