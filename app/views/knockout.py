"""Attention knockout page: cut the last position's attention to the subject, the other
tokens or itself in a window of layers, and read where the answer's information flows."""
import streamlit as st

from app.components.display import md_escape
from app.components.form import Field
from app.components.page import analysis_page, view_key

MAX_LISTED = 12  # tokens named per source set; a long prompt's `other` set is most of it


def draw(result):
    return {**result.figures(), "sources": lambda: sources(result)}


def sources(result):
    """Which tokens each source set cut, and the sweep's numbers."""
    meta, tokens = result.meta, result.meta.get("tokens") or []
    named = {s: listed(tokens, meta["positions"][s]) for s in meta.get("sources", [])}
    st.markdown("**The keys each source set cuts** (BOS is never cut: it is the attention sink)")
    st.markdown("\n".join(f"- `{md_escape(s)}`: {md_escape(text)}" for s, text in named.items()))
    table(result)


def listed(tokens: list[str], positions: list[int], most: int = MAX_LISTED) -> str:
    """The tokens at `positions`, the first `most` of them and how many in all."""
    if not positions:
        return "none (nothing is cut)"
    text = ", ".join(repr(tokens[p]) for p in positions[:most])
    return text + (f", … ({len(positions)} tokens in all)" if len(positions) > most else "")


def table(result):
    frame = result.tables["knockout"]
    st.dataframe(frame, hide_index=True, key=view_key(result, "knockout_table"))
    st.caption(md_escape(f"answer {result.meta.get('answer_token', '')!r}, intact probability "
                         f"{result.meta.get('intact_prob', float('nan')):.4f}; change = knocked-out − intact; "
                         "relative = change / intact (Geva et al.'s % change)."))


def set_table(result):
    summary = result.tables.get("knockout_summary")
    if summary is not None:
        st.markdown("**Means over the set** (95% intervals, Student's t on each example's own value)")
        st.dataframe(summary, hide_index=True, key=view_key(result, "knockout_summary"))


analysis_page(
    "knockout",
    intro="**Attention knockout** (Geva et al. 2023, \"Dissecting Recall of Factual Associations\") "
          "blocks the last position from attending to a set of earlier tokens — the subject's, the "
          "other tokens', or its own — in a window of consecutive layers, renormalising what it still "
          "attends to, and measures the change in the answer's probability. A large drop when the "
          "subject is cut in some layers says the subject's information reaches the last position "
          "there. (Not the ablation sweep's knock-outs, which remove whole heads and MLPs.)",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("answer", "Answer", placeholder="e.g. ␣Paris (one token; empty: the model's top token)",
              help="The token whose probability is read; empty: the intact model's top next token."),
        Field("subject", "Subject", placeholder="e.g. France (as written in the prompt)",
              help="The subject's text as it appears in the prompt: its tokens are the `subject` "
                   "source set. Empty: no subject set."),
        Field("source", "Edges to cut"),
        Field("window", "Window (layers)", help="How many consecutive layers each knockout spans; "
              "empty: Geva et al.'s 9 of 48 layers scaled to this model (at least 1)."),
    ],
    draw=draw,
    set_draw=lambda result: {"summary": lambda: set_table(result)},
)
