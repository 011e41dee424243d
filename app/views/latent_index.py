"""The latent page: one latent's dashboard from its dictionary's index (built once, cached),
with a share link per latent, and searches over the whole index."""
import streamlit as st

from analyses.core.latent_links import latent_query
from analyses.figures.latent_index import default_latent
from analyses.runtime import latent_search
from analyses.runtime.service import result_key
from analyses.runtime.store import default_store
from app import links
from app.components.display import md_escape
from app.components.form import Field
from app.components.latent_contexts import show_contexts
from app.components.page import analysis_page, chart, view_key


def chosen_latent(result, key: str) -> int:
    """The link's `view.latent` (a link to another latent of this index, followed from a
    search or the prompt view, moves the picker to it), else the picker's own choice, else
    the latent firing most often."""
    n = int(result.meta.get("num_latents") or len(result.tables["latents"]))
    asked = links.view_int(links.read_query_params(st.query_params), "latent", list(range(n)))
    if asked is not None:
        st.session_state[key] = asked  # before the widget is drawn: the link is the state
    return int(st.session_state.get(key, default_latent(result.tables["latents"])))


def draw(result):
    return {"dashboard": lambda: dashboard(result), "search": lambda: search(result)}


def dashboard(result):
    n = int(result.meta.get("num_latents") or len(result.tables["latents"]))
    key = view_key(result, "latent")
    start = chosen_latent(result, key)
    if key not in st.session_state:
        st.session_state[key] = start
    latent = int(st.number_input(f"Latent (0–{n - 1})", min_value=0, max_value=n - 1, step=1,
                                 key=key, on_change=_to_link, args=(key,)))
    figures = result.figures(latent=latent)
    st.subheader(f"Latent {latent} of {md_escape(str(result.meta.get('site', '')))}")
    # as Neuronpedia's dashboards: what it does (histogram, logit effects) beside where it fires
    left, right = st.columns([2, 3])
    with left:
        for name in ("histogram", "logit_effects", "heads"):
            if name in figures:
                chart(figures[name], view_key(result, name))
    with right:
        st.caption(md_escape(f"Top-activating contexts on {int(result.meta.get('tokens', 0)):,} held-out tokens "
                             "(shade: the latent's activation on each token; boxed: the token it fires on)."))
        show_contexts(result.tables["contexts"], result.tables["context_tokens"], latent)
    chart(figures["densities"], view_key(result, "densities"))


def _to_link(key: str) -> None:
    st.query_params[links.VIEW_PREFIX + "latent"] = str(int(st.session_state[key]))


def search(result):
    """SQL over the stored index: latents that promote a token, latents firing on a token."""
    st.subheader("Search this dictionary's latents")
    spec = result.spec
    left, right = st.columns(2)
    promote = left.text_input("Latents that promote the token", placeholder="e.g. ␣Paris (leading space kept)",
                              key=view_key(result, "promote"))
    firing = right.text_input("Latents whose top contexts are on the token", placeholder="e.g. ␣Mary",
                              key=view_key(result, "firing"))
    store = default_store()
    key = result_key(spec)
    for column, token, search_fn, what in ((left, promote, latent_search.promoting, "score"),
                                           (right, firing, latent_search.firing_on, "contexts")):
        if not token:
            continue
        try:
            found = search_fn(store, key, token)
        except Exception as err:  # noqa: BLE001 - an unstored index (a busy cache): said, not raised
            column.warning(md_escape(f"The search needs the stored index ({type(err).__name__})."))
            continue
        if found.empty:
            column.caption(md_escape(f"No latent for {token!r} in this index."))
        for row in found.itertuples(index=False):
            column.page_link(links.page_file("latent_index"), label=md_escape(
                f"latent {row.latent} ({what} {getattr(row, what):.3g})"),
                query_params=latent_query(spec.model, spec.dictionary, int(row.latent)))


analysis_page(
    "latent_index",
    intro="A **latent's dashboard** (Bricken et al. 2023; Neuronpedia): the held-out corpus text it "
          "fires on most (shaded by its activation), its activation histogram and density, the tokens "
          "its decoder direction promotes and suppresses through the unembedding, and for an "
          "attention-output dictionary the share of its decoder norm in each head. The index behind "
          "it is built once per dictionary over the corpus and cached; picking a latent is a view of "
          "it (the link keeps it).",
    fields=[
        Field("dictionary", "Dictionary", placeholder="e.g. blocks.1.hook_resid_post, blocks.1.attn.hook_z, "
                                                      "blocks.1.mlp, or a directory"),
        Field("top_k", "Top contexts per latent", help="How many top-activating tokens the index keeps "
                                                       "for each latent (default 12)."),
        Field("corpus_tokens", "Corpus tokens read"),
        Field("seed", "Corpus seed"),
    ],
    draw=draw,
)
