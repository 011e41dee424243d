"""Direct logit attribution page: each component's direct share of the logit difference."""
from app.components.form import Field
from app.components.page import analysis_page


def draw(result):
    return result.figures()


analysis_page(
    "dla",
    intro="**Direct logit attribution** (Elhage et al. 2021; Wang et al. 2022) splits the "
          "logit difference answer − wrong at the prompt's last position into one term per "
          "component: the embeddings, each layer's attention (and each of its heads) and MLP, "
          "read through the final norm (its scale fixed at the run's value) and the "
          "unembedding. The terms sum exactly to the model's logit difference; they measure "
          "only the direct path, not what a component does through later layers.",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("answer", "Answer", placeholder=" Paris",
              help="The next token to explain, leading space included; one token."),
        Field("wrong", "Wrong answer", placeholder=" London",
              help="Optional: a contrasting token; without it the answer's own logit is split."),
    ],
    draw=draw,
)
