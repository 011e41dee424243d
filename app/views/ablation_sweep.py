"""Ablation sweep page: knock out every head and every MLP in turn, on a prompt or over a
prompt set, and read the effect of each as one grid; each component's own knock-out (the
steering page) is one link away."""
import streamlit as st

from analyses.core.knockout import knockout_spec
from analyses.figures.ablation_sweep import sweep_cells
from app import links
from app.components.display import md_escape
from app.components.form import Field
from app.components.page import analysis_page, view_key
from app.components.share_link import current_base


def draw(result):
    return {**result.figures(), "knockouts": lambda: knockouts(result)}


def knockouts(result):
    """Every component's numbers and the link to its own knock-out, largest change first."""
    cells = sweep_cells(result)
    swept = cells[cells["component"] != "intact"].copy()
    swept = swept.reindex(swept["delta"].abs().sort_values(ascending=False).index)
    base = current_base()
    swept["knock-out"] = [links.share_url(knockout_spec(result.spec, c), base) for c in swept["component"]]
    columns = {"component": "component", "delta": "change", "top1": "top-1", "knock-out": "knock-out"}
    if result.spec.dataset:
        swept["interval"] = [f"{low:.3f} to {high:.3f}" for low, high in zip(swept["delta_low"], swept["delta_high"])]
        columns = {"component": "component", "delta": "mean change", "interval": "95% interval (paired t)",
                   "top1": "top-1 share", "knock-out": "knock-out"}
    st.markdown("**Each component's knock-out** — the steering page with that component ablated, "
                "the intact model beside it")
    st.dataframe(swept[list(columns)].rename(columns=columns), hide_index=True, key=view_key(result, "knockouts"),
                 column_config={"knock-out": st.column_config.LinkColumn(display_text="open its knock-out")})
    st.caption(md_escape(f"{result.spec.with_defaults().ablation} ablation of each component's output at "
                         "every position after BOS (BOS, the attention sink, is never ablated); "
                         "the change is from the intact model on the same prompt."))


analysis_page(
    "ablation_sweep",
    intro="An **ablation sweep** knocks out each attention head and each MLP in turn — its output "
          "replaced by zero or by its mean over a neutral text — and measures the change in the "
          "logit difference (answer − wrong) and whether the answer stays the top token: which "
          "components the behaviour needs (Wang et al. 2022). On a prompt set each cell is a mean "
          "with its 95% interval: Student's t on each example's change from its own intact run, "
          "Wilson's for top-1.",
    fields=[
        Field("prompt", "Prompt", multiline=True),
        Field("answer", "Answer", placeholder="e.g. ␣Mary (one token)"),
        Field("wrong", "Wrong answer", placeholder="e.g. ␣John (one token; empty: log p(answer))"),
        Field("ablation", "Ablation"),
    ],
    draw=draw,
    set_draw=lambda result: {"knockouts": lambda: knockouts(result)},
)
