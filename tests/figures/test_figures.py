"""Figure builders (`analyses.figures`, no Streamlit) on hand-made tables: shapes, labels,
hover text, scales and escaping; and `result.figures()` on real results."""
import numpy as np
import pandas as pd
import pytest

from analyses import AnalysisSpec
from analyses.figures.logit_lens import logit_lens_heatmap, rank_ticks, target_rank_chart
from figures_tables import INPUTS, LAYERS, target_table, top_table


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


def test_figures_on_a_real_result(tiny_gpt2_dir, tmp_path, monkeypatch):
    from analyses import compute

    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))
    result = compute(AnalysisSpec(kind="logit_lens", model=str(tiny_gpt2_dir),
                                  prompt="When Mary and John", token=" Mary, John", top_k=3))
    heat = logit_lens_heatmap(result.tables["top"])
    n_layer = result.tables["top"]["layer_index"].nunique()
    assert np.array(heat.data[0].z).shape == (n_layer, result.meta["n_tokens"])
    ranks = target_rank_chart(result.tables["targets"])
    assert len(ranks.data) == 2
    assert heat.to_html(include_plotlyjs=False)  # serialises


def test_heatmap_of_a_long_prompt_keeps_hover_small_and_cells_blank():
    from analyses.figures import logit_lens as f

    rows = [dict(layer=f"{li}", layer_index=li, position=p, token="t", rank=r, token_id=r,
                 token_str=f"r{r}", prob=1.0 / r, logit=0.0)
            for li in range(2) for p in range(f.MAX_TEXT_COLUMNS + 1) for r in range(1, 31)]
    fig = logit_lens_heatmap(pd.DataFrame(rows))
    assert fig.data[0].texttemplate == ""
    cell = np.array(fig.data[0].customdata)[0, 0]
    assert f"{f.MAX_HOVER_K}. r{f.MAX_HOVER_K}" in cell and f"{f.MAX_HOVER_K + 1}. " not in cell


# --------------------------------------------------------------------------- shared pieces

def test_position_labels_mark_where_a_pair_differs_and_escape_tokens():
    from analyses.figures.layout import position_labels

    assert position_labels(3, [" a", "<b>", " c"], [" a", " x", " c"]) == [
        "\u2423a", "&lt;b&gt;→\u2423x", "\u2423c"]
    assert position_labels(3, ["x"]) == ["x", "1", "2"]  # no token known: the position
    assert position_labels(2) == ["0", "1"]


def test_grid_height_shrinks_rows_of_tall_grids():
    from analyses.figures import layout as f

    assert f.grid_height(2) == 140 + f.MIN_PLOT_PX
    assert f.grid_height(10) == 140 + 10 * f.CELL_PX
    assert f.grid_height(144) == 140 + 144 * f.MIN_ROW_PX


# --------------------------------------------------------------------------- activation patching

CLEAN = ["<|endoftext|>", " Mary", " gave", " to"]
CORRUPTED = ["<|endoftext|>", " John", " gave", " to"]


def effects_table() -> pd.DataFrame:
    """resid_pre: layer × position; head_out: layer × head; head_q_by_pos: all three.
    value = layer + position / 10 + head / 100, raw = 10 × value."""
    rows = []
    for layer in range(2):
        for p in range(4):
            rows.append(("resid_pre", layer, p, -1))
        for h in range(3):
            rows.append(("head_out", layer, -1, h))
            rows += [("head_q_by_pos", layer, p, h) for p in range(4)]
    frame = pd.DataFrame(rows, columns=["granularity", "layer", "position", "head"])
    frame["value"] = frame.layer + frame.position.clip(0) / 10 + frame["head"].clip(0) / 100
    frame["raw"] = 10 * frame["value"]
    return frame.sample(frac=1.0, random_state=1)


def test_patching_heatmap_is_layer_by_position_with_token_labels_and_baselines():
    from analyses.figures.activation_patching import patching_heatmap

    fig = patching_heatmap(effects_table(), "resid_pre", CLEAN, CORRUPTED, (2.5, -1.25))
    z = np.array(fig.data[0].z)
    assert z.shape == (2, 4)
    assert z[1, 2] == pytest.approx(1.2)
    assert list(fig.layout.xaxis.ticktext) == ["&lt;|endoftext|&gt;", "\u2423Mary→\u2423John",
                                               "\u2423gave", "\u2423to"]
    assert list(fig.layout.yaxis.ticktext) == ["0", "1"]
    assert "clean 2.500, corrupted -1.250" in fig.layout.title.text
    assert fig.data[0].zmid == 0 and fig.data[0].zmax == -fig.data[0].zmin
    hover = np.array(fig.data[0].customdata)[1, 2]
    assert "layer 1" in hover and "position 2 (\u2423gave)" in hover and "12.000" in hover


def test_patching_heatmap_of_heads_is_layer_by_head_or_head_rows_by_position():
    from analyses.figures.activation_patching import patching_heatmap

    heads = patching_heatmap(effects_table(), "head_out")
    assert np.array(heads.data[0].z).shape == (2, 3)
    assert list(heads.layout.xaxis.ticktext) == ["H0", "H1", "H2"]
    assert np.array(heads.data[0].z)[1, 2] == pytest.approx(1.02)
    by_pos = patching_heatmap(effects_table(), "head_q_by_pos", CLEAN)
    z = np.array(by_pos.data[0].z)
    assert z.shape == (6, 4)
    assert list(by_pos.layout.yaxis.ticktext) == ["L0H0", "L0H1", "L0H2", "L1H0", "L1H1", "L1H2"]
    assert z[4, 3] == pytest.approx(1.31)  # L1 H1 at position 3
    assert list(by_pos.layout.xaxis.ticktext)[1] == "\u2423Mary"  # no corrupted tokens given


def test_path_heatmap_is_sender_by_receiver_for_one_input():
    from analyses.figures.activation_patching import path_heatmap

    rows = [dict(granularity="direct_path", layer=rl, position=-1, head=rh, sender_layer=sl,
                 sender_head=sh, receiver_input=name, value=sl + sh / 10 + rh / 100 + (name == "k"),
                 raw=0.0)
            for rl in (1, 2) for sl in range(rl) for sh in range(2) for rh in range(2)
            for name in ("q", "k")]
    fig = path_heatmap(pd.DataFrame(rows), "k", (2.0, 0.5))
    z = np.array(fig.data[0].z, dtype=float)
    assert list(fig.layout.yaxis.ticktext) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    assert list(fig.layout.xaxis.ticktext) == ["L1H0", "L1H1", "L2H0", "L2H1"]
    assert z[3, 2] == pytest.approx(1 + 0.1 + 0.0 + 1)  # L1 H1 -> L2 H0, k input
    assert np.isnan(z[2, 0])  # L1 -> L1: no such path, left blank
    assert "clean 2.000, corrupted 0.500" in fig.layout.title.text


# --------------------------------------------------------------------------- attribution patching

def attribution_table(exact: bool = True) -> pd.DataFrame:
    """2 layers, 3 positions, 2 heads; resid also at layer 2 (the final residual stream).
    atp = layer + position / 10 (+ head / 100); exact = atp + 0.01 (or NaN)."""
    rows = []
    for layer in range(3):
        rows += [("resid", layer, p, -1) for p in range(3)]
    for layer in range(2):
        rows += [("mlp", layer, p, -1) for p in range(3)]
        rows += [("head", layer, p, h) for p in range(3) for h in range(2)]
    frame = pd.DataFrame(rows, columns=["node", "layer", "position", "head"])
    frame["atp"] = frame.layer + frame.position / 10 + frame["head"].clip(0) / 100
    frame["exact"] = frame.atp + 0.01 if exact else np.nan
    return frame


def agreement_table() -> pd.DataFrame:
    return pd.DataFrame({"node": ["resid", "mlp", "head", "all"], "pearson": [0.99, 0.95, 0.4, 0.8],
                         "spearman": [0.98, 0.9, 0.3, np.nan], "top10_overlap": [1.0, 0.8, 0.2, 0.6]})


def test_atp_heatmap_puts_exact_beside_atp_on_one_scale():
    from analyses.figures.attribution_patching import atp_heatmap

    fig = atp_heatmap(attribution_table(), "resid", CLEAN[:3])
    atp, exact = fig.data
    assert np.array(atp.z).shape == (3, 3) and np.array(exact.z)[2, 1] == pytest.approx(2.11)
    assert atp.coloraxis == exact.coloraxis == "coloraxis"
    assert fig.layout.coloraxis.cmax == pytest.approx(2.21) and fig.layout.coloraxis.cmid == 0
    assert list(fig.layout.yaxis.ticktext) == ["0", "1", "final"]
    assert [a.text for a in fig.layout.annotations] == ["AtP estimate", "exact patching"]
    heads = atp_heatmap(attribution_table(), "head")
    assert list(heads.layout.yaxis.ticktext) == ["L0H0", "L0H1", "L1H0", "L1H1"]


def test_atp_heatmap_shows_relp_beside_atp_with_or_without_exact_on_one_scale():
    from analyses.figures.attribution_patching import atp_heatmap

    table = attribution_table(exact=False)
    table["relp"] = -3.0 * table["atp"]  # signed, and larger than AtP: it sets the scale
    fig = atp_heatmap(table, "mlp")
    assert [a.text for a in fig.layout.annotations] == ["AtP estimate", "RelP estimate"]
    assert np.array(fig.data[1].z)[1, 2] == pytest.approx(-3.6)
    assert fig.layout.coloraxis.cmax == pytest.approx(3.6) and fig.layout.coloraxis.cmid == 0
    assert "RelP -3.6" in fig.data[0].customdata[1][2]
    table["exact"] = table["atp"] + 0.01
    assert [a.text for a in atp_heatmap(table, "mlp").layout.annotations] == [
        "AtP estimate", "RelP estimate", "exact patching"]
    table["relp"] = np.nan  # q and k nodes: RelP gives none, so no panel
    assert len(atp_heatmap(table, "mlp").data) == 2


def test_atp_heatmap_without_exact_has_one_panel_and_magnitude_compares_with_abs_exact():
    from analyses.figures.attribution_patching import atp_heatmap

    alone = atp_heatmap(attribution_table(exact=False), "mlp")
    assert len(alone.data) == 1
    table = attribution_table()
    table["exact"] = -table["exact"]
    sizes = atp_heatmap(table, "mlp", magnitude=True)
    assert np.nanmin(np.array(sizes.data[1].z, dtype=float)) > 0
    assert sizes.layout.annotations[1].text == "|exact| patching"
    assert sizes.layout.coloraxis.cmin == 0


def test_agreement_scatter_carries_the_agreement_numbers_in_its_legend():
    from analyses.figures.attribution_patching import atp_agreement_scatter

    fig = atp_agreement_scatter(attribution_table(), agreement_table(), clean_tokens=CLEAN[:3])
    names = [trace.name for trace in fig.data]
    assert names[0] == "resid · r 0.99, ρ 0.98, top-10 100%"
    assert names[-1] == "AtP = exact"
    assert "all nodes: r 0.80, ρ n/a, top-10 60%" in fig.layout.title.text
    resid = fig.data[0]
    assert list(resid.x) == pytest.approx(list(np.array(resid.y) + 0.01))
    assert "pos 1 (\u2423Mary)" in resid.customdata[1]


def test_agreement_note_names_the_kinds_atp_can_be_trusted_for():
    from analyses.figures.attribution_patching import agreement_note

    note = agreement_note(agreement_table())
    assert "for resid, mlp; not for head" in note
    assert "every node kind" in agreement_note(agreement_table().iloc[:2])
    assert "not run" in agreement_note(None)


# --------------------------------------------------------------------------- heads

def scores_table() -> pd.DataFrame:
    rows = [(d, layer, h, (layer * 3 + h) / 10 + (0.05 if d == "induction" else 0))
            for d in ("previous_token", "induction") for layer in range(2) for h in range(3)]
    return pd.DataFrame(rows, columns=["detector", "layer", "head", "score"])


def test_head_score_heatmap_is_layer_by_head_from_zero_to_one():
    from analyses.figures.heads import head_score_heatmap

    fig = head_score_heatmap(scores_table(), "induction")
    z = np.array(fig.data[0].z)
    assert z.shape == (2, 3) and z[1, 2] == pytest.approx(0.55)
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0.0, 1.0)
    assert "induction" in fig.layout.title.text


def test_head_profile_and_ablation_charts():
    from analyses.figures.heads import head_ablation_chart, head_profile_chart

    profile = head_profile_chart(scores_table(), 1, 0)
    assert list(profile.data[0].x) == ["previous_token", "induction"]
    assert list(profile.data[0].y) == pytest.approx([0.3, 0.35])
    assert "L1H0" in profile.layout.title.text
    ablation = pd.DataFrame({
        "detector": ["induction"] * 3 + ["retrieval"] * 3,
        "heads": ["L1H0,L0H1", "L0H0,L1H2", "L0H2,L1H3", "L1H1", "L0H2", "L1H3"],
        "ablated": ["top", "random", "random"] * 2,
        "metric": ["second_copy_loss"] * 3 + ["needle_recall"] * 3,
        "baseline": [1.0] * 3 + [0.9] * 3, "after": [3.0, 1.1, 1.3, 0.1, 0.8, 0.5],
        "drop": [2.0, 0.1, 0.3, 0.8, 0.1, 0.4]})
    fig = head_ablation_chart(ablation)
    loss_top, loss_random, recall_top, recall_random = fig.data  # one panel per metric
    assert (loss_top.type, loss_random.type) == ("bar", "scatter")  # the top set, then a dot per random set
    assert (loss_top.name, loss_random.name) == ("top heads", "random sets of as many heads")
    assert list(loss_top.y) == [2.0] and list(loss_random.y) == [0.1, 0.3]
    assert list(recall_top.y) == [0.8] and list(recall_random.y) == [0.1, 0.4]
    assert loss_top.x[0] < 0 < loss_random.x[0]  # side by side at the detector's tick
    assert list(fig.layout.xaxis.ticktext) == ["induction"] and list(fig.layout.xaxis2.ticktext) == ["retrieval"]
    assert loss_random.customdata[1][0] == "L0H2,L1H3"  # hover names each set's heads
    assert loss_top.yaxis != recall_top.yaxis  # nats and shares never on one axis
    assert fig.layout.yaxis.title.text == "drop (nats/token)"
    assert fig.layout.yaxis2.title.text == "drop (share of needles)"


def test_an_unscored_detector_says_why_instead_of_a_grid_of_noise():
    from analyses.figures.heads import head_score_heatmap

    table = scores_table().assign(events=7)
    fig = head_score_heatmap(table, "induction", "the model copied 7 code tokens")
    assert "not scored" in fig.layout.title.text and "copied 7 code tokens" in fig.layout.title.text
    assert fig.layout.annotations[0].text == "no scores: too few events"
    scored = head_score_heatmap(table, "induction")
    assert "averages 7 events" in scored.layout.title.text
    assert scored.data[0].customdata[0][0].endswith("over 7 events")  # the hover says it too


# --------------------------------------------------------------------------- neurons

def test_promoters_chart_ranks_neurons_for_one_token():
    from analyses.figures.neurons import neuron_promoters_chart

    promoters = pd.DataFrame({"token_id": [7, 7, 8], "token_str": [" <P>", " <P>", "x"],
                              "layer": [1, 0, 0], "neuron": [5, 9, 1], "score": [0.9, 0.5, 0.1],
                              "rank": [1, 2, 1]}).iloc[::-1]
    fig = neuron_promoters_chart(promoters, 7)
    assert list(fig.data[0].y) == ["L1 N5", "L0 N9"]
    assert list(fig.data[0].x) == [0.9, 0.5]
    assert "\u2423&lt;P&gt;" in fig.layout.title.text and "<P>" not in fig.layout.title.text


def test_neuron_tokens_chart_shows_promoted_and_suppressed_tokens_by_rank():
    from analyses.figures.neurons import neuron_tokens_chart

    atlas = pd.DataFrame({
        "layer": 1, "neuron": [3] * 4 + [4] * 2, "rank": [1, 2, 1, 2, 1, 1],
        "token_id": range(6), "token_str": [" a", "<b>", " c", "\u200b", "z", "y"],
        "score": [2.0, 1.0, -3.0, -1.0, 9.0, -9.0],
        "direction": ["promote", "promote", "suppress", "suppress", "promote", "suppress"]})
    fig = neuron_tokens_chart(atlas, 1, 3)
    promote, suppress = fig.data
    assert list(promote.y) == ["1. \u2423a", "2. &lt;b&gt;"] and list(promote.x) == [2.0, 1.0]
    assert list(suppress.y) == ["1. \u2423c", "2. \\u200b"]
    assert "L1 N3" in fig.layout.title.text


def test_neuron_activations_chart_is_bars_for_one_neuron_and_a_heatmap_for_several():
    from analyses.figures.neurons import neuron_activations_chart

    tokens = ["<s>", " Mary", " went"]
    rows = [(layer, n, p, tokens[p], layer + n / 10 + p / 100)
            for layer, n in ((0, 7), (0, 2), (1, 4)) for p in range(3)]
    table = pd.DataFrame(rows, columns=["layer", "neuron", "position", "token", "activation"])
    several = neuron_activations_chart(table)
    z = np.array(several.data[0].z)
    assert list(several.layout.yaxis.ticktext) == ["L0 N7", "L0 N2", "L1 N4"]  # the table's order
    assert z[1, 2] == pytest.approx(0.22)
    assert list(several.layout.xaxis.ticktext) == ["&lt;s&gt;", "\u2423Mary", "\u2423went"]
    one = neuron_activations_chart(table[table.neuron == 4])
    assert one.data[0].type == "bar" and list(one.data[0].y) == pytest.approx([1.4, 1.41, 1.42])
    assert "L1 N4" in one.layout.title.text


# --------------------------------------------------------------------------- dla

def contributions_table() -> pd.DataFrame:
    rows = [("bias", -1, -1, 0.05), ("embed", -1, -1, 0.1), ("pos_embed", -1, -1, -0.2)]
    for layer in (1, 0):
        rows += [("mlp", layer, -1, 0.5 + layer), ("attn", layer, -1, 0.3 + layer),
                 ("attn_bias", layer, -1, 0.01)]
        rows += [("head", layer, h, 0.1 * h + layer) for h in range(3)]
    return pd.DataFrame(rows, columns=["component", "layer", "head", "value"])


def test_dla_components_chart_follows_the_residual_stream_and_sums():
    from analyses.figures.dla import dla_components_chart

    fig = dla_components_chart(contributions_table(), "logit(' <b>')", logit_diff=3.15)
    order = ["embed", "pos_embed", "L0 attn", "L0 mlp", "L1 attn", "L1 mlp", "bias"]
    assert list(fig.layout.xaxis.categoryarray) == order  # residual-stream order
    value = {x: y for trace in fig.data for x, y in zip(trace.x, trace.y)}
    assert [value[x] for x in order] == pytest.approx([0.1, -0.2, 0.3, 0.5, 1.3, 1.5, 0.05])
    assert {t.name for t in fig.data} == {"attention (a layer's heads and bias)", "MLP", "embeddings and biases"}
    assert fig.layout.yaxis.title.text == "direct contribution (logits)"  # a unit, and a legend
    assert "the bars sum to 3.55" in fig.layout.title.text
    assert "own value is 3.15" in fig.layout.title.text
    assert "&lt;b&gt;" in fig.layout.title.text and "<b>'" not in fig.layout.title.text


def test_dla_head_heatmap_is_layer_by_head():
    from analyses.figures.dla import dla_head_heatmap

    fig = dla_head_heatmap(contributions_table())
    z = np.array(fig.data[0].z)
    assert z.shape == (2, 3) and z[1, 2] == pytest.approx(1.2)
    assert fig.data[0].zmid == 0




# --------------------------------------------------------------------------- long prompts

def test_the_position_window_is_the_last_positions_and_where_the_prompts_differ():
    from analyses.figures.layout import WINDOW, differing_positions, position_window, span_text

    assert position_window(WINDOW) is None  # short prompts: every position
    assert position_window(100) == list(range(100 - WINDOW, 100))
    assert position_window(100, [3, 70]) == [3, *range(100 - WINDOW, 100)]
    assert differing_positions([" a", " b", " c"], [" a", " x", " c"]) == [1]
    assert span_text([3, 60, 61, 62, 99]) == "3, 60–62, 99"


def test_a_long_prompts_heatmaps_show_a_window_with_level_labels_when_few():
    from analyses.figures.activation_patching import patching_heatmap
    from analyses.figures.logit_lens import logit_lens_heatmap

    n = 120
    top = pd.DataFrame([dict(layer=f"{li}_pre", layer_index=li, position=p, token=f"t{p}", rank=1, token_id=1,
                             token_str="x", prob=0.5, logit=0.0) for li in range(2) for p in range(n)])
    full = logit_lens_heatmap(top)
    window = logit_lens_heatmap(top, list(range(n - 40, n)))
    assert np.array(full.data[0].z).shape == (2, n) and np.array(window.data[0].z).shape == (2, 40)
    assert "positions 80–119 of 120 shown" in window.layout.title.text
    assert window.layout.xaxis.ticktext[0] == "t80 80"  # the position beside its token
    assert logit_lens_heatmap(top, list(range(10))).layout.xaxis.tickangle == 0  # level when they fit
    effects = pd.DataFrame({"granularity": "resid_pre", "layer": np.repeat([0, 1], n), "position": np.tile(range(n), 2),
                            "head": -1, "value": 0.5, "raw": 1.0, "sender_layer": -1, "sender_head": -1,
                            "receiver_input": ""})
    clean = [f" w{p}" for p in range(n)]
    corrupted = [*clean[:5], " other", *clean[6:]]
    fig = patching_heatmap(effects, "resid_pre", clean, corrupted, (1.0, 0.0), [5, *range(n - 40, n)])
    assert np.array(fig.data[0].z).shape == (2, 41)
    assert fig.layout.xaxis.ticktext[0] == "\u2423w5→\u2423other"  # the differing position stays in view
    assert "positions 5, 80–119 of 120 shown" in fig.layout.title.text


def test_cell_text_shortens_as_columns_narrow():
    from analyses.figures.logit_lens import MAX_CELL_TEXT, cell_chars, logit_lens_heatmap

    assert cell_chars(4) == MAX_CELL_TEXT and cell_chars(40) == 6 and cell_chars(1000) == 3
    top = pd.DataFrame([dict(layer="0_pre", layer_index=0, position=p, token="t", rank=1, token_id=1,
                             token_str=" wonderful", prob=0.5, logit=0.0) for p in range(40)])
    cells = np.array(logit_lens_heatmap(top).data[0].text).ravel()
    assert all(len(c.replace("\u2423", " ")) <= 6 for c in cells) and cells[0].endswith("…")


def test_every_figure_has_the_workbench_template_whatever_the_process_default(tiny_gpt2_dir, monkeypatch):
    """Importing Streamlit makes plotly's default template Streamlit's (placeholder colours
    only its own chart element replaces); a result's figures carry plotly_white instead."""
    import plotly.io as pio

    from analyses import AnalysisSpec, compute
    from analyses.figures.layout import TEMPLATE

    monkeypatch.setenv("ANALYSES_CACHE", str(tiny_gpt2_dir.parent / "template-cache.duckdb"))
    monkeypatch.setattr(pio.templates, "default", "ggplot2")
    result = compute(AnalysisSpec(kind="logit_lens", model=str(tiny_gpt2_dir), prompt="Once upon", token=" a"))
    for fig in result.figures().values():
        assert fig.layout.template == pio.templates[TEMPLATE]
        assert fig.layout.template.layout.plot_bgcolor == "white"


def test_a_set_chart_of_patching_says_its_bar_is_the_ratio_of_means_not_the_dots_mean():
    """The bar is (mean patched − mean corrupted) / (mean clean − mean corrupted); the dots are
    each example's own ratio, whose plain mean differs: legend, hover and note say which."""
    from types import SimpleNamespace

    from analyses.figures.sets import figures
    from analyses.kinds.sets import SUMMARIES, summary_table

    rng = np.random.default_rng(0)
    clean, corrupted = rng.uniform(2, 12, 40), rng.uniform(-3, 0, 40)  # [example]
    patched = corrupted + rng.uniform(0, 0.4, 40) * (clean - corrupted)
    effects = pd.DataFrame({"example": np.arange(40), "n_tokens": 9, "granularity": "head_out", "layer": 0,
                            "position": -1, "head": 1, "raw": patched,
                            "value": (patched - corrupted) / (clean - corrupted)})
    examples = pd.DataFrame({"example": np.arange(40), "clean_baseline": clean, "corrupted_baseline": corrupted})
    summary = summary_table(effects, SUMMARIES["activation_patching"]["effects"], examples)
    result = SimpleNamespace(kind="activation_patching", meta={"n_examples": 40},
                             tables={"effects": effects, "effects_summary": summary, "examples": examples})
    chart = figures(result)["effects_summary"]
    bars, dots = chart.data[:2]  # then any dots beyond the axis, at its edge
    assert bars.x[0] == pytest.approx(summary["mean"].iloc[0]) != pytest.approx(effects["value"].mean())
    assert "ratio of the means" in bars.name and "ratio of the means" in bars.hovertemplate
    assert "each example's own" in dots.name
    assert "paired" in chart.layout.title.text and "ratio of the means" in chart.layout.title.text
    grid = figures(result)["mean_by_head"]
    assert "ratio of the means" in grid.data[0].customdata[0][0]


def test_a_sets_interval_note_names_each_interval_its_summaries_use():
    from types import SimpleNamespace

    from analyses.figures.sets import interval_note

    steering = pd.DataFrame({"quantity": ["metric", "top1", "kl"], "interval": ["t", "wilson", "single"]})
    note = interval_note(SimpleNamespace(tables={"effects_summary": steering, "examples": pd.DataFrame()}))
    assert "Student's t" in note and "Wilson" in note and "top1" in note
    assert "kl" in note and "once" in note and "n = 1" in note and "delta" not in note
    patching = pd.DataFrame({"layer": [0], "interval": ["paired delta"]})
    note = interval_note(SimpleNamespace(tables={"effects_summary": patching}))
    assert "ratio of the means" in note and "paired" in note and "Student" not in note
