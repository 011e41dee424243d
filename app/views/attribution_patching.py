"""Attribution patching page: every node's patching effect estimated at once (AtP / AtP*)."""
import streamlit as st

from analyses.figures.attribution_patching import NODE_TITLES, agreement_note
from analyses.figures.layout import differing_positions
from app.components.display import md_escape
from app.components.form import Field
from app.components.head_links import head_links, top_heads
from app.components.page import analysis_page, chart, view_key
from app.components.window import position_picker

TRUST = ("Where to trust AtP: it is a first-order (linear) estimate, so it ranks nodes well where "
         "a node acts almost linearly on the logit difference (residual stream, MLP and head "
         "outputs, values) and misses effects through a saturated attention softmax (queries "
         "and keys: turn on the QK fix) or effects that cancel between paths (GradDrop); check "
         "the nodes it ranks highest with exact patching.")


def draw(result):
    if "latents" in result.tables:  # dictionary=: the dictionary's latents instead of the basis' nodes
        return draw_latents(result)
    meta = result.meta
    agreement = result.tables.get("agreement")
    magnitude = bool(meta.get("atp_is_magnitude"))

    def summary():
        method, clean_box, corrupted_box = st.columns(3)
        method.metric("Method", str(meta.get("method", "AtP")), border=True)
        clean_box.metric("Clean logit difference", f"{meta['clean_baseline']:.3f}", border=True)
        corrupted_box.metric("Corrupted logit difference", f"{meta['corrupted_baseline']:.3f}",
                             border=True)
        if magnitude:
            st.caption("With GradDrop each AtP value is a size (≥ 0): it is compared with |exact|.")

    nodes = result.tables["attributions"]
    positions = position_picker(view_key(result, "positions"), int(meta["n_tokens"]),
                                differing_positions(meta.get("clean_tokens"), meta.get("corrupted_tokens")))
    figures = result.figures(positions=positions)
    kinds = [name for name in figures if name.startswith("atp_")]

    def one_node_kind():
        """One node kind's heatmaps at a time: six stacked grids were a page 8,000 px tall."""
        labels = {name: f"{name[4:]}: {NODE_TITLES.get(name[4:], 'nodes')}" for name in kinds}
        default = "atp_head" if "atp_head" in kinds else kinds[0]
        chosen = st.segmented_control("Node kind", kinds, default=default, format_func=labels.get,
                                      key=view_key(result, "node")) or default
        chart(figures[chosen], view_key(result, "node_figure"))
        if "gradient" in meta:  # under the figure, as the note below: a link lands on the figure
            st.caption(md_escape(f"Gradient on the {meta['gradient']}; atp and exact: {meta['units']}."))
        st.info(md_escape(TRUST), icon=":material/rule:")  # under the figure: a link lands on the figure

    shown = {"summary": summary, "node_kind": one_node_kind,
             **{name: fig for name, fig in figures.items() if name not in kinds}}
    heads = top_heads(nodes[nodes["node"] == "head"], "atp")
    shown["attention_links"] = lambda: head_links(result.spec.model, result.spec.clean, heads,
                                                  "with the largest AtP estimate")

    def agreement_numbers():
        if agreement is not None:
            st.dataframe(agreement.round(2), hide_index=True, key=view_key(result, "agreement"))
        st.caption(md_escape(agreement_note(agreement)))
        relp = result.tables.get("relp_agreement")
        if relp is not None:
            st.markdown("**RelP** against exact patching, measured the same way (no q or k nodes: "
                        "RelP holds attention patterns fixed)")
            st.dataframe(relp.round(2), hide_index=True, key=view_key(result, "relp_agreement"))

    shown["agreement_numbers"] = agreement_numbers
    return shown


def draw_latents(result):
    """A dictionary's latents and error node: the heatmap, the largest nodes, the agreement."""
    meta = result.meta
    positions = position_picker(view_key(result, "positions"), int(meta["n_tokens"]),
                                differing_positions(meta.get("clean_tokens"), meta.get("corrupted_tokens")))
    figures = result.figures(positions=positions)

    def summary():
        nodes, clean_box, corrupted_box = st.columns(3)
        nodes.metric("Latent and error nodes", f"{meta.get('n_nodes')}", border=True)
        clean_box.metric("Clean logit difference", f"{meta['clean_baseline']:.3f}", border=True)
        corrupted_box.metric("Corrupted logit difference", f"{meta['corrupted_baseline']:.3f}", border=True)
        st.caption(md_escape(f"{meta.get('dictionary')}. Per position the latents and the error node sum to "
                             "the site's own AtP node; the error node is what the dictionary does not "
                             "reconstruct, shown, never hidden."))

    def top_nodes():
        latents = result.tables["latents"]
        top = latents.reindex(latents["atp"].abs().sort_values(ascending=False).index).head(30)
        st.dataframe(top.round(4), hide_index=True, key=view_key(result, "latents"))

    def agreement_numbers():
        agreement = result.tables.get("agreement")
        if agreement is not None:
            st.dataframe(agreement.round(2), hide_index=True, key=view_key(result, "agreement"))
        st.caption(md_escape(agreement_note(agreement)))

    return {"summary": summary, **figures, "top_nodes": top_nodes, "agreement_numbers": agreement_numbers}


analysis_page(
    "attribution_patching",
    intro="**Attribution patching** (Nanda 2023; Kramár et al. 2024, *AtP\\**) estimates the "
          "effect of patching every node from corrupted to clean at once, from one forward and "
          "one backward pass: (clean − corrupted activation) · gradient of the logit "
          "difference. Each heatmap shows one kind of node; RelP's estimates (relevance "
          "patching, Jafari et al. 2025: `method=relp`) and, when exact patching runs too "
          "(`exact`), its effects sit beside AtP's on the same colour scale, and a scatter "
          "shows how well the estimates agree with it. With a sparse **dictionary** (`dictionary`), "
          "the nodes are its latents at each position and its error node instead.",
    fields=[
        Field("clean", "Clean prompt", multiline=True),
        Field("corrupted", "Corrupted prompt", multiline=True,
              help="The same number of tokens as the clean prompt."),
        Field("answer", "Answer", placeholder="e.g. ␣Mary (one token, its leading space kept)"),
        Field("wrong", "Wrong answer", placeholder="e.g. ␣John (one token, its leading space kept)"),
        Field("layer", "Only this layer", help="Leave empty for every layer."),
        Field("exact", "Also run exact patching",
              help="auto: when there are at most 2,000 nodes. Exact patching is one patched "
                   "run per node (batched), the ground truth AtP is checked against."),
        Field("qk_fix", "AtP* QK fix (recompute the attention softmax for queries and keys)"),
        Field("graddrop", "AtP* GradDrop (average |AtP| over layer-dropped gradients)"),
        Field("gradient", "Gradient on", help="corrupted (default; TransformerLens's attribution_patch): "
              "estimates restoring each node's clean value into the corrupted run. clean (Syed et al. "
              "2023): estimates corrupting it in the clean run; exact patching then measures that."),
        Field("dictionary", "Dictionary (latents instead of the model's nodes)",
              placeholder="e.g. blocks.1.hook_resid_post, blocks.1.attn.hook_z, blocks.1.mlp",
              help="AtP over a sparse dictionary's latents and its error node at each position "
                   "(the layer, QK fix, GradDrop and RelP options do not apply); exact patching of "
                   "each latent beside it."),
        Field("method", "Estimates", help="atp: the gradient (AtP). relp: AtP beside relevance patching "
                                          "(RelP, Jafari et al. 2025), one more backward pass, compared "
                                          "with exact patching per node kind when exact runs."),
    ],
    draw=draw,
)
