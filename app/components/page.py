"""The frame every analysis page shares, so a page is only its inputs and its figures.

    analysis_page("logit_lens", intro="…", fields=[Field("prompt", multiline=True), …],
                  draw=lambda result: {"heatmap": figures.logit_lens_heatmap(…)})

draws, in order: the model picker (sidebar), the title, the link's error if any, the
preset buttons and the input form with Run (folded into an "Inputs" expander when the
link's spec is complete, so the link lands on its result: one click opens them), and for
a link with a spec: the computed (or kept) result's figures, its tables (on demand: the
table viewer's scripts would slow a link's first paint), the downloads, the share link
and the headless snippet.

`draw` returns figures by name, in the order they are shown; an entry may instead be a
section, a function that draws its own Streamlit elements in that place (a note, the
baselines, a selector and the view it picks). Sections read only the result: they never
compute, and what they select is a view of the result, not part of the link.
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyses import AnalysisSpec, Result
from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import UserError
from app import links
from app.components.display import display_token, md_escape
from app.components.downloads import download_buttons, file_stem
from app.components.form import Field, SpecForm, write_url
from app.components.model_picker import chosen_model, engine_caption, model_picker, model_problem
from app.components.notebook_button import notebook_button
from app.components.plot import plot
from app.components.presets import Preset, presets_for
from app.components.run import run_spec
from app.components.set_view import set_sections
from app.components.share_link import share_box, snippet_box

Section = Callable[[], None]  # draws Streamlit elements itself, in its place among the figures
Draw = Callable[[Result], dict[str, "go.Figure | Section"]]
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"scale": 2}}
# rows of a table sent to the browser (a whole-model neuron atlas has about a million)
MAX_SHOWN_ROWS = 10_000


def analysis_page(kind: str, *, intro: str, fields: list[Field], draw: Draw,
                  set_draw: Draw | None = None) -> None:
    """`set_draw`: sections a run over a prompt set shows after the shared set view."""
    raw = links.read_query_params(st.query_params)
    parsed = links.parse(raw, kind)
    form = SpecForm(kind, fields)
    examples = presets_for(kind)
    form.sync_from_url(raw, parsed, examples[0].fields if examples else None)  # before any widget
    with st.sidebar:
        model_picker(show_engine=False)

    st.title(links.page_title(kind))
    st.markdown(intro)
    if parsed.error:
        st.error(parsed.error, icon=":material/link_off:")
        if parsed.other_kind:
            st.page_link(links.page_file(parsed.other_kind), label=f"Open it on the "
                         f"{links.page_title(parsed.other_kind)} page",
                         query_params={name: values[0] for name, values in raw.items()})
    spec = parsed.spec
    with inputs_area(complete=spec is not None):
        preset_buttons(kind)
        form.draw(spec)

    if spec is None:
        problem = model_problem()
        if problem:  # no run to report it: the form says it once
            st.error(md_escape(problem), icon=":material/error:")
        engine_caption()
        if parsed.draft is not None:
            st.info("The link filled in some inputs: complete them and press **Run**.",
                    icon=":material/arrow_upward:")
        elif not parsed.error:
            st.info("Pick an example above, or fill in the inputs and press **Run**.",
                    icon=":material/arrow_upward:")
        return
    result = run_spec(spec)
    engine_caption()  # after the run: the device and dtype are known now
    if result is None:
        return
    per_example = spec.dataset is not None and CATALOGUE[kind].set_runner is None
    shown = draw(result) if not per_example else {**set_sections(result), **(set_draw(result) if set_draw else {})}
    show_result(spec, result, shown)


def inputs_area(complete: bool):
    """Where the presets and the form go: folded away on a link whose spec is complete (its
    result is what the link is for), open on a blank page, a draft or a bad link (the inputs
    are what is left to do)."""
    return st.expander("Inputs", expanded=not complete, icon=":material/tune:")


def preset_buttons(kind: str) -> None:
    presets = presets_for(kind)
    if not presets:
        return
    st.markdown("**Examples** — one click fills the inputs and runs")
    with st.container(horizontal=True):
        for i, preset in enumerate(presets):
            st.button(md_escape(preset.label), key=f"{kind}:preset:{i}", on_click=_on_preset,
                      args=(kind, preset), help=md_escape(_preset_help(preset)))


def _preset_help(preset: Preset) -> str:
    return "; ".join(f"{name} = {value!r}" for name, value in preset.fields.items())


def _on_preset(kind: str, preset: Preset) -> None:
    try:
        write_url(AnalysisSpec(kind=kind, model=chosen_model(), **preset.fields))
    except UserError as err:  # a bad entry in data/prompts.json
        st.session_state[f"{kind}:_form_error"] = md_escape(f"Example {preset.label}: {err}")


def show_result(spec: AnalysisSpec, result: Result, shown: dict[str, go.Figure | Section]) -> None:
    figures = {name: item for name, item in shown.items() if isinstance(item, go.Figure)}
    for name, item in shown.items():
        if isinstance(item, go.Figure):
            chart(item, f"{spec.kind}:figure:{name}")
        else:
            item()
    meta = result.meta
    if "compute_seconds" in meta:
        st.caption(md_escape(f"Computed on {meta.get('device')} in {meta.get('dtype')} in "
                             f"{meta['compute_seconds']:.2f} s · analysis version "
                             f"{meta.get('analysis_version')} · model fingerprint "
                             f"{str(meta.get('model_fingerprint', ''))[:16]}"))
    for notice in store_notices(meta):
        st.warning(md_escape(notice), icon=":material/database:")
    tables_shown = st.toggle(f"Show the tables ({', '.join(result.tables)})", key=view_key(result, "tables"),
                             help="The result's tables, as the downloads and the store hold them. "
                                  "Drawn on demand: a link opens faster without them.")
    if tables_shown:
        show_tables(spec, result)
    download_buttons(result, figures)
    share_box(spec)
    notebook_button(spec)
    snippet_box(spec)


def store_notices(meta: dict) -> list[str]:
    """What the store says about a result: not kept (and why), or made with other library
    versions than this server runs (served as made: a shared link shows the same numbers)."""
    notices = []
    if meta.get("stored") is False:
        notices.append(f"This result was not saved in the cache ({meta.get('store_problem')}); "
                       "reopening its link will compute it again.")
    if meta.get("made_with_other_versions"):
        notices.append("Made with " + "; ".join(meta["made_with_other_versions"]) + ".")
    return notices


def show_tables(spec: AnalysisSpec, result: Result) -> None:
    declared = CATALOGUE[spec.kind].tables
    with st.container(border=True):
        for name, frame in result.tables.items():
            st.markdown(f"**{md_escape(name)}** — {len(frame):,} rows; columns: "
                        f"{md_escape(', '.join(declared.get(name, frame.columns)))}")
            if len(frame) > MAX_SHOWN_ROWS:
                st.caption(f"The first {MAX_SHOWN_ROWS:,} rows; the downloads below hold all of them.")
            st.dataframe(display_frame(frame.head(MAX_SHOWN_ROWS)), hide_index=True,
                         key=f"{spec.kind}:table:{name}")


def chart(fig: go.Figure, key: str) -> None:
    """A plotly figure as every page draws one."""
    plot(fig, key, PLOTLY_CONFIG)


def view_key(result: Result, name: str) -> str:
    """A widget key for a section's selector, distinct per result (a new result starts
    from its own defaults instead of a choice made for another)."""
    return f"{file_stem(result)}:view:{name}"


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy for the screen: text columns with invisible characters made visible.
    (Downloads keep the exact strings.)"""
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype == object or pd.api.types.is_string_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: display_token(v) if isinstance(v, str) else v)
    return shown
