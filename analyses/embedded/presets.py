"""The prompt suite shipped as `data/prompts.json`: one-click examples for every
page of the app and fixed inputs for tests, drawn from held-out items.

`python -m analyses.embedded.presets` rewrites the file (seeded).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analyses.embedded import corpus
from analyses.embedded import lexicon as lx

OUT = Path(__file__).resolve().parents[2] / "data" / "prompts.json"


def ioi_pairs(rng: np.random.Generator, n: int) -> list[dict]:
    """Held-out IOI prompts with a corrupted twin: the subject swapped for the IO,
    so the two prompts have the same tokens but for one name."""
    split = corpus.ioi_split()
    items = []
    for _ in range(n):
        item = corpus.ioi_item(rng, split.test_pairs, split.test_templates)
        head, _, tail = item.prompt.rpartition(f" {item.s} ")
        items.append(dict(clean=item.prompt, corrupted=f"{head} {item.io} {tail}",
                          answer=" " + item.io, wrong=" " + item.s))
    return items


def facts(rng: np.random.Generator) -> list[dict]:
    """Every planted fact, with a corrupted twin asking for another country."""
    rows = []
    for i, (country, capital) in enumerate(lx.CAPITALS):
        other, other_capital = lx.CAPITALS[(i + 1 + int(rng.integers(len(lx.CAPITALS) - 1))) % len(lx.CAPITALS)]
        rows.append(dict(prompt=corpus.FACT_TEMPLATE.format(country=country), answer=" " + capital,
                         corrupted=corpus.FACT_TEMPLATE.format(country=other), wrong=" " + other_capital,
                         subject=country))
    return rows


def needles(rng: np.random.Generator, n: int, filler_sentences: int = 22) -> list[dict]:
    rows = []
    for _ in range(n):
        planted = corpus.needle(rng)
        filler = corpus.story(rng, filler_sentences)
        rows.append(dict(prompt=f"{planted.statement} {filler} {planted.query}",
                         answer=" " + planted.code[0], code=" " + " ".join(planted.code)))
    return rows


def induction(rng: np.random.Generator, n: int, length: int = 12) -> list[dict]:
    """Random words (each one token) repeated: text that re-tokenizes to the same ids."""
    words = [*lx.CODE_WORDS, *lx.NAMES, *lx.PLACES]
    rows = []
    for _ in range(n):
        seq = " ".join(rng.choice(words, size=length, replace=False))
        rows.append(dict(prompt=f"{seq} {seq}"))
    return rows


# Measured on the embedded model: the layer-2 difference Germany − France, added at every
# position with coefficient 1, turns " Paris" into " Berlin"; at 2 the text degrades.
STEERING = [{"prompt": "The capital of France is", "positive": "The capital of Germany is",
             "negative": "The capital of France is", "layer": "2", "coeff": "0,0.25,0.5,0.75,1,2",
             "answer": " Berlin", "wrong": " Paris"}]
# The same contrast with GCAV (`method=cav`): the probe's direction at the mean difference's
# norm for each coefficient, and two targets, the concept added (0.9) and removed (0.01).
GCAV = [{**STEERING[0], "method": "cav", "coeff": "0,0.5,1", "p_target": "0.9,0.01"}]
# The labelled sets a probe trains on (`probe` kind)
CONCEPTS = [{"dataset": "capital_concept"}, {"dataset": "name_concept"}]


def build(seed: int = 2024) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "steering": STEERING,
        "ioi": ioi_pairs(rng, 12),
        "facts": facts(rng),
        "needle": needles(rng, 4),
        "induction": induction(rng, 4),
        "text": [{"prompt": p} for p in (
            "Once upon a time, there was a little girl named",
            "One day, Tom went to the park with his",
            "The dog was very",
        )],
        "gcav": GCAV,
        "concepts": CONCEPTS,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")
