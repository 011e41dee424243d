"""The analysis spec: one frozen object that says *what* to compute.

The app builds it from the URL, the CLI from `--spec`, tests and notebooks by
hand; the store keys results by it and the worker runs it. It round-trips
exactly through a URL query string (`from_query` / `to_query`) and through JSON
(`from_json` / `to_json`), and every validation error names the bad field.

Which fields a kind needs and accepts is declared by that kind's entry in the catalogue
(`analyses.core.catalogue`, plain data): building and checking a spec imports no torch.
A field the kind does not use is an error, never dropped.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from urllib.parse import quote, unquote_plus

from . import listtext
from .catalogue import CATALOGUE
from .datasets import check_name as check_dataset_name
from .errors import SpecError

TEXT, INT, BOOL = "text", "int", "bool"


@dataclass(frozen=True)
class FieldInfo:
    type: str
    help: str
    minimum: int | None = None
    maximum: int | None = None
    # text fields: reads the value and raises ValueError naming what is wrong (a comma list)
    check: Callable[[str], object] | None = None


# The one vocabulary of links, JSON, the CLI and tests, in canonical order.
FIELDS: dict[str, FieldInfo] = {
    "kind": FieldInfo(TEXT, "which analysis: see `python -m analyses kinds`"),
    "model": FieldInfo(TEXT, "model reference: `default`, an embedded name, a Hugging Face id, "
                             "a local directory or a llama2.c .bin file"),
    "prompt": FieldInfo(TEXT, "the text the model reads"),
    "clean": FieldInfo(TEXT, "the clean prompt of a patching pair"),
    "corrupted": FieldInfo(TEXT, "the corrupted prompt (same token length as clean)"),
    "answer": FieldInfo(TEXT, "the correct next token, leading space included (' Paris')"),
    "wrong": FieldInfo(TEXT, "the contrasting wrong token, leading space included"),
    "token": FieldInfo(TEXT, "target tokens, separated by commas (' Paris, London'); "
                             "\\, is a comma inside a token, \\\\ a backslash, \\ + space a token of spaces"),
    "top_k": FieldInfo(INT, "how many top tokens to list (heads: how many top heads to ablate; "
                              "dla: how many neurons of each MLP to list each way)", 1, 100),
    "granularity": FieldInfo(TEXT, "what to patch (activation patching)"),
    "detector": FieldInfo(TEXT, "head detectors, separated by commas"),
    "layer": FieldInfo(INT, "a layer index (0-based)", 0, 10_000),
    "head": FieldInfo(INT, "an attention head index within the layer (0-based)", 0, 10_000),
    "neuron": FieldInfo(INT, "a neuron index within the layer's MLP (0-based)", 0, 10_000_000),
    "seed": FieldInfo(INT, "random seed for generated inputs", 0, 2**31 - 1),
    "final_norm": FieldInfo(BOOL, "logit lens, neurons: apply the final norm before unembedding (1) "
                                  "or not (0)"),
    "exact": FieldInfo(BOOL, "attribution patching: also run exact patching (1)"),
    "qk_fix": FieldInfo(BOOL, "attribution patching: AtP* query/key fix, recompute the attention "
                              "softmax exactly for q and k nodes (1)"),
    "graddrop": FieldInfo(BOOL, "attribution patching: AtP* GradDrop, average |AtP| over backward "
                                "passes that each drop one layer's gradient (1)"),
    "ablate": FieldInfo(BOOL, "heads: mean-ablate the top heads and report the drop (1)"),
    "dataset": FieldInfo(TEXT, "a prompt set to run over instead of one prompt: a shipped set "
                               "(ioi, facts, induction, needle; labelled, for probes: capital_concept, "
                               "name_concept) or sha256:<hex> of one added with "
                               "`python -m analyses datasets add`"),
    "positive": FieldInfo(TEXT, "steering: the texts the vector steers toward, one per line",
                          check=listtext.lines),
    "negative": FieldInfo(TEXT, "steering: the contrasting texts, one per line (the i-th pairs with "
                                "the i-th positive)", check=listtext.lines),
    "method": FieldInfo(TEXT, "steering: how the vector is built (actadd, mean_diff, mean_centred, "
                              "cav: a logistic probe's direction, GCAV); "
                              "circuit: how edges are scored (eap, eap_ig); attribution patching: atp, or relp "
                              "for relevance patching beside it"),
    "coeff": FieldInfo(TEXT, "steering: coefficients the vector is added with, comma-separated "
                             "(a sweep; 0, the unsteered baseline, is always run)",
                       check=listtext.numbers),
    "positions": FieldInfo(TEXT, "steering: where the vector is added (all, last: the prompt's last "
                                 "position, generated: the generated tokens)"),
    "max_new_tokens": FieldInfo(INT, "steering: how many tokens to generate", 1, 256),
    "temperature": FieldInfo(TEXT, "steering: sampling temperature (0: greedy)",
                             check=lambda text: listtext.number(text, 0.0)),
    "ablation": FieldInfo(TEXT, "what an ablated component's output is replaced with (zero, or "
                                "mean: its mean over a neutral text)"),
    "steps": FieldInfo(INT, "circuit: integrated-gradient steps of eap_ig", 1, 64),
    "gradient": FieldInfo(TEXT, "circuit (eap), attribution patching: the run whose gradient is taken. "
                                "corrupted (default; TransformerLens's attribution_patch): estimates "
                                "restoring the clean value into the corrupted run; clean (Syed et al. "
                                "2023's EAP code): estimates corrupting it in the clean run"),
    "subject": FieldInfo(TEXT, "knockout: the subject's text as it appears in the prompt ('France'); "
                               "its tokens are the `subject` source set"),
    "source": FieldInfo(TEXT, "knockout: the key positions whose attention from the last position is "
                              "cut, comma-separated (subject, other, last, all); unset: subject (when "
                              "given), other and last"),
    "window": FieldInfo(INT, "knockout: how many consecutive layers each knockout spans (unset: "
                             "Geva et al.'s 9 of GPT-2 XL's 48 layers scaled to the model, at least 1)",
                        1, 10_000),
    "dictionary": FieldInfo(TEXT, "a sparse dictionary (SAE or transcoder): a site name, the model's "
                                  "own dictionary there (blocks.1.hook_resid_post, blocks.1.attn.hook_z, "
                                  "blocks.1.mlp), or a local directory in sparsify's or SAELens's format"),
    "latent": FieldInfo(INT, "a latent of the dictionary (0-based); steering: the one added "
                             "(method=feature) or clamped", 0, 100_000_000),
    "clamp": FieldInfo(TEXT, "steering: clamp the latent to this value (0: zero it), the "
                             "dictionary's error term kept",
                       check=lambda text: listtext.number(text, -listtext.MAX_MAGNITUDE)),
    "corpus_tokens": FieldInfo(INT, "latent index: how many held-out corpus tokens the dashboards read "
                                    "(top contexts, histograms, densities)", 1_000, 10_000_000),
    "p": FieldInfo(TEXT, "sparsity: the perplexity increases (%) to find the sparsity at, "
                         "comma-separated (PPL-p% sparsity)", check=listtext.positive_numbers),
    "transcoders": FieldInfo(TEXT, "graph: a folder holding one transcoder per layer (blocks.L.mlp/); "
                                   "unset: the model's own under data/dictionaries/"),
    "node_threshold": FieldInfo(TEXT, "graph: keep the nodes holding this share of the influence on the "
                                      "logits (0-1)", check=lambda text: listtext.fraction(text)),
    "edge_threshold": FieldInfo(TEXT, "graph: keep the edges holding this share of the influence (0-1)",
                                check=lambda text: listtext.fraction(text)),
    "max_features": FieldInfo(INT, "graph: at most this many latent nodes in the pruned graph", 1, 100_000),
    "intervene": FieldInfo(TEXT, "graph: latents to set, NODE:OP comma-separated; OP is xK (x0 zeroes, "
                                 "x-1 flips) or =V (1.517@13:x0)"),
    "site": FieldInfo(TEXT, "probe: the activation each layer is read at (resid_post, resid_pre, "
                            "attn_out, mlp_out), at each text's last token"),
    "p_target": FieldInfo(TEXT, "steering with method=cav: target probabilities of the concept, "
                                "comma-separated, each strictly between 0 and 1; each adds a cell "
                                "steered by GCAV's per-position strength (high: add the concept, "
                                "below 0.5: remove it)", check=lambda text: _probabilities(text)),
}


def _probabilities(text: str) -> list[float]:
    values = listtext.numbers(text)
    bad = [v for v in values if not 0.0 < v < 1.0]
    if bad:
        raise ValueError(f"{bad[0]:g} is not strictly between 0 and 1 (a probability the probe can reach)")
    return values
ABLATE_LIST = FieldInfo(TEXT, "components to knock out, comma-separated: heads L1H7, a layer's MLP "
                              "L0.mlp, its attention output L0.attn", check=listtext.components)
# Fields whose type differs for one kind: a list where the others take a single value.
KIND_FIELDS: dict[str, dict[str, FieldInfo]] = {
    "steering": {"layer": FieldInfo(TEXT, "the layers to steer at, comma-separated (0-based: the "
                                          "residual stream entering that block); several sweep",
                                    check=listtext.indices),
                 "ablate": ABLATE_LIST},
    "logit_lens": {"ablate": ABLATE_LIST,
                   "positions": FieldInfo(TEXT, "logit lens: only these input positions are read out, "
                                                "e.g. 40-63 or 3, 40-63 (0-based; unset: every position)",
                                          check=listtext.spans)},
}


def field_info(kind, name: str) -> FieldInfo:
    """What field `name` is for `kind`: its entry in FIELDS unless the kind gives it its own."""
    own = KIND_FIELDS.get(kind, {}) if isinstance(kind, str) else {}
    return own.get(name) or FIELDS[name]
MAX_TEXT_CHARS = 20_000  # a spec is a link: longer text is surely a mistake
# Query keys of a share link that hold what a page shows of a result (`view.head=0`: the
# attention page's one head), not what is computed: `from_query` skips them, so a link copied
# from the browser still gives its spec; app/links.py reads and writes them.
VIEW_PREFIX = "view."
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class AnalysisSpec:
    kind: str
    model: str = "default"
    prompt: str | None = None
    clean: str | None = None
    corrupted: str | None = None
    answer: str | None = None
    wrong: str | None = None
    token: str | None = None
    top_k: int | None = None
    granularity: str | None = None
    detector: str | None = None
    layer: int | str | None = None  # steering: a comma list of layers
    head: int | None = None
    neuron: int | None = None
    seed: int | None = None
    final_norm: bool | None = None
    exact: bool | None = None
    qk_fix: bool | None = None
    graddrop: bool | None = None
    ablate: bool | str | None = None  # steering, logit lens: a comma list of components
    dataset: str | None = None
    positive: str | None = None
    negative: str | None = None
    method: str | None = None
    coeff: str | None = None
    positions: str | None = None
    max_new_tokens: int | None = None
    temperature: str | None = None
    ablation: str | None = None
    steps: int | None = None
    gradient: str | None = None  # unset: corrupted (kept out of the defaults: cache keys stay)
    subject: str | None = None
    source: str | None = None  # knockout: a comma list of source sets
    window: int | None = None  # knockout: unset: scaled to the model's depth
    dictionary: str | None = None  # a site name or a directory (analyses/dictionaries/reference.py)
    latent: int | None = None
    clamp: str | None = None
    corpus_tokens: int | None = None
    p: str | None = None  # sparsity: a comma list of perplexity increases (%)
    transcoders: str | None = None
    node_threshold: str | None = None
    edge_threshold: str | None = None
    max_features: int | None = None
    intervene: str | None = None
    site: str | None = None
    p_target: str | None = None  # steering, method=cav: a comma list of probabilities

    def __post_init__(self):
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None:
                _check_value(name, field_info(self.kind, name), value)
        analysis = CATALOGUE[self.kind]
        given = {f.name for f in fields(self) if getattr(self, f.name) is not None} - {"kind", "model"}
        from_rows: set[str] = set()
        if self.dataset is not None and "dataset" in analysis.optional:
            check_dataset_name(self.dataset)
            from_rows = set(analysis.row_fields)
            doubled = sorted(given & from_rows, key=list(FIELDS).index)
            if doubled:
                raise SpecError(doubled[0], f"comes from each row of the dataset; leave it out of a "
                                            f"spec with dataset= (the rows give: {', '.join(analysis.row_fields)})")
        missing = [name for name in analysis.required if name not in given | from_rows]
        if missing:
            raise SpecError(missing[0], f"required for kind '{self.kind}' but missing")
        extra = sorted(given - set(analysis.required) - set(analysis.optional))
        if extra:
            allowed = ", ".join((*analysis.required, *analysis.optional))
            raise SpecError(extra[0], f"does not apply to kind '{self.kind}' (it takes: {allowed})")
        for name, allowed in analysis.choices.items():
            value = getattr(self, name)
            if value is None:
                continue
            items = [v.strip() for v in value.split(",")] if name in analysis.list_fields else [value]
            bad = [v for v in items if v not in allowed]
            if bad:
                raise SpecError(name, f"{bad[0][:40]!r} is not one of: {', '.join(allowed)}")

    # --- the set fields, in canonical order --------------------------------------------
    def items(self) -> list[tuple[str, object]]:
        return [(n, getattr(self, n)) for n in FIELDS if getattr(self, n) is not None]

    def for_row(self, row: dict[str, str]) -> AnalysisSpec:
        """The single-prompt spec of one row of this spec's dataset (checked as any spec is):
        the row's input fields for this kind; a pair row's `clean` as a single-prompt kind's
        `prompt`, and its `answer`/`wrong` as the logit lens's target tokens."""
        kind = CATALOGUE[self.kind]
        given = {name: row[name] for name in kind.row_fields if name in row}
        if "prompt" in kind.row_fields and "prompt" not in row and "clean" in row:
            given["prompt"] = row["clean"]
        if "token" in kind.row_fields and "token" not in row and "answer" in row:
            given["token"] = listtext.join_text_items([row[name] for name in ("answer", "wrong") if name in row])
        return replace(self, dataset=None, **given)

    def with_defaults(self) -> AnalysisSpec:
        """The same spec with the kind's defaults filled in: what actually runs."""
        unset = {k: v for k, v in CATALOGUE[self.kind].defaults.items() if getattr(self, k) is None}
        return replace(self, **unset)

    # --- query strings -----------------------------------------------------------
    def to_query(self) -> str:
        return "&".join(f"{n}={quote(_encode(v), safe='')}" for n, v in self.items())

    @classmethod
    def from_query(cls, query: str) -> AnalysisSpec:
        if not isinstance(query, str):
            raise SpecError("query", f"expected a query string, got {type(query).__name__}")
        query = query.strip()
        query = query[1:] if query.startswith("?") else query
        values: dict[str, str] = {}
        for part in filter(None, query.split("&")):
            name, sep, raw = part.partition("=")
            if not sep:
                raise SpecError(name[:40] or "query", "expected key=value pairs joined by '&'")
            if _BAD_PERCENT.search(raw):
                raise SpecError(name, "invalid percent-encoding (a '%' must be followed by two hex digits)")
            if name.startswith(VIEW_PREFIX):  # view state of a share link, not an input
                continue
            if name in values:
                raise SpecError(name, "given more than once")
            values[name] = unquote_plus(raw, errors="strict")
        return cls.from_mapping(values)

    # --- JSON ----------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(dict(self.items()), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> AnalysisSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError("json", f"not valid JSON ({err.msg} at position {err.pos})") from None
        if not isinstance(data, dict):
            raise SpecError("json", "expected a JSON object of field: value")
        return cls.from_mapping(data)

    @classmethod
    def parse(cls, text: str) -> AnalysisSpec:
        """A query string or a JSON object, whichever `text` is."""
        return cls.from_json(text) if text.lstrip().startswith("{") else cls.from_query(text)

    @classmethod
    def from_mapping(cls, data: dict) -> AnalysisSpec:
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise SpecError(str(unknown[0])[:40], f"unknown field; known fields: {', '.join(FIELDS)}")
        if "kind" not in data:
            raise SpecError("kind", "missing: every spec names its analysis kind")
        kind = data["kind"]
        return cls(**{name: _decode(name, field_info(kind, name), value) for name, value in data.items()})

    # --- identity --------------------------------------------------------------
    def content_key(self, fingerprint: str, version: int) -> str:
        """Stable hash of what determines the result: kind, analysis version, model
        content (not its name), and every input and parameter, defaults included."""
        resolved = dict(self.with_defaults().items())
        resolved["model"] = fingerprint
        payload = json.dumps([resolved, version], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def targets(self) -> list[str]:
        """`token` split at commas; each keeps its leading space (' Paris'); `\\,` is a comma
        inside a token (`listtext.text_items`)."""
        return listtext.text_items(self.token or "")


def _encode(value) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def _decode(name: str, info: FieldInfo, value):
    """A query-string or JSON value, converted to the field's type."""
    if info.type == TEXT:
        if not isinstance(value, str):
            raise SpecError(name, f"expected text, got {json.dumps(value)[:40]}")
        return value
    if info.type == BOOL:
        if isinstance(value, bool) or value in ("0", "1", 0, 1):
            return bool(int(value))
        raise SpecError(name, f"expected 0 or 1, got {str(value)[:40]!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        return int(value)
    raise SpecError(name, f"expected an integer, got {str(value)[:40]!r}")


def _check_value(name: str, info: FieldInfo, value) -> None:
    expected = {TEXT: str, INT: int, BOOL: bool}[info.type]
    if not isinstance(value, expected) or (info.type == INT and isinstance(value, bool)):
        raise SpecError(name, f"expected {info.type}, got {type(value).__name__}")
    if info.type == TEXT:
        if len(value) > MAX_TEXT_CHARS:
            raise SpecError(name, f"{len(value)} characters; at most {MAX_TEXT_CHARS} are accepted")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SpecError(name, "contains characters that are not valid Unicode text") from None
        if info.check is not None:
            try:
                info.check(value)
            except ValueError as err:
                raise SpecError(name, str(err)) from None
    if info.type == INT and info.minimum is not None and value < info.minimum:
        raise SpecError(name, f"must be at least {info.minimum}, got {value}")
    if info.type == INT and info.maximum is not None and value > info.maximum:
        raise SpecError(name, f"must be at most {info.maximum}, got {value}")
