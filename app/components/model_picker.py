"""The model picker: the embedded default, a Hugging Face id or a local path.

The chosen reference lives in session state under `MODEL_KEY`, so it follows the user
from page to page; a page whose link names a model writes it there first (see
`form.sync_from_url`). The reference is checked without loading the model (resolve and
fingerprint: a cache lookup, never a long network wait offline), and a `ModelError` is
shown as its message.
"""
from __future__ import annotations

import streamlit as st

from analyses.core.errors import ModelError
from analyses.runtime import models
from app.components.display import md_escape, without_server_paths

MODEL_KEY = "_model"  # the chosen reference; not a widget key, so it survives page changes
LAST_META_KEY = "_last_meta"  # device/dtype of the last run (written by components/run.py)
WIDGET_KEY = "_model_input"
DEFAULT = "default"
CHECK_TTL_S = 60  # how long a check of a hub id is trusted


def chosen_model() -> str:
    return st.session_state.get(MODEL_KEY) or DEFAULT


def set_model(ref: str) -> None:
    st.session_state[MODEL_KEY] = ref
    st.session_state[WIDGET_KEY] = ref


def model_picker(where=None, show_engine: bool = True, full_errors: bool = False) -> str:
    """Draw the picker (in the sidebar unless `where` is given); return the reference.
    `show_engine=False` leaves the device/dtype line to `engine_caption`, for pages that
    draw it after their run (when the device is known)."""
    where = where if where is not None else st.sidebar
    if WIDGET_KEY not in st.session_state:
        st.session_state[WIDGET_KEY] = chosen_model()
    where.text_input(
        "Model", key=WIDGET_KEY, on_change=_copy_widget,
        help="`default` is the embedded model. Or a Hugging Face id (`gpt2`, "
             "`EleutherAI/pythia-70m`: from the local cache when offline), a local Hugging "
             "Face model folder, or a llama2.c `.bin` checkpoint.",
    )
    known = known_models()
    if known:
        where.caption(md_escape("Here: " + ", ".join(known)))
    ref = chosen_model()
    problem, where_from = check_model(ref)
    if problem and full_errors:
        where.error(md_escape(without_server_paths(problem)), icon=":material/error:")
    elif problem:  # one short line here; the page shows the whole message once
        where.caption(md_escape(f"⚠ {ref} cannot be loaded (details on the page)"))
    else:
        where.caption(md_escape(without_server_paths(where_from)))
    if show_engine:
        engine_caption(where)
    return ref


def model_problem() -> str | None:
    """The chosen model's problem, without server paths, or None when it resolves."""
    problem, _ = check_model(chosen_model())
    return without_server_paths(problem) if problem else None


def engine_caption(where=None) -> None:
    """The device and dtype the chosen model runs on (known once it has run)."""
    where = where if where is not None else st.sidebar
    where.caption(md_escape(_engine_text(chosen_model())))


def _copy_widget() -> None:
    st.session_state[MODEL_KEY] = (st.session_state.get(WIDGET_KEY) or "").strip() or DEFAULT


@st.cache_data(ttl=CHECK_TTL_S, show_spinner=False)
def known_models() -> list[str]:
    """`default`, the embedded models and those in the local Hugging Face cache."""
    try:
        rows = models.available()
    except Exception:  # noqa: BLE001 - a listing is a hint; never fail the page for it
        rows = []
    names = [row["ref"] for row in rows]
    return (["default"] if any(row.get("default") for row in rows) else []) + names


@st.cache_data(ttl=CHECK_TTL_S, show_spinner=False, max_entries=64)
def check_model(ref: str) -> tuple[str | None, str]:
    """(the error message or None, where the model comes from), without loading it."""
    try:
        resolved = models.resolve(ref)
        models.fingerprint(ref)  # offline and not cached: fails here, at once
    except ModelError as err:
        return str(err), ""
    label = {"embedded": "embedded model", "huggingface": "Hugging Face model",
             "local_dir": "local model folder", "llama2c": "llama2.c checkpoint"}[resolved.source]
    return None, f"{label}: {resolved.location}"


def _engine_text(ref: str) -> str:
    meta = st.session_state.get(LAST_META_KEY)
    if meta and meta.get("model") == ref:
        return f"runs on {meta['device']} in {meta['dtype']}"
    return "runs on the GPU when there is one, else the CPU, in float32 (shown after a run)"
