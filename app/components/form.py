"""The inputs of an analysis page, kept in step with the URL.

The URL is the state. When a page opens with a link (or a preset or Run changes the
URL), `sync_from_url` writes the link's spec into the widgets before they are drawn.
With a prompt set chosen, the single-prompt fields its rows give are not drawn at all.
Pressing Run reads the widgets back into a spec and writes it to the URL, which makes
the page rerun, compute and show that spec. Nothing else changes the URL: editing an
input reruns only the inputs' fragment, so its token preview follows the typing (one-line
boxes after a short pause, multi-line boxes when left or on Ctrl+Enter).

Widgets are generic: each spec field gets one by its type (`analyses.core.spec.field_info`)
(text → text box, int → number box, bool → checkbox; a bool field the kind gives no
default, whose absence means "the analysis decides", → auto/yes/no; a text field with
`choices` in the kind's catalogue entry → a select box, or a multiselect for its
`list_fields`). A page only chooses labels, order and which text fields are multi-line;
any field its kind accepts that the page does not list still gets a widget, so no field
of a link is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from analyses import AnalysisSpec
from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import UserError
from analyses.core.spec import BOOL, INT, field_info
from app import links
from app.components.display import md_escape
from app.components.model_picker import chosen_model, set_model
from app.components.set_picker import set_picker
from app.components.set_upload import upload_box
from app.components.token_preview import token_caption

AUTO = "auto"  # a tri-state bool left unset: the analysis decides
TRISTATE = {True: "yes", False: "no"}


@dataclass(frozen=True)
class Field:
    name: str  # a spec field of the page's kind
    label: str | None = None  # default: the field name
    help: str | None = None  # default: the field's own help
    multiline: bool = False  # text fields: a text area instead of a one-line box
    placeholder: str | None = None
    # drawn only when this other field has a value: steering's coefficients and layers mean
    # nothing on a knock-out-only run (no texts to build a vector from). Left out, it is
    # left out of the spec too (the kind's default, which does nothing without the other).
    needs: str | tuple[str, ...] | None = None  # a tuple: drawn when any of those fields has a value


DATASET_FIELD = Field(
    "dataset", "Prompt set (runs every row instead of the inputs above)",
    placeholder="e.g. ioi, facts, induction, needle, or sha256:… from `analyses datasets add`",
    help="A set of rows with this page's inputs: the shipped ioi, facts, induction and needle "
         "sets, or one added with `python -m analyses datasets add FILE` (its sha256: "
         "reference). Means with 95% intervals over the rows; the inputs above are ignored.")


class SpecForm:
    """The widgets of one kind's spec fields, the Run button, and their URL round trip."""

    def __init__(self, kind: str, fields: list[Field] | tuple[Field, ...] = ()):
        self.kind = kind
        self.analysis = CATALOGUE[kind]
        accepted = (*self.analysis.required, *self.analysis.optional)
        unknown = [f.name for f in fields if f.name not in accepted]
        if unknown:
            raise ValueError(f"{kind} takes no field {unknown[0]!r} (it takes {accepted})")
        listed = {f.name for f in fields}
        self.fields = [*fields, *(DATASET_FIELD if name == "dataset" else Field(name)
                                  for name in accepted if name not in listed)]

    # --- session state keys ---------------------------------------------------------
    def key(self, name: str) -> str:
        return f"{self.kind}:{name}"

    @property
    def _applied_key(self) -> str:
        return f"{self.kind}:_applied_query"

    @property
    def _error_key(self) -> str:
        return f"{self.kind}:_form_error"

    # --- URL → widgets --------------------------------------------------------------
    def sync_from_url(self, raw: dict[str, list[str]], parsed: links.Parsed,
                      example: dict | None = None) -> None:
        """Fill the widgets from the link when the link changed since they were last filled;
        fill any widget that has no value yet from `example` (a page opened without a link
        starts on a working example: Run runs it) or else the kind's defaults."""
        state = st.session_state
        current = links.query_key(raw)
        if state.get(self._applied_key) != current:
            state[self._applied_key] = current
            given = dict(parsed.spec.items()) if parsed.spec is not None else parsed.draft
            if given is not None:
                for f in self.fields:
                    state[self.key(f.name)] = self._widget_value(f.name, given.get(f.name))
                set_model(given.get("model") or "default")
                state.pop(self._error_key, None)
        start = example if (example and parsed.empty) else {}
        for f in self.fields:
            if self.key(f.name) not in state:
                state[self.key(f.name)] = self._widget_value(f.name, start.get(f.name))

    def _info(self, name: str):
        return field_info(self.kind, name)

    def _choices(self, name: str) -> tuple[str, ...] | None:
        return getattr(self.analysis, "choices", {}).get(name)

    def _is_list(self, name: str) -> bool:
        return name in getattr(self.analysis, "list_fields", ())

    def _is_tristate(self, name: str) -> bool:
        """A bool field without a default: unset is a third answer (attribution patching's
        `exact`: run it when the model is small enough), which a checkbox cannot give."""
        return self._info(name).type == BOOL and name not in self.analysis.defaults

    def _widget_value(self, name: str, value):
        """A spec value as its widget holds it (None: the kind's default)."""
        if value is None:
            value = self.analysis.defaults.get(name)
        info = self._info(name)
        if self._choices(name) is not None:
            if self._is_list(name):
                return [v.strip() for v in (value or "").split(",") if v.strip()]
            return value  # None leaves the select box empty
        if self._is_tristate(name):
            return AUTO if value is None else TRISTATE[bool(value)]
        if info.type == BOOL:
            return bool(value)
        if info.type == INT:
            return value  # None leaves the number box empty
        return value or ""

    # --- widgets → URL --------------------------------------------------------------
    def spec_from_widgets(self) -> AnalysisSpec:
        """The spec the widgets describe, with the chosen model; raises a UserError."""
        values = {}
        for f in self.fields:
            value = st.session_state.get(self.key(f.name))
            if isinstance(value, list):  # a multiselect of choices
                value = ",".join(value) or None
            elif self._is_tristate(f.name):
                value = {label: flag for flag, label in TRISTATE.items()}.get(value)  # auto: None
            elif self._info(f.name).type == INT:
                value = None if value is None else int(value)
            elif self._info(f.name).type != BOOL:
                value = value if value and value.strip() else None  # leading spaces kept
            if value is not None:
                values[f.name] = value
        if values.get("dataset"):  # the set's rows give the inputs: the single-prompt ones step aside
            values = {k: v for k, v in values.items() if k not in self.analysis.row_fields}
        values = {k: v for k, v in values.items() if k not in self.waiting()}
        return AnalysisSpec(kind=self.kind, model=chosen_model(), **values)

    def _on_run(self) -> None:
        try:
            spec = self.spec_from_widgets()
        except UserError as err:
            st.session_state[self._error_key] = md_escape(str(err))
            return
        st.session_state.pop(self._error_key, None)
        write_url(spec)

    def differs_from(self, spec: AnalysisSpec) -> bool:
        """Whether the widgets were edited away from `spec` (and Run not pressed yet)."""
        try:
            return self.spec_from_widgets().with_defaults() != spec.with_defaults()
        except UserError:
            return True

    # --- drawing --------------------------------------------------------------------
    def draw(self, shown: AnalysisSpec | None = None) -> None:
        """The inputs, their token previews and Run; `shown` is the link's spec, whose result
        the page shows (a note says when the inputs were edited away from it)."""
        if "dataset" in self.analysis.optional:  # before the inputs: they fill the set input
            set_picker(self.kind, self.key("dataset"))
            upload_box(self.kind, self.key("dataset"))
        with st.container(border=True, key=f"{self.kind}:inputs"):
            self._inputs(shown)

    # A fragment, not a form: a form's widgets send nothing until Run, so the token previews
    # under them could not follow typing. An edit reruns only this fragment (the inputs and
    # their previews, never the result below); Run writes the URL and reruns the page.
    @st.fragment
    def _inputs(self, shown: AnalysisSpec | None) -> None:
        aside = self.stepping_aside()
        if aside:
            st.caption(md_escape(f"The prompt set's rows give {', '.join(aside)}: clear the set "
                                 "below to type one input instead."))
        hidden = {*aside, *self.waiting()}
        for f in self.fields:
            if f.name not in hidden:
                self._widget(f)
        if shown is not None and self.differs_from(shown):
            st.caption("The inputs above were edited: press **Run** to show their result.")
        # Ctrl/Cmd+Enter runs from any box (in a form, Enter in a one-line box did; a live
        # box cannot tell Enter from a typing pause)
        if st.button("Run", type="primary", icon=":material/play_arrow:", on_click=self._on_run,
                     key=f"{self.kind}:run", shortcut="Mod+Enter") and self._error_key not in st.session_state:
            st.rerun()  # the URL holds the new spec: the whole page shows it
        if self._error_key in st.session_state:
            st.error(st.session_state[self._error_key], icon=":material/error:")

    def stepping_aside(self) -> tuple[str, ...]:
        """The single-prompt fields not drawn now: with a prompt set chosen, its rows give them
        (Run drops them from the spec too), so their boxes would only stand empty."""
        if not self._given("dataset"):
            return ()
        return tuple(f.name for f in self.fields if f.name in self.analysis.row_fields)

    def waiting(self) -> tuple[str, ...]:
        """The fields not drawn because the field each `needs` is empty."""
        def needed(f: Field) -> tuple[str, ...]:
            return (f.needs,) if isinstance(f.needs, str) else f.needs

        return tuple(f.name for f in self.fields if f.needs and not any(map(self._given, needed(f))))

    def _given(self, name: str) -> bool:
        value = st.session_state.get(self.key(name))
        return bool(value.strip()) if isinstance(value, str) else value not in (None, [], False)

    def _widget(self, f: Field) -> None:
        info = self._info(f.name)
        label = f.label or f.name
        help_text = f.help or md_escape(info.help)
        key = self.key(f.name)
        choices = self._choices(f.name)
        if choices is not None and self._is_list(f.name):
            st.multiselect(label, list(choices), key=key, help=help_text)
        elif choices is not None:
            st.selectbox(label, list(choices), key=key, help=help_text, index=None,
                         placeholder=f.placeholder or "Choose…")
        elif self._is_tristate(f.name):
            st.radio(label, [AUTO, *TRISTATE.values()], key=key, help=help_text, horizontal=True)
        elif info.type == BOOL:
            st.checkbox(label, key=key, help=help_text)
        elif info.type == INT:
            st.number_input(label, key=key, help=help_text, min_value=info.minimum,
                            max_value=info.maximum, step=1)
        elif f.multiline:
            st.text_area(label, key=key, help=help_text, placeholder=f.placeholder, height=100)
            token_caption(chosen_model(), f.name, st.session_state.get(key))
        else:  # live: sent after a typing pause, so its token preview follows the typing
            st.text_input(label, key=key, help=help_text, placeholder=f.placeholder, live=True)
            token_caption(chosen_model(), f.name, st.session_state.get(key))


def write_url(spec: AnalysisSpec) -> None:
    """Make `spec` the page's state: its query parameters replace the URL's."""
    st.query_params.from_dict(links.params(spec))
