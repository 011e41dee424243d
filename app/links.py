"""Every link of the app is built and parsed here, and nowhere else.

A link is `<base>/<url path of the kind's page>?<spec.to_query()>`: the query string is
the analysis spec itself, so the URL is the whole state of a view. Parsing goes the other
way: `st.query_params` → `AnalysisSpec`, or a readable error naming the bad field.

View state rides along under `view.<name>` keys (`&view.layer=1&view.head=0`: the head the
attention page shows large): what a page shows *of* a result, never what is computed. The
spec ignores them, so they change neither the result's key nor the form; a new spec (Run,
a preset) drops them, as its result starts from its own defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import UserError
from analyses.core.spec import BOOL, INT, VIEW_PREFIX, AnalysisSpec, field_info
from app.components.display import md_escape
from app.routes import DICTIONARIES_PATH, NOTEBOOK_PATH, PAGES, page_file, page_title, url_path

__all__ = ["VIEW_PREFIX", "page_file", "page_title", "url_path"]  # the route helpers pages reach through links
DEFAULT_BASE_URL = "http://localhost:8501"


def params(spec: AnalysisSpec) -> dict[str, str]:
    """The spec as query parameters (str → str), encoded exactly as `to_query` does."""
    return dict(parse_qsl(spec.to_query(), keep_blank_values=True))




def query_key(raw: dict[str, list[str]]) -> str:
    """A canonical text of raw query parameters, view state left out: equal specs' parameters,
    equal key (picking another head to show is not a new link for the form)."""
    spec_only = without_view(raw)
    return "&".join(f"{name}={value}" for name in sorted(spec_only) for value in spec_only[name])


def without_view(raw: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: values for name, values in raw.items() if not name.startswith(VIEW_PREFIX)}


def view_state(raw: dict[str, list[str]]) -> dict[str, str]:
    """The link's view keys, prefix dropped (`view.head=0` → {"head": "0"}); the last value wins."""
    return {name[len(VIEW_PREFIX):]: values[-1] for name, values in raw.items()
            if name.startswith(VIEW_PREFIX) and values}


def view_int(raw: dict[str, list[str]], name: str, allowed: list[int]) -> int | None:
    """A view key read as one of `allowed` integers; None when absent or not one of them
    (a stale or hand-edited view falls back to the page's default, never an error)."""
    value = view_state(raw).get(name, "")
    return int(value) if value.lstrip("-").isdigit() and int(value) in allowed else None


def app_base(context_url: str | None) -> str:
    """The app's root URL from `st.context.url` (which ends in the current page's path)."""
    url = (context_url or DEFAULT_BASE_URL).split("?", 1)[0].split("#", 1)[0].rstrip("/")
    for path in (*map(url_path, PAGES), NOTEBOOK_PATH, DICTIONARIES_PATH):
        suffix = "/" + path
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def share_url(spec: AnalysisSpec, base: str, view: dict[str, str] | None = None) -> str:
    """The full link that reopens `spec` on its page (and `view`, what it shows of the result)."""
    shown = "".join(f"&{VIEW_PREFIX}{quote(name)}={quote(str(value), safe='')}"
                    for name, value in (view or {}).items())
    return f"{base.rstrip('/')}/{url_path(spec.kind)}?{spec.to_query()}{shown}"


def notebook_url(reference: str, base: str) -> str:
    """The link that opens a notebook (a shipped name or `sha256:<hex>`) on the notebook page."""
    return f"{base.rstrip('/')}/{NOTEBOOK_PATH}?notebook={quote(reference, safe=':')}"


def snippet(spec: AnalysisSpec) -> str:
    """A headless Python snippet that reproduces the result (the query is pure ASCII)."""
    return (
        "from analyses import AnalysisSpec, compute\n\n"
        f"result = compute(AnalysisSpec.from_query({spec.to_query()!r}))\n"
        "for name, table in result.tables.items():\n"
        "    print(name, table.head(), sep=\"\\n\")\n"
    )


@dataclass(frozen=True)
class Parsed:
    """What a page's URL says: a spec to show, a draft (valid fields, but not all the
    required ones: they fill the widgets, nothing runs), an error, or nothing at all."""

    spec: AnalysisSpec | None = None
    draft: dict | None = None  # field -> value, model included
    error: str | None = None  # Markdown-safe: shown with st.error as it is
    other_kind: str | None = None  # the link is for another registered kind's page

    @property
    def empty(self) -> bool:
        return self.spec is None and self.draft is None and self.error is None


def parse(raw: dict[str, list[str]], kind: str) -> Parsed:
    """Query parameters (name → every value given) → the spec they describe for `kind`.

    No parameters: a blank page. Missing `kind`: the page's kind. Required fields missing
    while the others are valid (`?model=gpt2`): a draft. Every problem (a field given twice,
    an unknown field, a bad value, a link meant for another page) becomes a readable
    error, and the link's valid fields still fill the form (a draft: nothing runs), so a
    typo in one field loses none of the others; nothing here raises.
    """
    raw = without_view(raw)  # view state: the page reads it (`view_state`), the spec never does
    if not raw:
        return Parsed()
    doubled = sorted(name for name, values in raw.items() if len(values) > 1)
    if doubled:
        kept = {name: vals for name, vals in raw.items() if name not in doubled}
        return _with_valid_fields(f"{doubled[0]}: given more than once", kept, kind)
    values = {name: vals[0] for name, vals in raw.items()}
    values.setdefault("kind", kind)
    if values["kind"] != kind:
        other = values["kind"]
        if other in CATALOGUE and other in PAGES:
            return Parsed(error=md_escape(f"this link is for the {page_title(other)} page, not "
                                          f"this one"), other_kind=other)
        return _error(f"kind: this page shows '{kind}', the link asks for {other[:40]!r}")
    from_rows = CATALOGUE[kind].row_fields if values.get("dataset") else ()  # a set's rows give them
    missing = [name for name in CATALOGUE[kind].required if name not in values and name not in from_rows]
    try:
        if not missing:
            return Parsed(spec=AnalysisSpec.from_mapping(values))
        # Check the fields given by building a spec with stand-ins for the missing ones.
        probe = AnalysisSpec.from_mapping({**values, **{n: _stand_in(n, kind) for n in missing}})
    except UserError as err:
        bad = getattr(err, "field", None)
        if bad in values and bad != "kind":
            kept = {name: [value] for name, value in values.items() if name != bad}
            return _with_valid_fields(str(err), kept, kind)
        return _error(str(err))
    return Parsed(draft={name: value for name, value in probe.items() if name not in missing})


def _with_valid_fields(message: str, kept: dict[str, list[str]], kind: str) -> Parsed:
    """The error about one field, with the fields that remain valid as a draft (each bad
    field found in turn is dropped; the first error is the one shown)."""
    rest = parse(kept, kind) if kept else Parsed()
    draft = dict(rest.spec.items()) if rest.spec is not None else rest.draft
    return Parsed(error=_error(message).error, draft=draft)


def _stand_in(name: str, kind: str) -> str:
    """A valid value of a field, standing in for a missing one while the rest are checked."""
    info = field_info(kind, name)
    if info.type == INT:
        return str(info.minimum or 0)
    return "0" if info.type == BOOL else "x"


def _error(message: str) -> Parsed:
    return Parsed(error=md_escape(f"This link cannot be opened: {message}"))


def read_query_params(query_params) -> dict[str, list[str]]:
    """`st.query_params` (or AppTest's dict) as name → every value given."""
    if hasattr(query_params, "get_all"):
        return {name: list(query_params.get_all(name)) for name in query_params}
    return {name: list(v) if isinstance(v, list) else [v] for name, v in dict(query_params).items()}
