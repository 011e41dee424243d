"""Attribution graph page: the pruned graph of a prompt, a node's strongest edges, pins,
named groups (supernodes) and notes, all held in the share link's view keys."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from analyses.core import graph_json as export
from analyses.core.errors import UserError
from analyses.figures.graph import graph_figure
from app import links
from app.components.display import display_token, md_escape
from app.components.downloads import file_stem
from app.components.form import Field
from app.components.graph_view_state import format_groups, node_labels, parse_groups, parse_pins
from app.components.latent_link import latent_url
from app.components.page import analysis_page, chart, view_key
from app.components.share_link import current_base

STRONGEST = 8  # edges listed per direction for the selected node


def _view(name: str) -> str:
    return links.view_state(links.read_query_params(st.query_params)).get(name, "")


def _set_view(name: str, value: str) -> None:
    key = links.VIEW_PREFIX + name
    if value:
        st.query_params[key] = value
    elif key in st.query_params:
        del st.query_params[key]


def draw(result):
    return {"graph": lambda: graph_section(result), **_other_figures(result),
            "recurring": lambda: recurring_section(result),
            "circuit_tracer": lambda: circuit_tracer_section(result)}


def _other_figures(result):
    figures = result.figures()
    return {name: fig for name, fig in figures.items() if name != "graph"}


def _one_example(result) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    tables = result.tables
    if "example" not in tables["nodes"].columns:
        return tables, result.meta.get("tokens")
    examples = sorted(int(e) for e in tables["nodes"]["example"].unique())
    picked = st.selectbox("Example of the set", examples, key=view_key(result, "example"))
    return ({name: frame[frame["example"] == picked] if "example" in frame.columns else frame
             for name, frame in tables.items()}, None)


def graph_section(result):
    tables, tokens = _one_example(result)
    nodes, edges = tables["nodes"], tables["edges"]
    kept = nodes[nodes["kept"].astype(bool)].sort_values("influence", ascending=False)
    choices = list(kept["node"])
    pinned = [n for n in parse_pins(_view("pinned")) if n in choices]
    groups = parse_groups(_view("groups"))
    selected = _view("selected")
    selected = selected if selected in choices else (choices[0] if choices else None)
    labels = node_labels(_view("notes"), choices)
    chart(graph_figure(nodes, edges, tokens, selected=selected, pinned=pinned, groups=groups, labels=labels),
          view_key(result, "graph"))
    if not choices:
        st.info("The pruned graph kept no node: lower the node threshold.")
        return
    left, right = st.columns([2, 3])
    with left:
        key = view_key(result, "selected")
        st.selectbox("Node (most influential first)", choices, index=choices.index(selected), key=key,
                     on_change=lambda: _set_view("selected", st.session_state[key]),
                     help="Its strongest incoming and outgoing edges are listed; in the graph it is "
                          "outlined and its edges drawn on top.")
        pin_key = view_key(result, "pinned")
        st.multiselect("Pinned nodes", choices, default=pinned, key=pin_key,
                       on_change=lambda: _set_view("pinned", ",".join(st.session_state[pin_key])),
                       help="Outlined in the graph; kept in the share link.")
        group_section(result, choices, groups)
        note_key = view_key(result, "notes")
        st.text_area("Notes", value=_view("notes"), key=note_key, max_chars=2000,
                     on_change=lambda: _set_view("notes", st.session_state[note_key]),
                     help="Your annotations of this graph, kept in the share link. A line "
                          "`node: text` (e.g. `0.455@14: S2 via L0H0`) labels that node.")
    with right:
        node_detail(result, nodes, edges, selected)


def group_section(result, choices, groups) -> None:
    """Group nodes into a named supernode (drawn as a labelled box)."""
    members_key, name_key = view_key(result, "group_members"), view_key(result, "group_name")
    st.multiselect("Nodes to group", choices, key=members_key)
    st.text_input("Group name", key=name_key, placeholder="e.g. names")

    def add():
        name, members = st.session_state[name_key].strip(), st.session_state[members_key]
        if name and members:
            _set_view("groups", format_groups({**groups, name: members}))

    st.button("Group them", on_click=add, key=view_key(result, "group_button"))
    if groups:
        st.markdown("**Groups**: " + "; ".join(f"{md_escape(n)} ({len(m)} nodes)" for n, m in groups.items()))
        st.button("Clear the groups", on_click=lambda: _set_view("groups", ""),
                  key=view_key(result, "group_clear"))


def node_detail(result, nodes: pd.DataFrame, edges: pd.DataFrame, node: str) -> None:
    row = nodes[nodes["node"] == node].iloc[0]
    st.markdown(f"**{md_escape(node)}** — {row['type']}, value {row['value']:.4g}, influence "
                f"{row['influence']:.3g}, bias {row['bias']:.4g}")
    if row["type"] == "latent":
        url = latent_url(result.spec.model, int(row["layer"]), int(row["latent"]), result.spec.transcoders,
                         current_base())
        st.markdown(f"[Open latent {int(row['latent'])} of layer {int(row['layer'])}'s transcoder]({url}) "
                    "(its dashboard: top contexts, histogram, logit effects)")
    what = dict(zip(nodes["node"], [node_words(r) for r in nodes.itertuples()]))
    for title, column, other in (("Strongest incoming edges", "target", "source"),
                                 ("Strongest outgoing edges", "source", "target")):
        mine = edges[edges[column] == node]
        mine = mine.reindex(mine["weight"].abs().sort_values(ascending=False).index)[:STRONGEST]
        st.markdown(f"**{title}**")
        if len(mine):
            shown = mine[[other, "weight"]].assign(what=[what.get(n, "") for n in mine[other]])
            st.dataframe(shown[[other, "what", "weight"]], hide_index=True, key=view_key(result, f"{title}:{node}"))
        else:
            st.caption("none in the pruned graph")


def node_words(row) -> str:
    """What a node is, in words: a logit's or an input token's text, a latent's or an error's
    layer and the token at its position."""
    token = display_token(str(row.token)) if isinstance(row.token, str) else ""
    if row.type == "logit":
        return f"the logit of {token!r}"
    if row.type == "token":
        return f"input {token!r} (position {int(row.position)})"
    kind = f"latent {int(row.latent)}" if row.type == "latent" else "what the transcoder misses"
    return f"layer {int(row.layer)} {kind}, at {token!r} (position {int(row.position)})"


def circuit_tracer_section(result) -> None:
    """circuit-tracer's graph JSON: this graph (pins and groups included) to download, for
    Neuronpedia's viewer; a graph made there opened here."""
    st.subheader("circuit-tracer / Neuronpedia graph JSON")
    tables, tokens = result.tables, result.meta.get("tokens") or []
    if "example" not in tables["nodes"].columns:
        data = export.to_json(tables["nodes"], tables["edges"], tables["logits"], prompt=result.spec.prompt or "",
                              tokens=tokens, n_layers=int(result.meta.get("n_layers", 0)),
                              slug="graph-" + file_stem(result)[-12:], scan="custom",
                              transcoder_list=sorted(result.meta.get("transcoders", {})),
                              node_threshold=float(result.spec.with_defaults().node_threshold),
                              pinned=parse_pins(_view("pinned")), groups=parse_groups(_view("groups")),
                              labels=node_labels(_view("notes"), tables["nodes"]["node"]))
        st.download_button("Download this graph as circuit-tracer JSON", json.dumps(data),
                           file_name=f"{file_stem(result)}.json", mime="application/json",
                           key=view_key(result, "ct_download"))
    upload = st.file_uploader("Open a circuit-tracer graph JSON", type=["json"], key=view_key(result, "ct_upload"))
    if upload is not None:
        try:
            found = export.from_json(json.loads(upload.getvalue()))
        except (ValueError, UserError) as err:
            st.error(md_escape(f"{upload.name}: {err}"))
            return
        shown = found["nodes"].assign(influence=1.0 - found["nodes"]["cumulative"].fillna(1.0))
        st.caption(md_escape(f"{upload.name}: {len(shown)} nodes, {len(found['edges'])} edges; prompt "
                             f"{found['prompt'][:80]!r}"))
        chart(graph_figure(shown, found["edges"], found["tokens"], pinned=found["pinned"], groups=found["groups"],
                           labels=found["labels"]),
              view_key(result, "ct_graph"))


def recurring_section(result) -> None:
    if "recurring" in result.tables:
        st.subheader("Latents that recur across the set's graphs")
        st.dataframe(result.tables["recurring"].head(50), hide_index=True, key=view_key(result, "recurring"))


analysis_page(
    "graph",
    intro="An **attribution graph** (Ameisen et al. 2025, \"Circuit Tracing\"; the circuit-tracer "
          "library) explains one prompt's next-token prediction through transcoder latents. Each MLP "
          "is replaced by its transcoder, every attention pattern and norm scale is frozen at its "
          "value on the prompt, and an error node per layer and position holds what the transcoder "
          "misses, so this *local replacement model* gives the model's logits exactly and is linear "
          "from latents to logits: each edge is an exact direct effect (through the residual stream, "
          "attention's OV circuits and the transcoders' linear skips). The graph is pruned to the "
          "nodes that hold most of the influence on the logits. Interventions compare the graph's "
          "linear prediction with the real model, where attention is free to move.",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("node_threshold", "Node threshold", placeholder="0.8",
              help="Keep the nodes that hold this share of the influence on the logits."),
        Field("edge_threshold", "Edge threshold", placeholder="0.98"),
        Field("max_features", "Most latent nodes", placeholder="1000"),
        Field("intervene", "Interventions", placeholder="e.g. 2.596@14:x0, 0.427@4:=2",
              help="Latents to set (node:op; op xK scales, =V sets): the graph's predicted logit "
                   "change beside the model's. Empty: the three most influential latents, zeroed."),
        Field("transcoders", "Transcoders folder",
              help="A folder of blocks.L.mlp transcoders; empty: the model's own (data/dictionaries)."),
    ],
    draw=draw,
)
