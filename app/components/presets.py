"""One-click examples from the prompt suites in `data/prompts.json`.

The file holds suites of examples (`ioi`, `facts`, `needle`, `induction`, `text`), each
entry named by spec fields (`prompt`, `clean`, `corrupted`, `answer`, `wrong`). A kind
takes the entries whose fields it accepts; where a kind names its inputs differently an
adapter in `ADAPTERS` maps (suite, entry) to its fields: the logit lens reads
`answer`/`wrong` as target tokens, the patching kinds read a fact's `prompt` as the clean
prompt, the heads page picks the detector a suite was written for.

Examples are taken round-robin across suites (the first of each suite, then the second…),
so the first few, which the Home page shows, come from different suites.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from analyses.core.catalogue import CATALOGUE
from analyses.core.listtext import join_text_items

PROMPTS_FILE = Path(__file__).resolve().parents[2] / "data" / "prompts.json"
PROMPTS_ENV = "ANALYSES_PROMPTS"  # another suites file (tests point it at a fixed one)
PER_SUITE = 2  # examples taken from each suite
MAX_PRESETS = 8
LABEL_CHARS = 38


@dataclass(frozen=True)
class Preset:
    label: str  # plain text: escape before drawing
    suite: str
    fields: dict = field(default_factory=dict)  # spec fields, without kind and model


def _prompt(entry: dict) -> str | None:
    return entry.get("prompt") or entry.get("clean")


def _logit_lens(suite: str, entry: dict) -> dict:
    targets = [entry[k] for k in ("answer", "wrong") if entry.get(k)]
    return {"prompt": _prompt(entry), **({"token": join_text_items(targets)} if targets else {})}


def _patching(suite: str, entry: dict) -> dict:
    """A pair of prompts: `ioi` entries name theirs clean/corrupted; `facts` entries hold
    the clean prompt under `prompt` and a corrupted one of the same shape."""
    return {"clean": _prompt(entry), **{k: entry.get(k) for k in ("corrupted", "answer", "wrong")}}


def _dla(suite: str, entry: dict) -> dict:
    return {"prompt": _prompt(entry), "answer": entry.get("answer"), "wrong": entry.get("wrong")}


def _heads(suite: str, entry: dict) -> dict:
    """The detector a suite was written for; only previous_token reads a prompt (the others
    build their own token sequences), so plain-text suites ask for it on their prompt."""
    if suite == "needle":
        return {"detector": "retrieval"}
    if suite == "induction":
        return {"detector": "induction,duplicate_token"}
    if "clean" in entry:  # patching pairs: their prompts say nothing about heads
        return {}
    return {"detector": "previous_token", "prompt": entry.get("prompt")}


def _neurons(suite: str, entry: dict) -> dict:
    """Which neurons promote the entry's answer, and which fire on its prompt."""
    answer = entry.get("answer")
    token = {"token": join_text_items([answer])} if answer else {}
    return {**token, "prompt": _prompt(entry)}


def _attention(suite: str, entry: dict) -> dict:
    return {"prompt": _prompt(entry)}


FACT_SUBJECT = re.compile(r"^The capital of (?P<subject>.+) is$")  # the facts suite's one template


def _knockout(suite: str, entry: dict) -> dict:
    """A prompt and its answer; a fact also names its subject (the country), whose tokens
    are attention knockout's `subject` source set."""
    found = FACT_SUBJECT.match(_prompt(entry) or "") if suite == "facts" else None
    subject = {"subject": found["subject"]} if found else {}
    return {"prompt": _prompt(entry), "answer": entry.get("answer"), **subject}


# The embedded model card's top heads for the two behaviours the knockout presets test.
RETRIEVAL_HEADS = "L1H7,L1H6,L1H5,L1H3"  # the top 4 by retrieval score: recall falls to 17%
IOI_HEAD = "L0H0"  # patching its last-position output restores the whole logit difference


def _steering(suite: str, entry: dict) -> dict:
    """The steering suite as written; a fact steered toward another country's capital (the
    prompt asks for the corrupted country, the vector points at the clean one); IOI and
    needle prompts with the heads the model card names knocked out."""
    if suite == "steering":
        return entry
    if suite == "facts" and entry.get("corrupted"):
        return {"prompt": entry["corrupted"], "positive": entry["prompt"], "negative": entry["corrupted"],
                "layer": "2", "coeff": "0,0.5,1", "answer": entry.get("answer"),
                "wrong": entry.get("wrong")}
    if suite == "ioi":
        return {"prompt": _prompt(entry), "answer": entry.get("answer"), "wrong": entry.get("wrong"),
                "ablate": IOI_HEAD}
    if suite == "needle":
        return {"prompt": _prompt(entry), "answer": entry.get("answer"), "ablate": RETRIEVAL_HEADS}
    return {}


# kind -> (suite, entry) -> spec fields. Kinds not listed keep the entry fields they accept.
ADAPTERS: dict[str, Callable[[str, dict], dict]] = {
    "logit_lens": _logit_lens,
    "heads": _heads,
    "activation_patching": _patching,
    "attribution_patching": _patching,
    "neurons": _neurons,
    "dla": _dla,
    "attention": _attention,
    "steering": _steering,
    "ablation_sweep": _dla,  # a prompt and its answer and wrong tokens, as attribution reads them
    "circuit": _patching,
    "knockout": _knockout,
    "features": lambda suite, entry: {"prompt": _prompt(entry), "dictionary": FEATURE_SITES.get(suite)},
    "latent_index": lambda suite, entry: {"dictionary": FEATURE_SITES.get(suite)},
}
# the embedded model's shipped dictionary each suite's examples read (a residual SAE, an
# attention-output SAE where heads move names, a transcoder)
FEATURE_SITES = {"ioi": "blocks.1.attn.hook_z", "facts": "blocks.1.hook_resid_post", "text": "blocks.1.mlp"}
# suites written for these kinds alone
ONLY_FOR = {"steering": ("steering",), "gcav": ("steering",), "concepts": ("probe",)}


def load_suites(path: Path | None = None) -> dict[str, list[dict]]:
    """The suites (of `$ANALYSES_PROMPTS`, else `PROMPTS_FILE`, unless `path` is given), or
    {} when the file is missing or unreadable (pages then show no examples)."""
    if path is None:
        path = Path(os.environ.get(PROMPTS_ENV) or PROMPTS_FILE)
    try:
        stat = path.stat()
    except OSError:
        return {}
    return _read(str(path), stat.st_mtime_ns, stat.st_size)


_READ_CACHE: dict[tuple, dict] = {}


def _read(path: str, mtime_ns: int, size: int) -> dict[str, list[dict]]:
    key = (path, mtime_ns, size)
    if key not in _READ_CACHE:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        suites = {name: [e for e in entries if isinstance(e, dict)]
                  for name, entries in (data.items() if isinstance(data, dict) else [])
                  if isinstance(entries, list)}
        _READ_CACHE.clear()
        _READ_CACHE[key] = suites
    return _READ_CACHE[key]


def presets_for(kind: str, suites: dict[str, list[dict]] | None = None) -> list[Preset]:
    """The examples that make a valid spec for `kind`: up to `PER_SUITE` from each suite,
    taken round-robin across suites, without repeats."""
    suites = load_suites() if suites is None else suites
    analysis = CATALOGUE[kind]
    accepted = set(analysis.required) | set(analysis.optional)
    adapt = ADAPTERS.get(kind, lambda suite, entry: entry)
    per_suite: list[list[Preset]] = []
    seen: list[dict] = []
    for suite, entries in suites.items():
        if kind not in ONLY_FOR.get(suite, (kind,)):
            continue
        taken: list[Preset] = []
        for entry in entries if isinstance(entries, list) else []:
            if len(taken) == PER_SUITE:
                break
            if not isinstance(entry, dict):
                continue
            fields = {k: v for k, v in adapt(suite, entry).items()
                      if k in accepted and isinstance(v, str) and v}
            if not fields or fields in seen or not all(n in fields for n in analysis.required):
                continue
            seen.append(fields)
            taken.append(Preset(_label(suite, fields), suite, fields))
        per_suite.append(taken)
    found = [group[i] for i in range(PER_SUITE) for group in per_suite if i < len(group)]
    return found[:MAX_PRESETS]


def _label(suite: str, fields: dict) -> str:
    """`suite: the prompt…`, or the fields' values where there is no prompt (`needle: retrieval`)."""
    text = next((fields[k] for k in ("prompt", "clean") if k in fields),
                ", ".join(v.replace(",", ", ") for v in fields.values()))
    text = " ".join(text.split())
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1].rstrip() + "…"
    return f"{suite}: {text}"
