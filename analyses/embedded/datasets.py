"""The prompt sets shipped in `data/datasets/` (the spec's `dataset=ioi` and the rest), drawn
from the embedded model's corpus code with held-out names and templates, seeded:
`python -m analyses.embedded.datasets` rewrites them.

- `ioi` (200 pairs): clean/corrupted IOI prompts differing in one name, answer = the
  indirect object, wrong = the subject (`presets.ioi_pairs`, held-out pairs and templates);
- `facts` (every planted capital, 102): "The capital of France is" against another country,
  answer and wrong the two capitals, subject the clean prompt's country (attention knockout's
  subject tokens);
- `induction` (100): random single-token words repeated, the last word left out: answer =
  that word, wrong = a word the sequence does not contain;
- `needle` (100): a code planted before ~22 story sentences and asked for: answer = the
  code's first word, wrong = a code word not in the code;
- `capital_concept` (240, labelled): story sentences about a trip to a capital city (label 1)
  or to a country (label 0), the rest of the sentence drawn alike, so the two classes end on
  the same kinds of words and a probe at the last token must read the concept that attention
  moved there;
- `name_concept` (240, labelled): sentences whose subject is a person ("young Mary", label 1)
  or an object ("the box", label 0).
The two classes' texts have the same token lengths (a label must not be readable from a
text's length, which position embeddings show at its last token).
Labelled sets are balanced and shuffled; each row is {"prompt", "label"} (the kind `probe`).
"""
from __future__ import annotations

import json

import numpy as np

from analyses.core.datasets import SHIPPED, SHIPPED_DIR
from analyses.embedded import corpus, presets
from analyses.embedded import lexicon as lx


def ioi(rng: np.random.Generator, n: int = 200) -> list[dict]:
    return presets.ioi_pairs(rng, n)


def facts(rng: np.random.Generator) -> list[dict]:
    return [dict(clean=r["prompt"], corrupted=r["corrupted"], answer=r["answer"], wrong=r["wrong"],
                 subject=r["subject"]) for r in presets.facts(rng)]


def induction(rng: np.random.Generator, n: int = 100, length: int = 12) -> list[dict]:
    words = [*lx.CODE_WORDS, *lx.NAMES, *lx.PLACES]
    rows = []
    for _ in range(n):
        seq = list(rng.choice(words, size=length + 1, replace=False))
        wrong, seq = seq[-1], seq[:-1]
        rows.append(dict(prompt=" ".join(seq + seq[:-1]), answer=" " + seq[-1], wrong=" " + wrong))
    return rows


def needle(rng: np.random.Generator, n: int = 100, filler_sentences: int = 22) -> list[dict]:
    rows = []
    for _ in range(n):
        planted = corpus.needle(rng)
        filler = corpus.story(rng, filler_sentences)
        wrong = rng.choice([w for w in lx.CODE_WORDS if w not in planted.code])
        rows.append(dict(prompt=f"{planted.statement} {filler} {planted.query}",
                         answer=" " + planted.code[0], wrong=" " + str(wrong)))
    return rows


# Templates of the labelled sets: the concept fills {x}, the rest is drawn from the lexicon
# alike for both classes; the concept sits a word or two before the end (a 3-layer model's
# previous-token heads can carry it to the last token; further back, it does not, measured).
TRIP_TEMPLATES = (  # the concept one or two words before the end, never the last word
    "{Name} went to {x} with {Friend}",
    "One day, {Name} and {Friend} flew to {x} again",
    "The {adj} {animal} lived in {x} too",
    "{Name} was very {feel} in {x} that day",
    "{Name} found a {adj} {obj} in {x} one day",
)
SUBJECT_TEMPLATES = (  # the subject mid-sentence (its first word lower case, one token), near the end
    "One day in the {place}, {x} was {feel}",
    "After that, the {animal} saw {x} there",
    "Then {x} was very {adj}",
    "At the {place}, the {adj} {animal} found {x} again",
    "On a {weather} day, {x} fell down",
)


def _fill(rng: np.random.Generator, template: str, x: str) -> str:
    name, friend = rng.choice(lx.NAMES, size=2, replace=False)
    pick = lambda items: items[int(rng.integers(len(items)))]  # noqa: E731
    text = template.format(
        x=x, Name=name, Friend=friend, his="her" if name in corpus.FEMALE else "his",
        animal=pick(lx.ANIMALS), act=pick(lx.ACTIVITIES), feel=pick(lx.FEELINGS),
        obj=pick(lx.OBJECTS), adj=pick(lx.ADJECTIVES), weather=pick(lx.WEATHER), place=pick(lx.PLACES))
    return text[0].upper() + text[1:]  # "the box was ..." opens a sentence


def labelled(rng: np.random.Generator, templates, concept, other, n_per_class: int) -> list[dict]:
    """`n_per_class` sentences with the concept (`concept(rng)` fills the slot, label 1) and as
    many without (`other(rng)`, label 0), each class spread evenly over `templates`, shuffled."""
    rows = []
    for label, fill_with in (("1", concept), ("0", other)):
        for i in range(n_per_class):
            rows.append(dict(prompt=_fill(rng, templates[i % len(templates)], fill_with(rng)), label=label))
    return [rows[i] for i in rng.permutation(len(rows))]


# The two classes fill the slot with as many tokens (a capital or a country: one each; "young"
# and a name, or "the" and an object: two each), so a text's length, which position embeddings
# make readable at its last token, says nothing of its label.
def capital_concept(rng: np.random.Generator, n_per_class: int = 120) -> list[dict]:
    return labelled(rng, TRIP_TEMPLATES,
                    lambda r: lx.CAPITALS[int(r.integers(len(lx.CAPITALS)))][1],
                    lambda r: lx.CAPITALS[int(r.integers(len(lx.CAPITALS)))][0], n_per_class)


def name_concept(rng: np.random.Generator, n_per_class: int = 120) -> list[dict]:
    return labelled(rng, SUBJECT_TEMPLATES,
                    lambda r: "young " + lx.NAMES[int(r.integers(len(lx.NAMES)))],
                    lambda r: "the " + lx.OBJECTS[int(r.integers(len(lx.OBJECTS)))], n_per_class)


BUILDERS = {"ioi": ioi, "facts": facts, "induction": induction, "needle": needle,
            "capital_concept": capital_concept, "name_concept": name_concept}
assert tuple(BUILDERS) == SHIPPED, "core.datasets.SHIPPED names the sets built here"


def build(seed: int = 2025) -> dict[str, list[dict]]:
    rng = np.random.default_rng(seed)
    return {name: builder(rng) for name, builder in BUILDERS.items()}


def write(seed: int = 2025) -> None:
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    for name, rows in build(seed).items():
        path = SHIPPED_DIR / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"wrote {path} ({len(rows)} rows)")


if __name__ == "__main__":
    write()
