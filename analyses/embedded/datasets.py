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
  code's first word, wrong = a code word not in the code.
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


BUILDERS = {"ioi": ioi, "facts": facts, "induction": induction, "needle": needle}
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
