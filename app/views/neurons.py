"""Neurons page: the neuron atlas. Which neurons promote a token, what one neuron writes,
and which neurons fire on a prompt."""
import streamlit as st

from analyses.figures.layout import neuron_label
from analyses.figures.neurons import neuron_activations_chart, neuron_tokens_chart
from app.components.form import Field
from app.components.page import analysis_page, chart, view_key


def draw(result):
    return {**result.figures(), "one_neuron": lambda: one_neuron(result)}


def first_neuron(result) -> tuple[int, int]:
    """The neuron the view opens on: the link's, the top promoter, the most active one on
    the prompt, or neuron 0 of the first layer read."""
    spec, tables = result.spec, result.tables
    if spec.layer is not None and spec.neuron is not None:
        return spec.layer, spec.neuron
    for name in ("promoters", "activations"):
        if name in tables and len(tables[name]):
            row = tables[name].iloc[0]
            return int(row["layer"]), int(row["neuron"])
    return int(tables["atlas"]["layer"].min()), 0


def one_neuron(result):
    """Its top promoted and suppressed tokens (atlas rows) and, with a prompt, its
    activations there. The link's neuron when it names one; otherwise any neuron the
    atlas read, picked here without a new run."""
    st.subheader("One neuron")
    spec, atlas = result.spec, result.tables["atlas"]
    layer, neuron = first_neuron(result)
    if spec.neuron is None:
        layers = sorted(int(v) for v in atlas["layer"].unique())
        d_mlp = int(result.meta.get("d_mlp") or atlas["neuron"].max() + 1)
        left, right = st.columns(2)
        layer = left.selectbox("Layer", layers, index=layers.index(layer) if layer in layers else 0,
                               key=view_key(result, "layer"))
        neuron = int(right.number_input("Neuron", min_value=0, max_value=d_mlp - 1, step=1,
                                        value=min(neuron, d_mlp - 1), key=view_key(result, "neuron")))
    chart(neuron_tokens_chart(atlas, layer, neuron), view_key(result, "tokens"))
    activations = result.tables.get("activations")
    if activations is None:
        st.caption("Give a prompt above to see this neuron's activations on it.")
        return
    st.caption("BOS (position 0, the attention sink) is never ranked: the most active neurons are chosen by "
               "their activations after it; BOS's own activation is shown.")
    mine = activations[(activations["layer"] == layer) & (activations["neuron"] == neuron)]
    if len(mine):
        chart(neuron_activations_chart(mine), view_key(result, "activations"))
    else:
        st.caption(f"Neuron {neuron_label(layer, neuron)} is not among the most active "
                   "on this prompt: set its layer and neuron above and press Run to read its "
                   "activations.")


analysis_page(
    "neurons",
    intro="The **neuron atlas** reads each MLP neuron's output weights through the unembedding "
          "(Geva et al. 2022; Gurnee et al. 2024): the tokens a neuron promotes and suppresses "
          "when it fires, by its direct path only. Name a token to find the neurons that most "
          "promote it; give a prompt to see which neurons fire on it; set a layer and neuron "
          "to read one neuron alone.",
    fields=[
        Field("token", "Which neurons promote…", placeholder="e.g. ␣Paris (one token, its leading space kept)",
              help="Target tokens, comma-separated; each keeps its leading space and must be "
                   "one token. Write a comma inside a token as `\\,` and a backslash as `\\\\`."),
        Field("prompt", "Prompt (activations)", multiline=True,
              help="Optional: the most active neurons of each layer on this text, or the "
                   "chosen neuron's activations."),
        Field("layer", "Layer", help="Optional: read only this layer."),
        Field("neuron", "Neuron", help="Optional, with a layer: read only this neuron."),
        Field("top_k", "Tokens / neurons listed"),
        Field("final_norm", "Read through the final norm's scale (and centring)"),
    ],
    draw=draw,
)
