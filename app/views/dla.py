"""Direct logit attribution page: each component's direct share of the logit difference."""
from app.components.form import Field
from app.components.head_links import head_links, top_heads
from app.components.page import analysis_page


def draw(result):
    heads = top_heads(result.tables["contributions"].query("component == 'head'"), "value")
    return {**result.figures(), "attention_links": lambda: head_links(
        result.spec.model, result.spec.prompt, heads, "with the largest direct contribution")}


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
        Field("answer", "Answer", placeholder="e.g. ␣Paris (one token, its leading space kept)",
              help="The next token to explain, leading space included; one token."),
        Field("wrong", "Wrong answer", placeholder="e.g. ␣London (one token, its leading space kept)",
              help="Optional: a contrasting token; without it the answer's own logit is split."),
    ],
    draw=draw,
)
