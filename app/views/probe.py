"""Probe page: how well each layer's activations tell texts with a concept from texts
without (a logistic probe per layer, held-out accuracy with its interval), and whether the
probe's direction agrees with the mean difference."""
import streamlit as st

from app.components.display import md_escape
from app.components.form import Field
from app.components.page import analysis_page, view_key


def draw(result):
    return {"numbers": lambda: numbers(result), **result.figures(), "table": lambda: layer_table(result)}


def numbers(result):
    meta, layers = result.meta, result.tables["layers"]
    best = layers.iloc[int(meta["best_layer"])]
    accuracy, agreement, size = st.columns(3)
    accuracy.metric(f"Best layer: L{int(best['layer'])}", f"{best['accuracy']:.1%}", border=True,
                    help=f"held-out accuracy, Wilson 95% interval {best['ci_low']:.1%} to {best['ci_high']:.1%} "
                         f"over {int(best['n_test'])} texts")
    agreement.metric("cos(probe, mean difference) there", f"{best['cosine_mean_diff']:.2f}", border=True,
                     help="1: the same direction; below 0.5 the two are said to disagree")
    size.metric("Texts", f"{meta['n_examples']}", border=True,
                help=f"{meta['n_positive']} with the concept (label 1); "
                     f"{int(best['n_train'])} train the probe, {int(best['n_test'])} test it")
    disagree = layers[~layers["agrees"].astype(bool)]
    if len(disagree):
        st.warning(md_escape(
            "The probe and the mean difference disagree (cos < 0.5) at "
            + ", ".join(f"L{int(r.layer)} (cos {r.cosine_mean_diff:.2f}, probe {r.accuracy:.0%}, mean "
                        f"difference {r.mean_diff_accuracy:.0%})" for r in disagree.itertuples())
            + ": the probe discounts directions along which the texts vary within a class."),
            icon=":material/call_split:")


def layer_table(result):
    layers = result.tables["layers"]
    st.dataframe(layers.drop(columns=["site", "n_train"]), hide_index=True, key=view_key(result, "layers"),
                 column_config={"accuracy": st.column_config.NumberColumn("held-out accuracy", format="%.3f"),
                                "ci_low": st.column_config.NumberColumn("95% low", format="%.3f"),
                                "ci_high": st.column_config.NumberColumn("95% high", format="%.3f"),
                                "cosine_mean_diff": st.column_config.NumberColumn("cos(probe, mean diff)",
                                                                                  format="%.3f"),
                                "train_accuracy": st.column_config.NumberColumn("train accuracy", format="%.3f"),
                                "mean_diff_accuracy": st.column_config.NumberColumn("mean diff accuracy",
                                                                                    format="%.3f"),
                                "bias": st.column_config.NumberColumn("bias", format="%.3g"),
                                "norm": st.column_config.NumberColumn("‖w‖", format="%.3g")})
    st.caption(md_escape(f"Read at {result.meta['read_at']} of each text, at {layers['site'].iloc[0]} of each "
                         "layer; one seeded stratified split (a quarter held out); scikit-learn's "
                         "logistic regression (L2, C = 1). Steer with a probe's direction on the "
                         "Steering page (vector: cav)."))


analysis_page(
    "probe",
    intro="A **linear probe** (logistic regression, scikit-learn) is trained at each layer to "
          "tell texts with a concept (label 1) from texts without (label 0), on the activation "
          "at each text's last token. Its held-out accuracy says where the concept can be read "
          "off; its normalised weight is the **concept activation vector** (CAV; Kim et al. 2018), "
          "the direction GCAV (Zhang et al. 2025, *Controlling Large Language Models Through "
          "Concept Activation Vectors*) steers with — see the Steering page's *cav* vector. The "
          "mean difference of the two classes is shown beside it: the two need not agree.",
    fields=[
        Field("site", "Activation", help="What each layer is read at: the residual stream after the "
                                         "block (resid_post), before it, or the attention or MLP output."),
        Field("seed", "Seed (the split and the solver)"),
    ],
    draw=draw,
)
