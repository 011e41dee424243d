"""Home: what the workbench is, the model picker, and one-click examples of every page."""
import streamlit as st

from analyses import AnalysisSpec
from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import UserError
from app import links
from app.components.display import md_escape
from app.components.model_picker import chosen_model, model_picker
from app.components.presets import presets_for
from app.routes import PAGES

EXAMPLES_PER_PAGE = 3

st.title("Interpretability workbench")
st.markdown(
    "A workbench for looking inside small language models. Pick a model — the embedded "
    "`default`, a Hugging Face model, or a local checkpoint — and an analysis: each page "
    "takes a prompt, runs the analysis (on a GPU when there is one), and draws what it found "
    "with interactive plotly figures. Every view is a link: the URL holds the whole analysis "
    "spec, so copying it shares exactly what you see, and the same spec runs headless from "
    "Python or the command line (`python -m analyses run --spec '…'`). Results come with "
    "their tables as CSV and Parquet."
)

st.subheader("Model")
model_picker(where=st.container(), full_errors=True)

st.subheader("Examples")
model = chosen_model()
for analysis in CATALOGUE.kinds():
    kind = analysis.name
    if kind not in PAGES:
        continue
    with st.container(border=True):
        st.page_link(links.page_file(kind), label=f"**{links.page_title(kind)}**",
                     icon=":material/arrow_forward:")
        st.caption(md_escape(analysis.summary))
        examples = []
        for preset in presets_for(kind)[:EXAMPLES_PER_PAGE]:
            try:
                examples.append((preset.label, AnalysisSpec(kind=kind, model=model, **preset.fields)))
            except UserError:
                continue  # a bad entry in data/prompts.json: the page itself says why
        if not examples and not analysis.required:  # no suite fits, but the defaults run
            examples.append(("with its defaults", AnalysisSpec(kind=kind, model=model)))
        for label, spec in examples:
            st.page_link(links.page_file(kind), label=md_escape(label),
                         query_params=links.params(spec), icon=":material/play_arrow:")
