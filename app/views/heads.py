"""Attention heads page: which heads are previous-token, duplicate-token, induction or
retrieval heads, and what ablating the top ones does."""
import streamlit as st

from analyses.figures.heads import head_profile_chart
from app.components.display import md_escape
from app.components.form import Field
from app.components.head_links import head_links, top_heads
from app.components.page import analysis_page, chart, view_key
from app.components.presets import load_suites


def draw(result):
    scores, figures = result.tables["scores"], result.figures()
    ablation = figures.pop("ablation", None)  # shown after the one-head view
    shown = {"notes": lambda: notes(result), **figures}
    shown["one_head"] = lambda: one_head(result, scores)
    if ablation is not None:
        shown["ablation"] = ablation
    shown["attention_links"] = lambda: head_links(result.spec.model, pattern_prompt(result), top_heads(
        scores.assign(score=scores["score"].fillna(0)), "score", by_magnitude=False), "that score highest")
    return shown


def notes(result):
    """What the scores rest on, and any detector that could not score."""
    meta = result.meta
    for detector, reason in meta.get("not_scored", {}).items():
        st.warning(md_escape(f"{detector}: {reason}."), icon=":material/block:")
    if "needle_recall" in meta:
        n_prompts = meta.get("probe_tokens", {}).get("needle", ["?"])[0]
        st.caption(md_escape(f"Needle recall, nothing ablated: {meta['needle_recall']:.0%} of {n_prompts} "
                             "needle prompts have their whole code copied top-1."))
    if "ablation_k" in meta:
        st.caption(md_escape(f"Ablation: the top {meta['ablation_k']} heads of each detector, against "
                             f"{meta.get('random_sets', 1)} random sets of {meta['ablation_k']} other heads."))


def pattern_prompt(result) -> str | None:
    """A text to show the top heads' patterns on: the link's prompt (the previous-token
    detector reads it), else the first repeated-sequence example, where induction and
    duplicate-token heads show themselves."""
    if result.spec.prompt:
        return result.spec.prompt
    examples = load_suites().get("induction") or []
    return next((e["prompt"] for e in examples if isinstance(e.get("prompt"), str)), None)


def one_head(result, scores):
    """A head picked by (layer, head), the top-scoring one first. The heads analysis returns
    scores, not attention patterns, so the view is the head's score under each detector."""
    st.subheader("One head")
    layers = sorted(int(v) for v in scores["layer"].unique())
    heads = sorted(int(v) for v in scores["head"].unique())
    top = scores.loc[scores["score"].idxmax()]
    left, right = st.columns(2)
    layer = left.selectbox("Layer", layers, index=layers.index(int(top["layer"])),
                           key=view_key(result, "layer"))
    head = right.selectbox("Head", heads, index=heads.index(int(top["head"])),
                           key=view_key(result, "head"))
    chart(head_profile_chart(scores, layer, head), view_key(result, "profile"))
    st.caption("This analysis returns each head's scores, not its attention pattern: the "
               "bars compare the head across the detectors that ran.")


analysis_page(
    "heads",
    intro="**Head detectors** score every attention head for a known behaviour: "
          "*previous-token* and *duplicate-token* heads (TransformerLens's `detect_head` score: "
          "the share of the head's attention, BOS excluded, that falls where the behaviour says "
          "it should), *induction* heads (Olsson et al. 2022: the mean attention from each token "
          "of a repeated random sequence to the token after its first occurrence; "
          "TransformerLens's score, which also averages over the first copy and so tops out "
          "near 0.5, is in the `tl_score` column) and *retrieval* heads (Wu et al. 2024) that "
          "copy a needle planted far back in the context. Every score runs from 0 to 1, 1 being "
          "a perfect head; each rests on the number of events in its `events` column, and a "
          "detector with too few (a model that copies fewer than 20 needle tokens) shows no "
          "scores. With ablation, each detector's top heads are mean-ablated beside random sets "
          "of as many other heads.",
    fields=[
        Field("detector", "Detectors"),
        Field("prompt", "Prompt (previous-token detector only)", multiline=True,
              help="The previous-token detector reads this prompt instead of random tokens; "
                   "the other detectors build their own inputs."),
        Field("seed", "Seed for the generated inputs"),
        Field("ablate", "Mean-ablate the top heads and measure the drop"),
        Field("top_k", "Heads to ablate", help="How many top heads of each detector are "
              "ablated (and how many heads each random set has); empty: 4, or 2% of the heads "
              "in big models."),
    ],
    draw=draw,
)
