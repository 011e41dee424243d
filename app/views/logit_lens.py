"""Logit lens page: what each layer would predict, read through the unembedding."""
import streamlit as st

from app.components.display import md_escape
from app.components.form import Field
from app.components.page import analysis_page, view_key
from app.components.window import position_picker


def draw(result):
    # a spec that read out a window of its own shows all of it; otherwise the view's window
    positions = None if result.spec.positions else position_picker(view_key(result, "positions"),
                                                                   int(result.meta["n_tokens"]))
    figures = result.figures(positions=positions)
    if not result.meta.get("ablated"):
        return figures
    how = result.spec.ablation or "mean"
    return {"ablated": lambda: st.info(md_escape(
        f"Read with {result.meta['ablated']} knocked out ({how} ablation, every position after BOS): "
        "what each layer predicts once they are gone."), icon=":material/block:"), **figures}


analysis_page(
    "logit_lens",
    intro="The **logit lens** (nostalgebraist, 2020) reads the residual stream after each "
          "layer through the model's final norm and unembedding, as if the model stopped "
          "there. Each cell shows the token that layer would predict next and its probability; "
          "hover a cell for its top-k list. Target tokens are tracked by rank at the last "
          "position.",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("token", "Target tokens", placeholder="e.g. ␣Paris, ␣London (one token each, leading spaces kept)",
              help="Comma-separated; each keeps its leading space (` Paris` is not `Paris`). "
                   "Each must be one token. Write a comma inside a token as `\\,` and a backslash "
                   "as `\\\\`."),
        Field("top_k", "Top-k tokens per cell"),
        Field("positions", "Positions read out", placeholder="e.g. 40-63 or 3, 40-63 (empty: every position)",
              help="Only these input positions are read through the unembedding (0-based, BOS "
                   "is 0): on a long prompt the readout, not the forward pass, is most of the "
                   "time, so a window is much faster. Empty: every position."),
        Field("final_norm", "Apply the final norm before unembedding",
              help="On (default): each layer is read as the model reads its last one, and the "
                   "final row equals the model's own prediction. Off: the raw residual stream "
                   "through the unembedding alone; no row is then the model's output."),
        Field("ablate", "Knock out", placeholder="e.g. L1H7,L1H6,L0.mlp",
              help="Components read as knocked out: heads `L1H7`, a layer's MLP `L0.mlp`, its "
                   "attention output `L0.attn`, comma-separated."),
        Field("ablation", "Ablation", placeholder="mean (the default), or zero",
              help="mean (default): each replaced by its mean over a neutral "
                                           "text; zero: by zero."),
    ],
    draw=draw,
)
