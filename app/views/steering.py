"""Steering page: add a steering vector or knock out components, and read what the model
then says beside what it says intact."""
import json

import streamlit as st

from analyses.figures.steering import cell_label, distinct_cells, highlighted_html
from app.components.display import display_token, md_escape
from app.components.form import Field
from app.components.page import analysis_page, view_key

# a vector comes from contrast texts, or from a dictionary's latent (method=feature); a clamp
# also reads `positions`: their fields are drawn once one of these is given
VECTOR_SOURCES = ("positive", "dictionary")


def draw(result):
    figures = result.figures(layer=chosen_layer(result))
    # the continuations side by side, then the figures, then their numbers: a link lands on them
    return {"side_by_side": lambda: side_by_side(result), **figures, "numbers": lambda: numbers(result)}


def chosen_layer(result) -> int | None:
    """The layer whose vector the top-token chart reads (a view, not part of the link)."""
    vector = result.tables.get("vector")
    layers = sorted(int(v) for v in vector["layer"].unique()) if vector is not None else []
    if len(layers) < 2:
        return layers[0] if layers else None
    return st.selectbox("Steering vector shown below (a view of this result)", layers,
                        key=view_key(result, "vector_layer"), format_func=lambda v: f"layer {v}")


def side_by_side(result):
    """The intact model's continuation and a chosen cell's, differing tokens marked."""
    generations = result.tables["generations"]
    first = generations[generations["sample"] == 0]
    cells = distinct_cells(first).reset_index(drop=True)
    labels = [cell_label(r.layer, r.coeff, r.ablated, getattr(r, "p_target", None)) for r in cells.itertuples()]
    intact = cells[(cells["coeff"] == 0) & ~cells["ablated"]]
    others = [i for i, label in enumerate(labels) if label != "intact"]
    if intact.empty or not others:
        st.markdown(f"**Continuation:** {md_escape(cells['text'].iloc[0])}")
        return
    pick = st.selectbox("Compare the intact model with (a view of this result)", others,
                        index=len(others) - 1 if len(others) < 3 else len(others) // 2,
                        format_func=lambda i: labels[i], key=view_key(result, "compare"))
    reference = json.loads(intact["tokens"].iloc[0])
    chosen = json.loads(cells.loc[pick, "tokens"])
    # Streamlit reads this HTML as Markdown first: prompt and tokens go through md_escape, which
    # leaves them inert as both (a generated `![x](https://…)` must not load an image)
    prompt = md_escape(result.spec.prompt[-300:])
    left, right = st.columns(2, border=True)
    left.markdown("**intact model**")
    left.markdown(f"<span style='color:#888'>…{prompt}</span>{highlighted_html(reference, reference, token_markdown)}",
                  unsafe_allow_html=True)
    right.markdown(f"**{md_escape(labels[pick])}** (marked: tokens that differ at their place)")
    right.markdown(f"<span style='color:#888'>…{prompt}</span>{highlighted_html(chosen, reference, token_markdown)}",
                   unsafe_allow_html=True)


def token_markdown(token: str) -> str:
    """One generated token between HTML tags that Markdown reads: a newline shown as `\\n`
    (as in the strip above), then every Markdown and HTML character escaped."""
    return md_escape(display_token(token))


def numbers(result):
    """The effect, its top token and the KL of each cell, as a short table."""
    effects = result.tables["effects"]
    metric = result.meta.get("metric")
    shown = distinct_cells(effects)
    shown = shown.assign(intervention=[cell_label(r.layer, r.coeff, r.ablated, getattr(r, "p_target", None))
                                       for r in shown.itertuples()])
    columns = ["intervention", "top_token", "kl"] + (["metric", "top1"] if metric else [])
    st.dataframe(shown[columns].rename(columns={"metric": metric or "metric", "top_token": "top next token",
                                                "kl": "KL on a neutral text (nats)"}),
                 hide_index=True, key=view_key(result, "effects"))
    gcav = result.tables.get("cav")
    if gcav is not None and len(gcav) and "example" not in gcav.columns:
        st.markdown("**GCAV's strength on this prompt** (its last position; each position gets its own)")
        st.dataframe(gcav.rename(columns={"p_before": "probe p before", "p_after": "probe p after",
                                          "strength": "strength (along the unit CAV)",
                                          "coeff": "as a coefficient of the vector",
                                          "probe_accuracy": "probe accuracy on its texts"}),
                     hide_index=True, key=view_key(result, "gcav"))
    if result.spec.positive or result.meta.get("feature"):
        st.caption("BOS (position 0, the attention sink) is never intervened on: the vector and the "
                   "ablation start after it, and *Added at: all* means every position after BOS.")
    else:  # a knock-out-only run: no vector, so no coefficients or positions to explain
        st.caption("BOS (position 0, the attention sink) is never knocked out: the ablation starts after it.")
    if result.meta.get("feature"):
        st.caption(md_escape(f"Vector: {result.meta['feature']} (coefficients in the latent's activation units)."))
    if result.meta.get("clamped"):
        at = result.spec.with_defaults().positions
        st.caption(md_escape(f"Knocked-out cells: {result.meta['clamped']} (at: {at}, the dictionary's "
                             "error term kept)."))
    if result.meta.get("ablated"):
        st.caption(md_escape(f"Ablated: {result.meta['ablated']} ({result.spec.with_defaults().ablation} "
                             "ablation, every position after BOS)."))


analysis_page(
    "steering",
    intro="**Steering** adds a vector to the residual stream while the model reads and generates: "
          "contrast texts' difference (ActAdd, Turner et al. 2023; CAA, Rimsky et al. 2024), "
          "mean-centring (Jorgensen et al. 2023), a probe's direction (*cav*, GCAV, Zhang et al. "
          "2025) or a sparse dictionary latent's (*feature*); a latent can also be clamped. "
          "**Ablation** knocks out heads (`L1H7`), attention outputs (`L0.attn`) or MLPs "
          "(`L0.mlp`). Each cell's continuation is shown beside the intact model's; the KL on "
          "a neutral text says what else the intervention breaks.",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("positive", "Steer toward (one text per line)", multiline=True,
              placeholder="e.g. The capital of Germany is"),
        Field("negative", "Steer away from (one per line, paired with the lines above)", multiline=True,
              placeholder="e.g. The capital of France is"),
        Field("method", "Vector", needs=VECTOR_SOURCES,
              help="actadd, mean_diff, mean_centred: built from the texts above. feature: a dictionary "
                   "latent's decoder direction (give the dictionary and latent below; no texts)."),
        Field("layer", "Layers", placeholder="e.g. 2, or 1,2 to sweep", needs="positive"),
        Field("coeff", "Coefficients", placeholder="e.g. 0,0.5,1,2 (0 always runs)", needs=VECTOR_SOURCES,
              help="The vector's multiples; with method=feature, in the latent's activation units."),
        Field("p_target", "GCAV target probabilities (vector: cav)", placeholder="e.g. 0.9 to add the "
              "concept, 0.01 to remove it", needs="positive"),
        Field("positions", "Added at", needs=VECTOR_SOURCES),
        Field("dictionary", "Dictionary", placeholder="e.g. blocks.1.hook_resid_post",
              help="A sparse dictionary of this model (a site under data/dictionaries, or a directory): "
                   "its latent is added (method=feature) or clamped."),
        Field("latent", "Latent", help="The dictionary's latent to add (method=feature) or clamp."),
        Field("clamp", "Clamp the latent to", placeholder="e.g. 0 to zero it",
              help="Every cell but the intact one sets the latent to this value at the positions "
                   "chosen, the dictionary's error term kept: only that latent changes."),
        Field("ablate", "Knock out", placeholder="e.g. L1H7,L1H6,L0.mlp"),
        Field("ablation", "Ablation"),
        Field("answer", "Answer", placeholder="e.g. ␣Berlin (one token)"),
        Field("wrong", "Wrong answer", placeholder="e.g. ␣Paris (one token)"),
        Field("max_new_tokens", "Tokens to generate"),
        Field("temperature", "Temperature (0: greedy)"),
        Field("seed", "Seed (sampling)"),
        Field("top_k", "Top tokens listed per vector"),
    ],
    draw=draw,
)
