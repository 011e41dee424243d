"""Circuit figures on hand-made tables: arrows that end at the receiver's input port, the
embedding below and the logits above (centred), curves that pass no other node of the
circuit, separable MLP → MLP edges, a flag on edges whose exact effect disagrees with their
score, the random baseline drawn as the range of its draws; and path patching's heatmap
with its values in the cells on a scale of its own data."""
import numpy as np
import pandas as pd
import pytest

from analyses.figures import circuit as fig

N_LAYERS, N_HEADS = 3, 8
META = {"n_layers": N_LAYERS, "n_heads": N_HEADS, "n_edges": 802, "method": "eap_ig", "total_effect": 5.0}


def edge_rows(rows) -> pd.DataFrame:
    """(sender, receiver, input, score, exact) → the circuit's `edges` table, ranked as given."""
    edges = pd.DataFrame(rows, columns=["sender", "receiver", "receiver_input", "score", "exact"])
    edges.insert(0, "rank", np.arange(1, len(edges) + 1))
    edges["sample_score"] = edges["score"].where(edges["exact"].notna())
    return edges


TANGLE = edge_rows([  # the default ioi circuit's kinds of edges, the ones that tangled
    ("embed", "L0H0", "v", 2.0, np.nan), ("L0H0", "L0.mlp", "in", 1.8, np.nan),
    ("L0.mlp", "logits", "", 1.7, np.nan), ("embed", "logits", "", 1.0, np.nan),
    ("L0.mlp", "L1.mlp", "in", 0.9, np.nan), ("L1.mlp", "L2.mlp", "in", 0.8, np.nan),
    ("L0.mlp", "L2.mlp", "in", 0.7, np.nan), ("L0H0", "L1H0", "q", 0.498, 0.0096),
    ("L0H0", "L2H5", "k", -0.4, -0.35), ("L1H3", "logits", "", 0.3, np.nan),
    ("embed", "L2H4", "q", 0.25, np.nan), ("L0H7", "L2H4", "v", -0.2, np.nan),
    ("L2H4", "logits", "", 0.2, np.nan), ("embed", "L1.mlp", "in", 0.15, np.nan),
    ("L0H3", "L2H4", "k", 0.12, np.nan), ("L0.mlp", "L1H3", "q", 0.1, np.nan)])


def graph_of(edges: pd.DataFrame, meta: dict = META):
    faith = pd.DataFrame({"k": [0, len(edges)], "metric": [0.0, 0.9]})
    return fig.circuit_graph(edges, len(edges), meta, faith)


def edge_traces(figure) -> dict[int, object]:
    """rank → the edge's drawn line (hover text starts '#rank')."""
    return {int(t.hovertemplate[1:].split(" ")[0]): t for t in figure.data
            if t.hovertemplate and t.hovertemplate.startswith("#")}


def node_places(figure) -> dict[str, tuple[float, float]]:
    nodes = next(t for t in figure.data if t.customdata is not None and "embed" in list(t.customdata))
    return {name: (x, y) for name, x, y in zip(nodes.customdata, nodes.x, nodes.y)}


def test_each_edge_ends_in_an_arrow_at_its_receivers_input_port():
    edges = edge_rows([("embed", "L1H0", "q", 1.0, np.nan), ("L0H2", "L1H0", "k", 0.8, np.nan),
                       ("L0H5", "L1H0", "v", 0.6, np.nan), ("L1H0", "logits", "", 0.5, np.nan)])
    figure = graph_of(edges)
    lines = edge_traces(figure)
    arrows = [(a.x, a.y) for a in figure.layout.annotations if a.showarrow]
    ends = {rank: (line.x[-1], line.y[-1]) for rank, line in lines.items()}
    assert sorted(arrows) == sorted(ends.values())  # one arrowhead per edge, at its end
    ports = next(t for t in figure.data if t.name == "ports")
    port_at = {(x, y): text for x, y, text in zip(ports.x, ports.y, ports.text)}
    assert [port_at[ends[rank]] for rank in (1, 2, 3)] == ["q", "k", "v"]
    x_centre, y_centre = node_places(figure)["L1H0"]
    assert ends[1][0] < x_centre == ends[2][0] < ends[3][0]  # q, k, v left to right
    assert all(ends[rank][1] < y_centre for rank in (1, 2, 3))  # on the head's bottom edge


def test_the_embedding_is_at_the_bottom_and_the_logits_on_top_centred():
    places = node_places(graph_of(TANGLE))
    inner = [p for name, p in places.items() if name not in ("embed", "logits")]
    xs, ys = [x for x, _ in inner], [y for _, y in inner]
    assert places["embed"][1] < min(ys) and places["logits"][1] > max(ys)
    centre = (min(xs) + max(xs)) / 2
    assert places["embed"][0] == pytest.approx(centre) and places["logits"][0] == pytest.approx(centre)
    assert all(abs(places["embed"][0] - h) > 0.2 for h in range(N_HEADS))  # in no head's column


def test_no_edge_passes_through_another_node_of_the_circuit():
    figure = graph_of(TANGLE)
    used = set(TANGLE["sender"]) | set(TANGLE["receiver"])
    boxes = [s for s in figure.layout.shapes if s.type == "rect"]
    assert len(boxes) == len(used)  # a box for each node of the circuit
    places = node_places(figure)
    for edge, line in zip(TANGLE.itertuples(), edge_traces(figure).values()):
        xs, ys = np.asarray(line.x), np.asarray(line.y)
        for box in boxes:
            centre = ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
            if centre in (places[edge.sender], places[edge.receiver]):
                continue
            inside = (xs > box.x0) & (xs < box.x1) & (ys > box.y0) & (ys < box.y1)
            assert not inside.any(), f"{edge.sender} → {edge.receiver} crosses the box at {centre}"
        receiver = next(b for b in boxes if ((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2) == places[edge.receiver])
        near = 0.02  # nor runs along its receiver's edge before it reaches its port
        before = slice(0, -3)
        along = ((xs[before] > receiver.x0 - near) & (xs[before] < receiver.x1 + near)
                 & (ys[before] > receiver.y0 - near) & (ys[before] < receiver.y1 + near))
        assert not along.any(), f"{edge.sender} → {edge.receiver} runs through or along its receiver"


def test_the_mlp_chain_edges_are_separable():
    lines = edge_traces(graph_of(TANGLE))
    x_mlp = node_places(graph_of(TANGLE))["L1.mlp"][0]
    skip = np.asarray(lines[7].x)  # L0.mlp → L2.mlp, past L1.mlp
    assert np.abs(skip - x_mlp).max() > 0.4  # bends out of the column the other two run along


def test_the_disagreement_rule():
    edges = edge_rows([("L0H0", "L1H0", "q", 0.498, 0.0096),  # the edge: 2% of its score
                       ("L0H1", "L1H0", "k", 0.5, -0.2),  # opposite sign
                       ("L0H2", "L1H0", "v", 0.5, 0.4),  # agrees
                       ("L0H3", "L1H1", "q", 0.02, -0.01),  # both under 1% of 5.0: noise
                       ("L0H4", "L1H1", "k", 0.5, np.nan)])  # exact did not run
    assert list(fig.disagreeing(edges, total_effect=5.0)) == [True, True, False, False, False]


def test_the_rule_compares_exact_with_the_score_over_its_own_examples():
    edges = edge_rows([("L0H0", "L1H0", "q", 0.5, 0.45)])
    edges["sample_score"] = 3.0  # over exact's sample the score is far larger
    assert list(fig.disagreeing(edges, total_effect=5.0)) == [True]


def test_a_disagreeing_edge_is_dashed_with_a_warning_in_its_hover():
    lines = edge_traces(graph_of(TANGLE))
    assert lines[8].line.dash == "dash" and "\u26a0" in lines[8].hovertemplate
    assert "0.0096" in lines[8].hovertemplate
    agreeing = [lines[r] for r in lines if r != 8]
    assert all(line.line.dash == "solid" and "\u26a0" not in line.hovertemplate for line in agreeing)
    unchecked = edge_traces(graph_of(TANGLE.assign(exact=np.nan, sample_score=np.nan)))
    assert all(line.line.dash == "solid" for line in unchecked.values())


def test_the_random_baseline_is_drawn_as_the_range_of_its_draws_with_the_mean():
    faith = pd.DataFrame({"k": [0, 1, 2, 4], "share_of_edges": [0, 0.25, 0.5, 1.0],
                          "metric": [0.0, 0.5, 0.8, 1.0], "random_mean": [0.0, 0.1, 0.3, 1.0],
                          "random_min": [0.0, 0.0, 0.1, 1.0], "random_max": [0.0, 0.2, 0.6, 1.0]})
    curve = fig.faithfulness_curve(faith, 2, {**META, "n_edges": 4, "random_sets": 10})
    band, mean = curve.data[0], curve.data[1]
    assert list(band.y) == [0.2, 0.6, 1.0, 1.0, 0.1, 0.0]  # max along k, then min back
    assert "10 draws" in band.name and "min" in band.name and "max" in band.name
    assert list(mean.y) == [0.1, 0.3, 1.0]


# --------------------------------------------------------------------------- path patching

def path_rows(real: float = 0.9) -> pd.DataFrame:
    """Direct paths into layer 1's q and k: one real cell (L0H0 → L1H0 q), the rest near 0."""
    rows = [dict(granularity="direct_path", layer=1, position=-1, head=rh, sender_layer=0, sender_head=sh,
                 receiver_input=name, value=real if (sh, rh, name) == (0, 0, "q") else 0.01 * (sh - rh),
                 raw=0.0)
            for sh in range(3) for rh in range(3) for name in ("q", "k")]
    return pd.DataFrame(rows)


def test_path_heatmap_prints_its_values_in_the_cells():
    from analyses.figures.activation_patching import path_heatmap

    heat = path_heatmap(path_rows(), "q").data[0]
    text = np.array(heat.text)
    assert heat.texttemplate == "%{text}" and text[0, 0] == "0.90"  # L0H0 → L1H0
    assert text[1, 0] == "0.01" and text[0, 1] == "-0.01"
    small = path_heatmap(path_rows(real=0.036), "q").data[0]
    assert np.array(small.text)[0, 0] == "0.036" and np.array(small.text)[1, 0] == "0.010"  # digits the scale needs
    assert np.array(path_heatmap(path_rows(real=0.036), "k").data[0].text)[0, 0] == ""  # 0 stays blank


def test_path_heatmaps_scale_each_to_its_own_data_centred_at_zero():
    from types import SimpleNamespace

    from analyses.figures.activation_patching import figures

    result = SimpleNamespace(tables={"effects": path_rows()},
                             meta={"clean_baseline": 2.0, "corrupted_baseline": 0.0, "n_tokens": 4})
    shown = figures(result)
    q, k = shown["direct_path_q"].data[0], shown["direct_path_k"].data[0]
    assert (q.zmin, q.zmid, q.zmax) == (-0.9, 0.0, 0.9)
    assert k.zmax == pytest.approx(0.02) and k.zmin == pytest.approx(-0.02)  # not washed out by q's cell
