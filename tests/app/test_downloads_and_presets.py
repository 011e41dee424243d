"""The app's downloads (CSV, Parquet, standalone HTML, PNG) and presets from data/prompts.json."""
import pandas as pd
import pytest

from analyses import AnalysisSpec
from analyses.figures.logit_lens import logit_lens_heatmap, target_rank_chart
from figures_tables import target_table, top_table

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


def test_png_clicks_share_one_browser_and_repeat_clicks_render_nothing(monkeypatch):
    """Every PNG goes through one Chromium kept by kaleido's sync server (its per-call path,
    which starts a browser each time, is never taken), one render at a time, and a figure
    already rendered (equal content) is served from memory."""
    import kaleido._sync_server as sync_server

    from app.components import downloads
    from helpers import run_concurrently

    if not downloads.png_available():
        pytest.skip("PNG export needs kaleido and a Chromium browser; one is missing")

    def one_browser_per_call(*args, **kwargs):
        raise AssertionError("a Chromium was started for one PNG")

    monkeypatch.setattr(sync_server, "oneshot_async_run", one_browser_per_call)
    figures = {name: target_rank_chart(target_table()).update_layout(title=name) for name in "abc"}
    alone = {name: downloads.figure_png(fig) for name, fig in figures.items()}
    together = run_concurrently(lambda name: downloads.figure_png(figures[name]), [(n,) for n in "abc"])
    assert together == [alone[name] for name in "abc"]  # nobody got another's image

    renders, real = [], downloads.figure_png
    monkeypatch.setattr(downloads, "figure_png", lambda fig: (renders.append(fig), real(fig))[1])
    first = downloads.cached_png(figures["a"])
    again = downloads.cached_png(target_rank_chart(target_table()).update_layout(title="a"))
    assert first == again == alone["a"] and len(renders) == 1
    assert downloads.cached_png(figures["b"]) == alone["b"] and len(renders) == 2


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
    from app.components.presets import PROMPTS_FILE, load_suites, presets_for
    from app.routes import PAGES

    suites = load_suites(PROMPTS_FILE)
    assert suites, "data/prompts.json is missing or empty"
    for kind in PAGES:
        assert presets_for(kind, suites), f"no example in data/prompts.json fits {kind}"


# --------------------------------------------------------------------------- presets of every kind

def test_presets_adapt_each_suite_to_each_kind():
    from app.components.presets import presets_for

    suites = {
        "ioi": [{"clean": "A and B, B", "corrupted": "A and B, A", "answer": " A", "wrong": " B"}],
        "facts": [{"prompt": "F is", "answer": " P", "corrupted": "G is", "wrong": " D"},
                  {"prompt": "H is", "answer": " Q"}],
        "needle": [{"prompt": "code: x y. code:", "answer": " x", "code": " x y"}] * 2,
        "induction": [{"prompt": "a b c a b c"}],
        "text": [{"prompt": "Once"}],
    }

    def fields(kind):
        return [p.fields for p in presets_for(kind, suites)]

    assert fields("heads") == [  # round-robin across suites; the two needles are one example
        {"detector": "previous_token", "prompt": "F is"}, {"detector": "retrieval"},
        {"detector": "induction,duplicate_token"}, {"detector": "previous_token", "prompt": "Once"},
        {"detector": "previous_token", "prompt": "H is"}]
    assert [p.label for p in presets_for("heads", suites)][1:3] == [
        "needle: retrieval", "induction: induction, duplicate_token"]
    pairs = fields("activation_patching")
    assert pairs == fields("attribution_patching") == [
        {"clean": "A and B, B", "corrupted": "A and B, A", "answer": " A", "wrong": " B"},
        {"clean": "F is", "corrupted": "G is", "answer": " P", "wrong": " D"}]
    assert fields("dla")[:3] == [{"prompt": "A and B, B", "answer": " A", "wrong": " B"},
                                 {"prompt": "F is", "answer": " P", "wrong": " D"},
                                 {"prompt": "code: x y. code:", "answer": " x"}]
    assert fields("neurons")[:2] == [{"token": " A", "prompt": "A and B, B"},
                                     {"token": " P", "prompt": "F is"}]
    for kind in ("heads", "activation_patching", "attribution_patching", "dla", "neurons"):
        for preset in presets_for(kind, suites):
            AnalysisSpec(kind=kind, **preset.fields)  # each is a valid spec


def test_presets_list_answers_with_commas_as_tokens():
    from analyses.core.listtext import join_text_items
    from app.components.presets import presets_for

    suites = {"odd": [{"prompt": "a, b", "answer": ",", "wrong": " ,"}]}
    for kind, targets in (("logit_lens", [",", " ,"]), ("neurons", [","])):
        (preset,) = presets_for(kind, suites)
        assert preset.fields["token"] == join_text_items(targets)
        assert AnalysisSpec(kind=kind, **preset.fields).targets() == targets


def test_csv_cells_a_spreadsheet_would_run_are_quoted_and_numbers_stay_numbers():
    import io

    from app.components.downloads import table_csv

    risky = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx"]
    frame = pd.DataFrame({"token_str": [*risky, " -", "Paris"],
                          "value": [-0.5, -1.0, 2.0, -3e-9, 0.0, 1.0, -7.0, 4.0],
                          "mixed": ["=x", -1, 2.5, None, "ok", "-", 3, "@"]})
    back = pd.read_csv(io.BytesIO(table_csv(frame)), keep_default_na=False)
    assert back["token_str"].tolist() == [f"'{t}" for t in risky] + [" -", "Paris"]
    assert back["value"].tolist() == frame["value"].tolist()  # negative numbers stay numbers
    assert back["value"].dtype == float
    assert back["mixed"].tolist() == ["'=x", "-1", "2.5", "", "ok", "'-", "3", "'@"]
    inner = pd.DataFrame({"token_str": ["a\rb", "c\nd", "e"], "n": [1, 2, 3]})  # a row per row
    assert pd.read_csv(io.BytesIO(table_csv(inner)))["token_str"].tolist() == ["a\rb", "c\nd", "e"]
