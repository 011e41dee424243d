"""Activation patching page: which activations carry the answer from the clean prompt."""
import streamlit as st

from analyses.figures.layout import differing_positions
from app.components.display import md_escape
from app.components.form import Field
from app.components.head_links import head_links, top_heads
from app.components.page import analysis_page, view_key
from app.components.window import position_picker


def draw(result):
    meta = result.meta
    baselines = (meta["clean_baseline"], meta["corrupted_baseline"])

    def summary():
        clean, corrupted = st.columns(2)
        clean.metric("Clean logit difference", f"{baselines[0]:.3f}", border=True,
                     help="logit(answer) − logit(wrong) at the last position of the clean prompt: "
                          "a patch that restores it scores 1")
        corrupted.metric("Corrupted logit difference", f"{baselines[1]:.3f}", border=True,
                         help="the same on the corrupted prompt: a patch that changes nothing "
                              "scores 0")
        if meta.get("not_on_this_model"):
            st.caption(md_escape("Not on this model (no such hook): "
                                 + ", ".join(meta["not_on_this_model"])))

    per_head = result.tables["effects"]
    heads = top_heads(per_head[per_head["head"] >= 0], "value")
    positions = position_picker(view_key(result, "positions"), int(meta["n_tokens"]),
                                differing_positions(meta.get("clean_tokens"), meta.get("corrupted_tokens")))
    return {"baselines": summary, **result.figures(positions=positions), "attention_links": lambda: head_links(
        result.spec.model, result.spec.clean, heads, "whose patch restores the most")}


analysis_page(
    "activation_patching",
    intro="**Activation patching** (Meng et al. 2022; Wang et al. 2022) runs the model on the "
          "corrupted prompt, overwrites one activation with its value from the clean prompt, "
          "and measures how much of the clean logit difference (answer − wrong) comes back: "
          "1 is the whole clean answer, 0 nothing. Cells that score high carry the information "
          "the two prompts differ in. Positions are labelled by their tokens, `clean→corrupted` "
          "where the prompts differ.",
    fields=[
        Field("clean", "Clean prompt", multiline=True),
        Field("corrupted", "Corrupted prompt", multiline=True,
              help="The same number of tokens as the clean prompt: patching pairs them "
                   "position by position."),
        Field("answer", "Answer", placeholder="e.g. ␣Mary (one token, its leading space kept)",
              help="The clean prompt's next token, leading space included; one token."),
        Field("wrong", "Wrong answer", placeholder="e.g. ␣John (one token, its leading space kept)",
              help="The corrupted prompt's next token, leading space included; one token."),
        Field("granularity", "What to patch",
              help="resid_pre/mid/post, attn_out, mlp_out: layer × position; head_*: each "
                   "head over all positions; head_*_by_pos: each head at each position; "
                   "all: every layer × position kind; direct_path: each sender head → "
                   "receiver head q/k/v path (path patching, everything else frozen)."),
        Field("layer", "Only this layer", help="Leave empty to patch every layer (for "
                                               "direct_path: the receivers' layer)."),
    ],
    draw=draw,
)
