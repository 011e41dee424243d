"""The prompt view: a prompt read through a sparse dictionary, latents × positions; pick a
latent to open its page. Over a prompt set: each latent's frequency against its strength,
and a table of every latent that fires, each linked to its page."""
import json

import streamlit as st

from analyses.core.latent_links import latent_links, latent_query
from app import links
from app.components.display import md_escape
from app.components.form import Field
from app.components.page import analysis_page, display_frame, view_key
from app.components.set_view import one_example, summary
from app.components.share_link import current_base

LINKS_SHOWN = 12
SET_ROWS_SHOWN = 200  # rows of the set's latent table on the page (the downloads hold them all)


def draw(result):
    if "set_latents" in result.tables:  # a prompt set: the latents pooled over its rows
        return {"set_summary": lambda: summary(result), **result.figures(),
                "latent_table": lambda: set_latent_table(result), "one_example": lambda: one_example(result)}
    return {**result.figures(), "open_latent": lambda: open_latent(result)}


def set_latent_table(result):
    """Every latent that fires in the set, strongest share × mean first, each linked to its page."""
    table = result.tables["set_latents"]
    if not len(table):
        st.caption("No latent fires after BOS on any prompt of the set.")
        return
    spec, base = result.spec, current_base()
    shown = table.head(SET_ROWS_SHOWN).copy()
    shown["promotes"] = [", ".join(json.loads(cell)[:5]) for cell in shown["promotes"]]
    shown["page"] = latent_links(spec.model, spec.dictionary, shown["latent"], base)
    st.markdown("**Each latent over the set** — " + md_escape(
        f"{len(table):,} latents fire after BOS in at least one example; the largest share of examples × "
        "mean activation first (activations in the dictionary's units; max: its largest, at that example, "
        "position and token)"))
    columns = ["latent", "page", "share_of_examples", "n_examples", "mean_value", "max_value", "promotes",
               "max_example", "max_position", "max_token", "density"]
    st.dataframe(display_frame(shown[columns]), hide_index=True, key=view_key(result, "set_latents"),
                 column_config={
                     "page": st.column_config.LinkColumn("dashboard", display_text="open its page"),
                     "n_examples": st.column_config.NumberColumn("examples"),
                     "share_of_examples": st.column_config.NumberColumn("share of examples", format="percent"),
                     "density": st.column_config.NumberColumn("density (held-out)", format="percent"),
                     "mean_value": st.column_config.NumberColumn("mean where active", format="%.3f"),
                     "max_value": st.column_config.NumberColumn("max", format="%.3f"),
                     "promotes": st.column_config.TextColumn("promotes (logit effects)"),
                     "max_example": st.column_config.NumberColumn("max at example"),
                     "max_position": st.column_config.NumberColumn("position"),
                     "max_token": st.column_config.TextColumn("token"),
                 })
    if len(table) > SET_ROWS_SHOWN:
        st.caption(f"The first {SET_ROWS_SHOWN} of {len(table):,}; the `set_latents` download holds them all.")


def open_latent(result):
    """A latent of the prompt (strongest first) -> its page: contexts, histogram, effects."""
    latents = result.tables["latents"]
    promote = latents[latents["direction"] == "promote"]
    order = list(dict.fromkeys(int(v) for v in latents["latent"]))
    if not order:
        st.caption("No latent fires after BOS on this prompt.")
        return
    top = {int(latent): ", ".join(repr(str(t)) for t in part.sort_values("rank")["token_str"].head(3))
           for latent, part in promote.groupby("latent")}
    peak = latents.drop_duplicates("latent").set_index("latent")
    st.subheader("Open a latent's page")
    picked = st.selectbox("Latent (strongest on this prompt first)", order, key=view_key(result, "latent"),
                          format_func=lambda v: f"#{v} · max {peak.loc[v, 'max_value']:.2f} · density "
                                                f"{peak.loc[v, 'density']:.2%} · promotes {top.get(v, '')}")
    spec = result.spec
    st.page_link(links.page_file("latent_index"), label=md_escape(f"Latent {picked}: its dashboard"),
                 query_params=latent_query(spec.model, spec.dictionary, picked), icon=":material/open_in_new:")
    with st.container(horizontal=True):
        for latent in order[:LINKS_SHOWN]:
            st.page_link(links.page_file("latent_index"), label=f"#{latent}",
                         query_params=latent_query(spec.model, spec.dictionary, latent))


analysis_page(
    "features",
    intro="A prompt read through a **sparse dictionary** (a sparse autoencoder on the residual "
          "stream or the attention output, TopK or matching pursuit, or an MLP transcoder): the "
          "latents that fire most at each position, what each latent writes toward (its decoder "
          "direction through the final norm and the unembedding; through W_O first for attention "
          "outputs), and the reconstruction error — the part of the site the dictionary cannot "
          "explain, shown, never hidden. "
          "A latent's density is measured once per dictionary on held-out text. Over a **prompt set**: "
          "in how many examples each latent fires, how strongly (mean and max where it fires, and where "
          "its max is), what it promotes, and a link to its page.",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("dictionary", "Dictionary", placeholder="e.g. blocks.1.hook_resid_post, blocks.1.attn.hook_z, "
                                                      "blocks.1.mlp, or a directory"),
        Field("top_k", "Latents per position", help="How many of each position's firing latents are "
                                                    "listed, strongest first (default 10)."),
    ],
    draw=draw,
)
