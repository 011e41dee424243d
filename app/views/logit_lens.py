"""Logit lens page: what each layer would predict, read through the unembedding."""
from app.components.form import Field
from app.components.page import analysis_page, view_key
from app.components.window import position_picker


def draw(result):
    positions = position_picker(view_key(result, "positions"), int(result.meta["n_tokens"]))
    return result.figures(positions=positions)


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
                   "Each must be one token."),
        Field("top_k", "Top-k tokens per cell"),
        Field("final_norm", "Apply the final norm before unembedding",
              help="On (default): each layer is read as the model reads its last one, and the "
                   "final row equals the model's own prediction. Off: the raw residual stream "
                   "through the unembedding alone; no row is then the model's output."),
    ],
    draw=draw,
)
