"""Attention page: every head's attention pattern on a prompt, one head large with its tokens."""
import streamlit as st

from analyses.figures.attention import head_pattern
from app import links
from app.components.form import Field
from app.components.page import analysis_page, chart, view_key


def draw(result):
    figures = result.figures()
    return {"grid": figures["grid"], "one_head": lambda: one_head(result)}


def one_head(result):
    """One head large, picked here: a view of the result, kept in the link's `view.layer` and
    `view.head` keys (the share link reopens it); else the spec's own layer and head, else the
    first the result read."""
    st.subheader("One head")
    patterns, spec = result.tables["patterns"], result.spec
    raw = links.read_query_params(st.query_params)
    left, right = st.columns(2)
    picked = {}
    for column, name, asked in ((left, "layer", spec.layer), (right, "head", spec.head)):
        values = sorted(int(v) for v in patterns[name].unique())
        start = links.view_int(raw, name, values)
        start = start if start is not None else asked if asked in values else values[0]
        key = view_key(result, name)
        picked[name] = column.selectbox(name.capitalize(), values, index=values.index(start), key=key,
                                        on_change=_to_link, args=(name, key))
    layer, head = picked["layer"], picked["head"]
    chart(head_pattern(patterns, layer, head, result.meta.get("tokens")), view_key(result, "pattern"))


def _to_link(name: str, key: str) -> None:
    """Write a picker's choice into the link's view state."""
    st.query_params[links.VIEW_PREFIX + name] = str(st.session_state[key])


analysis_page(
    "attention",
    intro="**Attention patterns** show, for every head, how much the query at each position "
          "attends to each earlier key position: the model's own softmax probabilities (Elhage et "
          "al. 2021). Each row of a pattern sums to 1. Stripes below the diagonal are "
          "previous-token heads; a diagonal offset by a repeated sequence's length is an induction "
          "head; a column at position 0 is a head resting on BOS. Hover a cell for query token → "
          "key token and the weight. Over a prompt set (`ioi`): each head's mean attention from the "
          "last position to every position (prompts of one length) and to the answer's and the "
          "wrong answer's tokens, with 95% intervals.",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("layer", "Only this layer", help="Leave empty for every layer (long prompts on big "
                                               "models need one)."),
        Field("head", "Only this head", help="Leave empty for every head of the layers read."),
        Field("answer", "Answer (optional)", placeholder="e.g. ␣Mary (one token)",
              help="How much each head's last position attends to the prompt's tokens of the answer."),
        Field("wrong", "Wrong answer (optional)", placeholder="e.g. ␣John (one token)",
              help="… and to those of the wrong answer."),
    ],
    draw=draw,
)
