"""The prompt view: a prompt read through a sparse dictionary, latents × positions; pick a
latent to open its page."""
import streamlit as st

from analyses.core.latent_links import latent_query
from app import links
from app.components.display import md_escape
from app.components.form import Field
from app.components.page import analysis_page, view_key

LINKS_SHOWN = 12


def draw(result):
    return {**result.figures(), "open_latent": lambda: open_latent(result)}


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
    intro="A prompt read through a **sparse dictionary** (a TopK sparse autoencoder on the residual "
          "stream or the attention output, or an MLP transcoder): the latents that fire most at each "
          "position, what each latent writes toward (its decoder direction through the final norm "
          "and the unembedding; through W_O first for attention outputs), and the reconstruction "
          "error — the part of the site the dictionary cannot explain, shown, never hidden. "
          "A latent's density is measured once per dictionary on held-out text.",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("dictionary", "Dictionary", placeholder="e.g. blocks.1.hook_resid_post, blocks.1.attn.hook_z, "
                                                      "blocks.1.mlp, or a directory"),
        Field("top_k", "Latents per position", help="How many of each position's firing latents are "
                                                    "listed, strongest first (default 10)."),
    ],
    draw=draw,
)
