"""Circuit page: the edges that carry the behaviour, as a graph, and how much of it they keep
when run alone."""
import streamlit as st

from analyses import AnalysisSpec
from analyses.figures.circuit import compared_score, default_k, disagreeing, flag_rule
from app import links
from app.components.display import md_escape
from app.components.form import Field
from app.components.page import analysis_page, view_key


def draw(result):
    faith = result.tables["faithfulness"]
    ks = [int(k) for k in faith["k"]]
    k = st.select_slider("Edges in the circuit, k (a view of this result: every k shown was run)", ks,
                         value=default_k(faith), key=view_key(result, "k"),
                         help="The faithfulness of each of these k was measured in the run; moving the "
                              "slider redraws the graph with the top k edges.")
    figures = result.figures(k=k)
    return {"numbers": lambda: numbers(result, k), "graph": figures.pop("graph"),
            "convention": lambda: convention(result.meta), "flags": lambda: flagged_edges(result, k),
            "path_links": lambda: path_links(result, k), **figures}


def flagged_edges(result, k):
    """Under the graph: the rule, and the drawn edges whose exact effect disagrees with their score."""
    edges = result.tables["edges"].sort_values("rank").head(k)
    if not edges["exact"].notna().any():
        st.caption("Run with exact patching to check each edge's score against its exact effect: an "
                   "edge that disagrees is then drawn dashed and listed here.")
        return
    st.caption(md_escape(flag_rule() + "."))
    flags = disagreeing(edges, float(result.meta.get("total_effect", 0.0)))
    if not flags.any():
        st.caption(md_escape(f"No edge of the top {k} disagrees."))
        return
    shown = edges[flags].assign(score_on_sample=compared_score(edges)[flags])
    st.markdown(md_escape(f"⚠ {int(flags.sum())} of the top {k} edges disagree with their exact effect:"))
    st.dataframe(shown[["rank", "sender", "receiver", "receiver_input", "score", "score_on_sample", "exact"]],
                 hide_index=True, column_config={"score_on_sample": "score (exact's examples)",
                                                 "receiver_input": "input"})


def numbers(result, k):
    meta, faith = result.meta, result.tables["faithfulness"]
    row = faith[faith["k"] == k].iloc[0]
    kept, baseline, total = st.columns(3)
    kept.metric(f"Kept by the top {k} edges", f"{row['metric']:.0%}", border=True,
                help="(mean circuit − mean corrupted) / (mean clean − mean corrupted) logit difference")
    baseline.metric(f"Kept by {k} random edges", f"{row['random_mean']:.0%}", border=True,
                    help=f"mean of the random sets (range {row['random_min']:.0%} to {row['random_max']:.0%})")
    total.metric("Clean − corrupted logit difference", f"{meta['total_effect']:.3g}", border=True,
                 help=f"over {meta['n_examples']} examples; the embedding's edges sum to "
                      f"{meta['embed_total']:.3g} (EAP-IG: close to it, by completeness)")


def convention(meta):
    """Under the graph (a link lands on the graph): which run the edge scores' gradient is on."""
    if "gradient" in meta:
        st.caption(md_escape(f"{meta['method']} gradient: {meta['gradient']}."))


def path_links(result, k):
    """An edge from one head into another head's input opens its path-patching view."""
    spec = result.spec
    if spec.dataset is not None:
        return
    edges = result.tables["edges"].sort_values("rank").head(k)
    heads = edges[edges["sender"].str.contains("H") & edges["receiver_input"].isin(["q", "k", "v"])]
    if heads.empty:
        return
    labels = [f"#{r.rank} {r.sender} → {r.receiver} ({r.receiver_input})" for r in heads.itertuples()]
    pick = st.selectbox("Open an edge between heads in path patching", range(len(labels)),
                        format_func=lambda i: labels[i], key=view_key(result, "edge"))
    layer = int(heads.iloc[pick]["receiver"].split("H")[0][1:])
    target = AnalysisSpec(kind="activation_patching", model=spec.model, clean=spec.clean,
                          corrupted=spec.corrupted, answer=spec.answer, wrong=spec.wrong,
                          granularity="direct_path", layer=layer)
    st.page_link(links.page_file("activation_patching"), label=md_escape(
        f"Path patching into layer {layer}: every sender head → receiver head input"),
        query_params=links.params(target), icon=":material/call_split:")


analysis_page(
    "circuit",
    intro="**Circuit discovery** scores every edge between components — the embedding, each "
          "head's output and each MLP's output into each head's query, key and value inputs, each "
          "MLP's input and the logits — by how much it carries the logit difference answer − "
          "wrong: EAP (Syed et al. 2023) or EAP-IG (Hanna et al. 2024). The top-k edges are then "
          "**run as a circuit**: the clean prompt, with every other edge carrying its value from "
          "the corrupted run. What share of the behaviour they keep, against as many random edges, "
          "is its faithfulness.",
    fields=[
        Field("clean", "Clean prompt", multiline=True),
        Field("corrupted", "Corrupted prompt (same token length)", multiline=True),
        Field("answer", "Answer", placeholder="e.g. ␣Mary (one token)"),
        Field("wrong", "Wrong answer", placeholder="e.g. ␣John (one token)"),
        Field("method", "Edge scores"),
        Field("gradient", "Gradient on (eap)", help="corrupted (default; TransformerLens): estimates "
              "restoring each edge's clean write into the corrupted run. clean (Syed et al. 2023's "
              "code): estimates corrupting it in the clean run. The answer can differ."),
        Field("steps", "Integrated-gradient steps (eap_ig)"),
        Field("exact", "Also patch each edge exactly (slower; up to 16 examples, drawn at random)"),
        Field("seed", "Seed (random edge sets)"),
    ],
    draw=draw,
)
