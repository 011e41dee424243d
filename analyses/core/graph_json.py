"""circuit-tracer's graph JSON (the file Neuronpedia's graph viewer opens), written and read.

The format (circuit-tracer `frontend/graph_models.py`, `utils/create_graph_files.py`):

    {"metadata": {"slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold"},
     "qParams": {"pinnedIds", "supernodes": [[name, node_id, ...], ...], "linkType", "clickedId", "sg_pos"},
     "nodes": [{"node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob",
                "is_target_logit", "run_idx", "reverse_ctx_idx", "jsNodeId", "clerp",
                "influence", "activation"}, ...],
     "links": [{"source", "target", "weight"}, ...]}

Node ids there: latent `{layer}_{latent}_{pos}`, error `0_{layer}_{pos}`, token
`E_{token_id}_{pos}`, logit `{n_layers + 1}_{token_id}_{pos}`; `feature_type` tells them
apart ("cross layer transcoder", "mlp reconstruction error", "embedding", "logit"), so an
error id that spells like a layer-0 latent's is still read right. `influence` is the node's
cumulative influence share, as circuit-tracer writes it. Only the pruned graph is written.
"""
from __future__ import annotations

import pandas as pd

from analyses.core.errors import UserError

FEATURE_TYPES = {"latent": "cross layer transcoder", "error": "mlp reconstruction error",
                 "token": "embedding", "logit": "logit"}
TYPES = {v: k for k, v in FEATURE_TYPES.items()}


def _process_token(text: str) -> str:
    return text.replace("\n", "⏎").replace("\t", "→").replace("\r", "↵")


def ct_node_id(row, n_layers: int) -> str:
    kind, layer, pos = row["type"], int(row["layer"]), int(row["position"])
    if kind == "latent":
        return f"{layer}_{int(row['latent'])}_{pos}"
    if kind == "error":
        return f"0_{layer}_{pos}"
    if kind == "token":
        return f"E_{int(row['token_id'])}_{pos}"
    return f"{n_layers + 1}_{int(row['token_id'])}_{pos}"


def to_json(nodes: pd.DataFrame, edges: pd.DataFrame, logits: pd.DataFrame, *, prompt: str,
            tokens: list[str], n_layers: int, slug: str, scan: str, transcoder_list: list[str],
            node_threshold: float, pinned=(), groups: dict | None = None,
            labels: dict | None = None) -> dict:
    """The pruned graph (kept nodes, their edges) as circuit-tracer's graph JSON; `labels`
    (node id -> text) become the nodes' `clerp`, circuit-tracer's annotation field."""
    shown = nodes[nodes["kept"].astype(bool)]
    ids = {row["node"]: ct_node_id(row, n_layers) for _, row in shown.iterrows()}
    probs = dict(zip(logits["token_id"].astype(int), logits["prob"].astype(float)))
    top_logit = int(logits["token_id"].iloc[0]) if len(logits) else None
    out_nodes = []
    for _, row in shown.iterrows():
        kind, layer, pos = row["type"], int(row["layer"]), int(row["position"])
        node = {"node_id": ids[row["node"]], "feature": -1, "layer": str(layer), "ctx_idx": pos,
                "feature_type": FEATURE_TYPES[kind], "token_prob": 0.0, "is_target_logit": False,
                "run_idx": 0, "reverse_ctx_idx": 0, "jsNodeId": "",
                "influence": float(row["cumulative"]), "activation": None,
                "clerp": (labels or {}).get(row["node"], "")}
        if kind == "latent":
            node.update(feature=int(row["latent"]), jsNodeId=f"{layer}_{int(row['latent'])}-0",
                        activation=float(row["value"]))
        elif kind == "error":
            node.update(jsNodeId=f"{layer}_{pos}-0")
        elif kind == "token":
            node.update(feature=pos, layer="E", jsNodeId=f"E_{int(row['token_id'])}-{pos}")
        else:
            token_id = int(row["token_id"])
            prob = probs.get(token_id, 0.0)
            node.update(feature=token_id, layer=str(n_layers + 1), token_prob=prob,
                        is_target_logit=token_id == top_logit, jsNodeId=f"L_{token_id}-{pos}",
                        clerp=f'Output "{_process_token(str(row["token"]))}" (p={prob:.3f})', influence=None)
        out_nodes.append(node)
    links = [{"source": ids[s], "target": ids[t], "weight": float(w)}
             for s, t, w in edges[["source", "target", "weight"]].itertuples(index=False)
             if s in ids and t in ids]
    return {
        "metadata": {"slug": slug, "scan": scan, "transcoder_list": list(transcoder_list),
                     "prompt_tokens": [_process_token(t) for t in tokens], "prompt": prompt,
                     "node_threshold": float(node_threshold)},
        "qParams": {"pinnedIds": [ids[p] for p in pinned if p in ids],
                    "supernodes": [[name, *(ids[m] for m in members if m in ids)]
                                   for name, members in (groups or {}).items()],
                    "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": out_nodes,
        "links": links,
    }


def from_json(data: dict) -> dict:
    """A circuit-tracer graph JSON as our tables and view state: {"nodes", "edges", "logits",
    "prompt", "tokens", "pinned", "groups"} (node ids ours; latents' values from `activation`)."""
    try:
        nodes_in, links_in = data["nodes"], data["links"]
        metadata, qparams = data.get("metadata", {}), data.get("qParams", {})
    except (KeyError, TypeError):
        raise UserError("not a circuit-tracer graph: it needs `nodes` and `links`") from None
    tokens = list(metadata.get("prompt_tokens", []))
    rows, ours = [], {}
    for node in nodes_in:
        kind = TYPES.get(node.get("feature_type"))
        if kind is None:
            raise UserError(f"node {node.get('node_id')!r}: unknown feature_type {node.get('feature_type')!r}")
        pos = int(node["ctx_idx"])
        parts = str(node["node_id"]).split("_")
        if kind == "latent":
            layer, latent = int(node["layer"]), int(parts[1])
            name, token_id = f"{layer}.{latent}@{pos}", -1
        elif kind == "error":
            layer, latent = int(node["layer"]), -1
            name, token_id = f"err{layer}@{pos}", -1
        elif kind == "token":
            layer, latent, token_id = -1, -1, int(parts[1])
            name = f"tok@{pos}"
        else:
            layer, latent, token_id = int(node["layer"]) - 1, -1, int(node["feature"])
            name = f"logit:{token_id}"
        ours[node["node_id"]] = name
        value = node.get("activation")
        rows.append({"node": name, "type": kind, "layer": layer, "position": pos, "latent": latent,
                     "token_id": token_id, "token": tokens[pos] if kind != "logit" and pos < len(tokens) else "",
                     "value": float(value) if value is not None else float("nan"), "bias": float("nan"),
                     "influence": float("nan"),
                     "cumulative": float(node["influence"]) if node.get("influence") is not None else float("nan"),
                     "kept": True, "prob": float(node.get("token_prob") or 0.0),
                     "clerp": node.get("clerp", "")})
    nodes = pd.DataFrame(rows)
    edges = pd.DataFrame([{"source": ours[link["source"]], "target": ours[link["target"]],
                           "weight": float(link["weight"])} for link in links_in],
                         columns=["source", "target", "weight"])
    logit_rows = nodes[nodes["type"] == "logit"]
    logits = pd.DataFrame({"token_id": logit_rows["token_id"].astype(int), "prob": logit_rows["prob"],
                           "clerp": logit_rows["clerp"]}).reset_index(drop=True)
    groups = {group[0]: [ours[m] for m in group[1:] if m in ours]
              for group in qparams.get("supernodes", []) if group}
    return {"nodes": nodes.drop(columns=["prob", "clerp"]), "edges": edges, "logits": logits,
            "prompt": metadata.get("prompt", ""), "tokens": tokens,
            "pinned": [ours[p] for p in qparams.get("pinnedIds", []) if p in ours], "groups": groups,
            "labels": {row["node"]: row["clerp"] for row in rows if row["clerp"] and row["type"] != "logit"}}
