"""Direct logit attribution page: each component's direct share of the logit difference,
and each MLP split by neuron with a link from every listed neuron to its atlas entry."""
import streamlit as st

from analyses import AnalysisSpec
from analyses.figures.layout import neuron_label
from app import links
from app.components.display import md_escape
from app.components.form import Field
from app.components.head_links import head_links, top_heads
from app.components.page import analysis_page, view_key
from app.components.share_link import current_base


def draw(result):
    heads = top_heads(result.tables["contributions"].query("component == 'head'"), "value")
    shown = {**result.figures(), "attention_links": lambda: head_links(
        result.spec.model, result.spec.prompt, heads, "with the largest direct contribution")}
    if "neurons" in result.tables:
        shown["neuron_table"] = lambda: neuron_table(result)
    return shown


def atlas_spec(dla_spec: AnalysisSpec, layer: int, neuron: int) -> AnalysisSpec:
    """The neuron atlas entry of one neuron, with its activations on the same prompt."""
    return AnalysisSpec(kind="neurons", model=dla_spec.model, prompt=dla_spec.prompt, layer=layer, neuron=neuron)


def neuron_table(result):
    """Every layer's listed neurons, its rest and bias, each neuron linked to its atlas entry."""
    # the last layer first, as the chart above shows it
    frame = result.tables["neurons"].sort_values("layer", ascending=False, kind="stable")
    base = current_base()
    frame["name"] = [neuron_label(layer, n) if part == "neuron" else part
                     for layer, n, part in frame[["layer", "neuron", "part"]].itertuples(index=False)]
    frame["atlas"] = [links.share_url(atlas_spec(result.spec, int(layer), int(n)), base) if part == "neuron" else None
                      for layer, n, part in frame[["layer", "neuron", "part"]].itertuples(index=False)]
    st.markdown("**Each MLP split by neuron** — activation × the neuron's output direction, read through the "
                "final norm (its scale frozen) into the logit difference; per layer the neurons that raise "
                "it most and lower it most, then every other neuron summed and the output bias: they add up "
                "to the layer's MLP bar above")
    st.dataframe(frame[["layer", "name", "rank", "activation", "value", "atlas"]], hide_index=True,
                 key=view_key(result, "neurons"),
                 column_config={"atlas": st.column_config.LinkColumn(display_text="open its atlas entry")})
    st.caption(md_escape(f"{result.spec.with_defaults().top_k} neurons each way per layer, of "
                         f"{result.meta.get('d_mlp', '?')}; negative values in the last layer are where a "
                         "late suppression of the answer would show."))


analysis_page(
    "dla",
    intro="**Direct logit attribution** (Elhage et al. 2021; Wang et al. 2022) splits the "
          "logit difference answer − wrong at the prompt's last position into one term per "
          "component: the embeddings, each layer's attention (and each of its heads) and MLP "
          "(and each of its neurons), read through the final norm (its scale fixed at the run's "
          "value) and the unembedding. The terms sum exactly to the model's logit difference; "
          "they measure only the direct path, not what a component does through later layers.",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("answer", "Answer", placeholder="e.g. ␣Paris (one token, its leading space kept)",
              help="The next token to explain, leading space included; one token."),
        Field("wrong", "Wrong answer", placeholder="e.g. ␣London (one token, its leading space kept)",
              help="Optional: a contrasting token; without it the answer's own logit is split."),
        Field("top_k", "Neurons listed each way per MLP"),
    ],
    draw=draw,
)
