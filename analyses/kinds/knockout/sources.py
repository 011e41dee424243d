"""The source sets of an attention knockout: which key positions' edges into the query are cut.

Geva et al. 2023 ("Dissecting Recall of Factual Associations in Auto-Regressive Language
Models", §5) block the last position's attention to three sets of earlier positions: the
subject's tokens, the other (non-subject) tokens, and the last position itself. Here, for a
query position q (the prompt's last):
- `subject`: every occurrence of the subject's tokens before q;
- `other`: the positions before q that are neither BOS nor the subject's;
- `last`: q itself;
- `all`: every key but BOS (subject ∪ other ∪ last), the extreme that leaves the query
  attending to BOS alone.
BOS is never cut (`analyses.kinds.bos`): it is the attention sink that every head falls back
on, and with it kept every softmax row keeps some mass to renormalise.
"""
from __future__ import annotations

from analyses.core.catalogue import KNOCKOUT_SOURCES
from analyses.core.errors import SpecError
from analyses.kinds.bos import first_after_bos
from analyses.kinds.tokens import text_tokens, token_strings

DEFAULT_SOURCES = ("subject", "other", "last")  # Geva et al.'s three; subject only when named


def chosen_sources(source: str | None, subject: str | None) -> tuple[str, ...]:
    """The source sets a spec asks for, in the catalogue's order: its `source` list, or
    (unset) Geva et al.'s three, `subject` left out when no subject is named."""
    if source is None:
        return tuple(s for s in DEFAULT_SOURCES if s != "subject" or subject)
    asked = {s.strip() for s in source.split(",")}
    if "subject" in asked and not subject:
        raise SpecError("subject", "source 'subject' needs the subject's text (subject=France), "
                                   "or leave 'subject' out of source")
    return tuple(s for s in KNOCKOUT_SOURCES if s in asked)


def subject_positions(bridge, ids: list[int], subject: str, start: int) -> list[int]:
    """Every position (from `start`) of the subject's tokens in `ids`, all occurrences.
    The subject is looked for as the tokenizer reads it mid-sentence (' France') and at a
    text's start ('France'); a SpecError names it when neither occurs."""
    found: set[int] = set()
    for variant in dict.fromkeys((" " + subject.strip(), subject.strip(), subject)):
        needle = text_tokens(bridge, variant, prepend_bos=False)[0].tolist()
        for i in range(start, len(ids) - len(needle) + 1):
            if needle and ids[i:i + len(needle)] == needle:
                found.update(range(i, i + len(needle)))
        if found:
            return sorted(found)
    pieces = token_strings(bridge, ids)
    raise SpecError("subject", f"{subject[:60]!r} is not among the prompt's tokens before its last "
                                f"position {pieces[:40]}")


def source_positions(bridge, ids: list[int], query: int, subject: str | None) -> dict[str, list[int]]:
    """Each source set's key positions for a query at `query` (see the module docstring);
    `subject` None: the subject set is empty and `other` is every non-BOS key before the query."""
    first = first_after_bos(bridge)
    before = list(range(first, query))  # the keys a query at `query` can see, BOS aside
    subject_keys = [p for p in subject_positions(bridge, ids[:query], subject, first)] if subject else []
    return {
        "subject": subject_keys,
        "other": [p for p in before if p not in set(subject_keys)],
        "last": [query],
        "all": [*before, query],
    }
