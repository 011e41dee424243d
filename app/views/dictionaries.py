"""Dictionaries page: the sparse dictionaries (SAEs, transcoders) on disk with their measured
metrics and the issue-27 targets each misses, one dictionary's latent-density histogram, the
lexicon probe (best latent vs best neuron), and a form that trains a small dictionary as a
job (progress bar, errors shown as messages; a transcoder's linear skip offered for MLP sites)."""
from pathlib import Path

import streamlit as st

from analyses.core.errors import UserError
from analyses.dictionaries import card, overview, registry
from analyses.figures.dictionaries import by_kind_chart, density_histogram_chart, lexicon_chart
from app.components.display import md_escape, without_server_paths
from app.components.model_picker import chosen_model, model_picker
from app.components.page import chart, display_frame

JOB_KEY = "dictionaries:training job"
TRAINED_KEY = "dictionaries:trained"  # the set the last training went to: the page opens on it
DONE_KEY = "dictionaries:done"  # the last training's summary, shown after the rerun that lists it
LISTED_MISSES = 12  # misses listed in the warning itself; more fold into an expander
WAIT_S = 600.0  # the page follows a training job this long (the job's own limit is below it)

with st.sidebar:
    model_picker(show_engine=False)

st.title("Dictionaries")
st.markdown(
    "Sparse **dictionaries** read a site of the model as a sparse sum of learned directions: "
    "sparse autoencoders on the residual stream (TopK) and on the attention output (before W_O, "
    "all heads side by side; matching pursuit: each of a token's k latents chosen against what the "
    "ones before left unexplained), and **transcoders** that replace an MLP (its input → its output). "
    "Each is measured on held-out text: L0 (latents active per token), explained variance, "
    "cross-entropy recovered when its reconstruction replaces the site, KL, dead and dense "
    "latents. `python -m analyses dictionaries train|list|eval` does the same headless.")


def set_label(folder: Path) -> str:
    return str(folder.relative_to(registry.ROOT))


def pick_set() -> Path | None:
    folders = overview.sets(registry.ROOT)
    if not folders:
        st.info("No dictionaries with metrics under data/dictionaries yet: train one below.")
        return None
    trained = st.session_state.get(TRAINED_KEY)
    labels = [set_label(f) for f in folders]
    index = labels.index(trained) if trained in labels else 0
    choice = st.selectbox("Dictionary set", labels, index=index,
                          help="A folder of dictionaries, one directory per site: the shipped set "
                               "first, then those trained here (under trained/).")
    return folders[labels.index(choice)]


def show_metrics(folder: Path) -> None:
    frame = overview.metrics_frame(folder)
    st.subheader("Metrics")
    st.caption(md_escape(card.TARGETS))
    missed = frame[frame["targets missed"] != "all met"]
    if len(missed):
        lines = "\n".join(f"- {md_escape(r['site'])}: {md_escape(r['targets missed'])}"
                          for r in missed.to_dict("records"))
        headline = md_escape(f"{len(missed)} of {len(frame)} dictionaries miss a target")
        if len(missed) <= LISTED_MISSES:
            st.warning(f"{headline}:\n{lines}", icon=":material/flag:")
        else:  # a long set: the list folds away (the table's second column has it too)
            st.warning(headline + md_escape(" (the table's second column says which)."), icon=":material/flag:")
            with st.expander("Every miss"):
                st.markdown(lines)
    else:
        st.success(f"All {len(frame)} dictionaries meet every target.", icon=":material/check:")
    order = ["site", "targets missed", *[c for c in frame.columns if c not in ("site", "targets missed")]]
    st.dataframe(display_frame(frame[order]), hide_index=True, width="stretch",
                 column_config={  # the site stays in view while the wide table scrolls sideways
                     "site": st.column_config.TextColumn(pinned=True),
                     "explained variance": st.column_config.NumberColumn(format="%.3f"),
                     "CE recovered": st.column_config.NumberColumn(format="%.3f"),
                     "CE recovered SE": st.column_config.NumberColumn(
                         format="%.3f", help="Its standard error, documents as clusters: a miss within "
                                             "2 SE of the bar is not a measured miss"),
                     "CE tokens": st.column_config.NumberColumn(format="localized"),
                     "KL": st.column_config.NumberColumn(format="%.4f"),
                     "L0": st.column_config.NumberColumn(format="%.2f"),
                     "dead": st.column_config.NumberColumn(format="percent"),
                     "dense": st.column_config.NumberColumn(format="percent"),
                     "train s": st.column_config.NumberColumn(format="%.0f"),
                     "tokens/s": st.column_config.NumberColumn(format="localized"),
                     "train tokens": st.column_config.NumberColumn(format="localized"),
                     "eval tokens": st.column_config.NumberColumn(format="localized"),
                     "targets missed": st.column_config.TextColumn(width="large"),
                 })


def show_density(folder: Path) -> None:
    histograms = overview.density_histograms(folder)
    if not histograms:
        return
    st.subheader("Latent density")
    sites = list(histograms)
    site = st.selectbox("Dictionary", sites, key=f"density:{set_label(folder)}",
                        help="How often each latent fires on the held-out tokens: dead latents "
                             "never do, dense ones fire on more than 10% of tokens.")
    chart(density_histogram_chart(histograms[site], site), f"density:{set_label(folder)}:{site}")


def show_lexicon(folder: Path) -> None:
    latent, neuron = overview.lexicon_frames(folder)
    if latent.empty:
        return
    st.subheader("Lexicon probe: one latent vs the best neuron")
    st.caption("The embedded corpus is generated from a lexicon with known categories. Per "
               "category: the best single latent's F1 at telling its tokens from the rest of the "
               "held-out text, beside the best MLP neuron's (layers 0..L). Where a latent beats every "
               "neuron, the dictionary found a feature the neuron basis hides.")
    chart(lexicon_chart(latent, neuron), f"lexicon:{set_label(folder)}")
    st.markdown(md_escape(card.lexicon_summary(card.rows(folder))))  # the bar, counted
    with st.expander("As a table"):
        table = latent.round(2).astype(str) + " / " + neuron.round(2).astype(str)
        st.dataframe(table.rename_axis("site").reset_index(), hide_index=True, width="stretch")


def show_by_kind(folder: Path) -> None:
    explained, share, ce = overview.by_kind_frames(folder)
    if explained.empty:
        return
    st.subheader("By document type: where each dictionary falls short")
    st.caption("The held-out text mixes document types. Per type: the share of the site's variance "
               "the dictionary leaves unexplained, and the share of cross-entropy it does not recover "
               "when spliced in (darker is worse; each cell names the measured value). On the embedded "
               "model the repeated-random-token documents, where each position carries a random "
               "token's identity, are where the attention-output SAEs' misses sit.")
    chart(by_kind_chart(explained, share, ce), f"by kind:{set_label(folder)}")
    with st.expander("As a table"):
        table = explained.round(3).astype(str) + " (" + (share * 100).round(0).astype("Int64").astype(str) \
            + "% of variance) · CE " + ce.round(3).astype(str)
        st.dataframe(table.rename_axis("site").reset_index(), hide_index=True, width="stretch")


def train_form() -> None:
    from analyses.dictionaries import train_job

    st.subheader("Train a small dictionary")
    st.caption(md_escape(
        f"Trains on the model's training mixture (stories, IOI, facts, needles, induction documents) "
        f"and measures it on {train_job.EVAL_TOKENS:,} held-out tokens, one training at a time; up to "
        f"{train_job.MAX_TOKENS:,} tokens here (the CLI trains the shipped set). It goes to "
        f"data/dictionaries/{train_job.TRAINED}/<model>/…, never over the shipped set. An MLP site "
        f"(blocks.L.mlp, a transcoder) offers a linear skip."))
    train_inputs()
    if DONE_KEY in st.session_state and JOB_KEY not in st.session_state:
        st.success(md_escape(st.session_state[DONE_KEY]), icon=":material/check:")
    job = st.session_state.get(JOB_KEY)
    if job is not None:
        follow_job(job)


# A fragment, not a form: the skip box follows the site as it is typed (a form's widgets send
# nothing until submitted), and an edit reruns only these inputs, not the figures above.
@st.fragment
def train_inputs() -> None:
    from analyses.dictionaries import train_job

    with st.container(border=True, key="train:inputs"):
        left, mid, right = st.columns(3)
        site = left.text_input("Site", value="blocks.0.hook_resid_post", key="train:site",
                               help="blocks.L.hook_resid_post (residual SAE), blocks.L.attn.hook_z "
                                    "(attention-output SAE) or blocks.L.mlp (transcoder)")
        latents = mid.number_input("Latents", min_value=1, max_value=train_job.MAX_LATENTS, value=256, step=64,
                                   key="train:latents")
        k = right.number_input("k (latents active per token)", min_value=1, max_value=train_job.MAX_K, value=16,
                               key="train:k")
        tokens = left.number_input("Training tokens", min_value=train_job.MIN_TOKENS,
                                   max_value=train_job.MAX_TOKENS, value=50_000, step=10_000,
                                   key="train:tokens")
        seed = mid.number_input("Seed", min_value=0, value=0, key="train:seed")
        transcoder = site.strip().endswith(".mlp")
        skip = transcoder and right.checkbox(
            "Linear skip (MLP input → output)", key="train:skip",
            help="A transcoder with a linear skip: x @ W_skip.T added to its output, trained with the rest "
                 "(sparsify's skip_connection, the CLI's --transcoder-skip; the shipped transcoders have "
                 "one). On the layer-0 MLP it lifted CE recovered from 0.970 to 0.988 at the same L0.")
        go = st.button("Train", type="primary", key="train:go")
    if not go:
        return
    st.session_state.pop(DONE_KEY, None)
    try:
        request = train_job.TrainRequest(model=chosen_model(), site=site.strip(), latents=int(latents),
                                         k=int(k), tokens=int(tokens), seed=int(seed), transcoder_skip=bool(skip))
        st.session_state[JOB_KEY] = train_job.submit(request)
    except UserError as err:
        st.error(md_escape(without_server_paths(str(err))), icon=":material/error:")
        return
    st.rerun()  # the whole page: it follows the job below the inputs


def follow_job(job) -> None:
    from analyses.runtime.jobs import JobFailed
    from analyses.runtime.service import follow

    bar = st.progress(0.0, text="Starting…")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=md_escape(message))

    try:
        trained = follow(job, progress, timeout=WAIT_S)
    except JobFailed as err:
        st.error(md_escape(without_server_paths(str(err))), icon=":material/error:")
        st.session_state.pop(JOB_KEY, None)
        return
    except TimeoutError as err:
        st.warning(md_escape(str(err)), icon=":material/schedule:")
        return
    finally:
        bar.empty()
    st.session_state.pop(JOB_KEY, None)
    m = trained.metrics
    st.session_state[DONE_KEY] = (f"Trained {Path(trained.path).name} into "
                                  f"{set_label(Path(trained.path).parent)}: explained variance "
                                  f"{m['explained_variance']:.3f}, L0 {m['l0']:.1f}, CE recovered "
                                  f"{m['ce_recovered']:.3f}, dead {m['dead_share']:.1%}; its set is shown above.")
    st.session_state[TRAINED_KEY] = set_label(Path(trained.path).parent)
    st.rerun()  # list the new set above


try:
    chosen = pick_set()
    if chosen is not None:
        show_metrics(chosen)
        show_density(chosen)
        show_lexicon(chosen)
        show_by_kind(chosen)
except (OSError, ValueError, KeyError) as err:  # a hand-edited metrics.json: say so, no traceback
    st.error(md_escape(f"Could not read the dictionaries' metrics ({type(err).__name__}: "
                       f"{without_server_paths(str(err))})."), icon=":material/error:")
train_form()
