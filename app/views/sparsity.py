"""Activation sparsity page: PPL-p% sparsity by layer, the sparsity–perplexity curve, how
often each neuron fires at the thresholds (with links to the neuron atlas), and which tokens
light up more of each MLP."""
import streamlit as st

from analyses import AnalysisSpec
from analyses.core.errors import UserError
from analyses.figures.layout import neuron_label
from app import links
from app.components.display import md_escape
from app.components.form import Field
from app.components.page import analysis_page

MAX_LINKS = 8


def draw(result):
    figures = result.figures()
    return {"summary": lambda: summary(result), "layers": figures["layers"], "curve": figures["curve"],
            "frequency": figures["frequency"], "neuron_links": lambda: neuron_links(result),
            "tokens": figures["tokens"]}


def summary(result):
    """One line per p: the CETT found, the perplexity it costs, the sparsity there."""
    meta = result.meta
    lines = [f"- **PPL-{r.p:g}%**: sparsity **{100 * r.sparsity:.1f}%** (activation ratio "
             f"{100 * r.activation_ratio:.1f}%) at CETT {r.cett:.4f}, perplexity {r.ppl_increase:+.2f}% "
             f"({r.steps} search steps)" for r in result.tables["summary"].itertuples()]
    st.markdown("\n".join(lines))
    curve = result.tables["curve"]
    lowest = curve.loc[curve.ppl_increase.idxmin()]
    if lowest.ppl_increase < 0:  # the search assumes perplexity rises with CETT; say where it does not
        st.info(md_escape(f"On this text zeroing neurons also lowers perplexity (to {lowest.ppl_increase:+.1f}% "
                          f"at CETT {lowest.cett:.3g}, {100 * lowest.sparsity:.0f}% sparsity): the curve is not "
                          "monotone, and each p is read where the curve first rises through it past the "
                          "grid's lower points. A longer text (the corpus sample) averages this out."),
                icon=":material/info:")
    st.caption(md_escape(f"Measured on {meta.get('text', 'the text')}: {meta.get('n_tokens')} tokens; "
                         f"{meta.get('forwards')} forwards in {meta.get('seconds', 0):.1f} s (one dense "
                         f"forward: {meta.get('dense_seconds', 0):.2f} s)."))


def neuron_links(result):
    """Links from the most and least often firing neurons (at the middle p) to their atlas entry."""
    neurons = result.tables["neurons"]
    ps = sorted(neurons.p.unique())
    p = ps[len(ps) // 2]
    rows = neurons[neurons.p == p]
    for what, picked in (("fire most often", rows.nlargest(MAX_LINKS, "frequency")),
                         ("fire least often", rows.nsmallest(MAX_LINKS, "frequency"))):
        st.markdown(md_escape(f"Neuron atlas of the neurons that {what} at the PPL-{p:g}% thresholds"))
        with st.container(horizontal=True):
            for r in picked.itertuples():
                try:
                    spec = AnalysisSpec(kind="neurons", model=result.spec.model, layer=int(r.layer),
                                        neuron=int(r.neuron))
                except UserError:
                    return
                st.page_link(links.page_file("neurons"),
                             label=md_escape(f"{neuron_label(r.layer, r.neuron)} ({100 * r.frequency:.0f}%)"),
                             query_params=links.params(spec), icon=":material/neurology:")


analysis_page(
    "sparsity",
    intro="**Activation sparsity** (Luo et al. 2025, *Sparsing Law*): how many of each MLP's "
          "neurons could be skipped on a token. A neuron is *negligible* when its contribution "
          "|activation| × ‖its output weights‖ is below its layer's threshold; each layer's "
          "threshold is where zeroing the neurons below it changes the layer's output by a shared "
          "relative error (CETT), and a binary search on that CETT finds where zeroing below every "
          "layer's threshold at once raises perplexity by p%. The share of neurons zeroed there is "
          "the **PPL-p% sparsity**. Without a prompt or prompt set the text is a sample of the "
          "embedded model's corpus (stories, IOI sentences, facts).",
    fields=[
        Field("p", "Perplexity increases (%)", placeholder="1,5,10"),
        Field("prompt", "Text (optional)", multiline=True,
              placeholder="empty: a sample of the shipped corpus (16 documents of 128 tokens)",
              help="Text to measure on instead of the corpus sample (one document)."),
        Field("seed", "Corpus sample seed", help="Which corpus sample (without text or a prompt set)."),
    ],
    draw=draw,
)
