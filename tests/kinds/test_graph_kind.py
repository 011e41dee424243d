"""The `graph` kind end to end: tables through compute() and the CLI, a prompt set, and
circuit-tracer's graph JSON written, checked against its published schema and read back."""
import json

import numpy as np
import pytest
from pydantic import BaseModel

from analyses import AnalysisSpec, compute
from analyses.core import graph_json as export
from analyses.dictionaries import formats
from tests.kinds.graph_helpers import random_transcoders

pytestmark = pytest.mark.usefixtures("private_cache")
PROMPT = "When Mary and John went to the store"


@pytest.fixture
def tiny_with_transcoders(tiny_gpt2_dir, tmp_path):
    from analyses.runtime import models

    bridge = models.load(str(tiny_gpt2_dir)).bridge
    folder = tmp_path / "transcoders"
    for layer, coder in enumerate(random_transcoders(bridge)):
        formats.save(coder, folder / f"blocks.{layer}.mlp")
    return tiny_gpt2_dir, folder


def _spec(model_dir, folder, **extra):
    return AnalysisSpec(kind="graph", model=str(model_dir), prompt=PROMPT, transcoders=str(folder), **extra)


def test_graph_tables_are_consistent(tiny_with_transcoders):
    model_dir, folder = tiny_with_transcoders
    result = compute(_spec(model_dir, folder))
    nodes, edges, logits, scores = (result.tables[n] for n in ("nodes", "edges", "logits", "scores"))
    assert set(nodes["type"]) == {"latent", "error", "token", "logit"}
    assert nodes["node"].is_unique
    assert logits["prob"].sum() >= 0.95 or len(logits) == 10  # circuit-tracer's logit coverage
    assert np.all(np.diff(logits["prob"]) <= 0)
    kept = set(nodes.loc[nodes["kept"], "node"])
    assert set(edges["source"]) | set(edges["target"]) <= kept  # edges only between kept nodes
    assert nodes.loc[nodes["type"].isin(["token", "logit"]), "kept"].all()
    assert set(scores["graph"]) == {"full", "pruned"}
    assert scores[["replacement", "completeness"]].stack().between(0, 1).all()
    assert result.meta["replacement_error"] <= 1e-4
    # a logit node's value: its logit minus the mean logit (the logits table holds both)
    last = logits.iloc[0]
    assert last["value"] == pytest.approx(nodes.loc[nodes["node"] == f"logit:{last['token_id']}", "value"].item())
    interventions = result.tables["interventions"]
    assert len(interventions) and (interventions["new_value"] == 0).all()
    assert np.isfinite(interventions[["predicted", "actual"]]).all().all()


def test_thresholds_and_cap_prune_more(tiny_with_transcoders):
    model_dir, folder = tiny_with_transcoders
    loose = compute(_spec(model_dir, folder, node_threshold="1", edge_threshold="1"))
    tight = compute(_spec(model_dir, folder, node_threshold="0.5", max_features=3))
    n_loose = loose.tables["nodes"].query("type == 'latent'")["kept"].sum()
    n_tight = tight.tables["nodes"].query("type == 'latent'")["kept"].sum()
    assert n_tight <= min(3, n_loose)


def test_an_intervention_names_its_node_and_a_bad_one_is_refused(tiny_with_transcoders):
    model_dir, folder = tiny_with_transcoders
    first = compute(_spec(model_dir, folder))
    node = first.tables["nodes"].query("type == 'latent'")["node"].iloc[0]
    result = compute(_spec(model_dir, folder, intervene=f"{node}:x1, {node}:=0"))
    table = result.tables["interventions"]
    same = table[table["op"] == "x1"]
    assert np.allclose(same["predicted"], 0) and np.allclose(same["actual"], 0, atol=1e-5)
    from analyses.core.errors import SpecError
    from analyses.kinds.graph.run import run
    from analyses.runtime import models
    with pytest.raises(SpecError, match="intervene"):
        run(models.load(str(model_dir)), _spec(model_dir, folder, intervene="9.9999@0:x0"))


def test_missing_transcoders_are_named(tiny_gpt2_dir, tmp_path):
    from analyses.core.errors import SpecError
    from analyses.kinds.graph.run import run
    from analyses.runtime import models

    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="blocks.0.mlp"):
        run(models.load(str(tiny_gpt2_dir)), _spec(tiny_gpt2_dir, tmp_path / "empty"))


def test_a_prompt_set_gives_per_example_graphs_and_recurring_latents(tiny_with_transcoders, tmp_path):
    from analyses.runtime.datasets import add

    model_dir, folder = tiny_with_transcoders
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": p}) for p in
                              ["When Mary and John went", "When Anne and Bob went", "The cat sat"]))
    reference = add(rows).reference
    result = compute(AnalysisSpec(kind="graph", model=str(model_dir), dataset=reference, transcoders=str(folder)))
    assert sorted(result.tables["nodes"]["example"].unique()) == [0, 1, 2]
    summary = result.tables["scores_summary"]
    assert set(summary["graph"]) == {"full", "pruned"} and (summary["n"] == 3).all()
    recurring = result.tables["recurring"]
    kept = result.tables["nodes"].query("type == 'latent' and kept")
    top = recurring.iloc[0]
    mine = kept[(kept["layer"] == top["layer"]) & (kept["latent"] == top["latent"])]
    assert top["n_examples"] == mine["example"].nunique()
    assert top["mean_influence"] == pytest.approx(mine.groupby("example")["influence"].sum().mean())


# ------------------------------------------------------------------ circuit-tracer's JSON

class CTMetadata(BaseModel):  # circuit-tracer frontend/graph_models.py, as published
    slug: str
    scan: str
    transcoder_list: list[str]
    prompt_tokens: list[str]
    prompt: str
    node_threshold: float | None = None


class CTQParams(BaseModel):
    pinnedIds: list[str]
    supernodes: list[list[str]]
    linkType: str
    clickedId: str
    sg_pos: str


class CTNode(BaseModel):
    model_config = {"extra": "forbid"}
    node_id: str
    feature: int
    layer: str
    ctx_idx: int
    feature_type: str
    token_prob: float = 0.0
    is_target_logit: bool = False
    run_idx: int = 0
    reverse_ctx_idx: int = 0
    jsNodeId: str
    clerp: str = ""
    influence: float | None = None
    activation: float | None = None


class CTModel(BaseModel):
    metadata: CTMetadata
    qParams: CTQParams
    nodes: list[CTNode]
    links: list[dict]


def test_export_meets_circuit_tracers_schema_and_round_trips(tiny_with_transcoders):
    model_dir, folder = tiny_with_transcoders
    result = compute(_spec(model_dir, folder))
    nodes, edges, logits = (result.tables[n] for n in ("nodes", "edges", "logits"))
    kept = nodes[nodes["kept"]]
    pinned = list(kept["node"][:2])
    groups = {"first two": pinned}
    data = export.to_json(nodes, edges, logits, prompt=PROMPT, tokens=result.meta["tokens"],
                          n_layers=result.meta["n_layers"], slug="test", scan="custom",
                          transcoder_list=["a", "b"], node_threshold=0.8, pinned=pinned, groups=groups,
                          labels={pinned[0]: "the first"})
    text = json.dumps(data)
    CTModel.model_validate_json(text)  # the published pydantic schema accepts it
    ids = [n["node_id"] for n in data["nodes"]]
    assert len(set(ids)) == len(ids) or any(n["feature_type"] == "mlp reconstruction error" for n in data["nodes"])
    back = export.from_json(json.loads(text))
    assert sorted(back["nodes"]["node"]) == sorted(kept["node"])
    merged = back["nodes"].set_index("node").loc[kept["node"]]
    assert (merged["type"].values == kept["type"].values).all()
    assert (merged["layer"].values == kept["layer"].values).all()
    assert (merged["position"].values == kept["position"].values).all()
    latents = kept["type"] == "latent"
    assert np.allclose(merged["value"].values[latents.values], kept["value"].values[latents.values])
    got = back["edges"].set_index(["source", "target"])["weight"].sort_index()
    want = edges.set_index(["source", "target"])["weight"].sort_index()
    assert got.index.equals(want.index) and np.allclose(got.values, want.values)
    assert back["pinned"] == pinned and back["groups"] == groups
    assert back["labels"] == {pinned[0]: "the first"}
    assert back["logits"]["token_id"].tolist() == logits["token_id"].tolist()


def test_the_result_key_changes_when_the_transcoders_are_retrained(tiny_with_transcoders):
    import os

    from analyses.runtime.service import result_key

    model_dir, folder = tiny_with_transcoders
    spec = _spec(model_dir, folder)
    before = result_key(spec)
    assert result_key(spec) == before
    weights = folder / "blocks.1.mlp" / "sae.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as a retrain rewrites it
    assert result_key(spec) != before
