"""Text and token generators for the embedded model's training and test data.

Every generator takes a `numpy.random.Generator`, so a seed fixes the data.
Four kinds of text teach four behaviours that the analyses can then find:

- stories: simple past-tense English (plain text, and filler for needles);
- IOI sentences: "When Mary and John went to the store, John gave a drink to Mary."
  (Wang et al. 2022), from template pieces of which some are held out for tests;
- facts: "The capital of France is Paris." for a fixed set of countries;
- needles: a code planted early in a long story and asked for at the end
  ("The blue code: tiger pencil walnut." ... "The blue code:"), which only a
  copying (induction / retrieval) circuit can answer.

Stories never contain ":" or the code words, so a needle's answer can come
from nowhere but the planted span.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from analyses.embedded import lexicon as lx

HE, SHE = ("he", "his", "him"), ("she", "her", "her")
FEMALE = frozenset({"Mary", "Alice", "Anna", "Emma", "Lily", "Kate", "Lucy", "Sarah", "Laura",
                    "Mia", "Zoe", "Ella", "Eva", "Nina", "Ruth", "Grace", "Helen", "Jane", "Linda"})


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


# --- stories -----------------------------------------------------------------

_STORY_SENTENCES = (
    "{Name} liked to {act} in the {place}.",
    "One day, {Name} went to the {place} with {his} {animal}.",
    "{He_} saw a {adj} {animal} near the {place}.",
    "The {animal} was very {feel}.",
    "{Name} found a {adj} {obj} under a tree.",
    "{He_} gave the {obj} to {his} friend {Friend}.",
    "{Friend} smiled and said thank you.",
    "The day was {weather}, so they went to the {place}.",
    "{Name} and {Friend} wanted to {act} together.",
    "After that, {he} felt {feel} and went home.",
    "{His_} mother made a {adj} {obj} for {him}.",
    "At the {place}, {Name} met a {adj} {animal}.",
    "{He_} wanted to {act}, but it was too {weather}.",
    "They played with the {obj} all day long.",
    "The {adj} {animal} ran to the {place}.",
    "{Friend} was {feel} because the {obj} was lost.",
    "{Name} looked for the {obj} in the {place}.",
    "In the end, they found it and laughed.",
    "Every morning, {Name} liked to {act} with {Friend}.",
    "{He_} learned that friends help each other.",
)
_OPENINGS = (
    "Once upon a time, there was a {adj} {kid} named {Name}.",
    "There was once a {adj} {kid} called {Name}.",
    "Long ago, a {adj} {kid} named {Name} lived near a {place}.",
)


def story(rng: np.random.Generator, n_sentences: int) -> str:
    """A short story: an opening line, then `n_sentences - 1` random sentences."""
    name, friend = rng.choice(lx.NAMES, size=2, replace=False)
    he, his, him = SHE if name in FEMALE else HE
    slots = dict(
        Name=name, Friend=friend, he=he, his=his, him=him, He_=he.capitalize(),
        His_=his.capitalize(), kid="girl" if name in FEMALE else "boy",
    )

    def fill(template: str) -> str:
        return template.format(
            **slots, act=_pick(rng, lx.ACTIVITIES), place=_pick(rng, lx.PLACES),
            animal=_pick(rng, lx.ANIMALS), adj=_pick(rng, lx.ADJECTIVES),
            feel=_pick(rng, lx.FEELINGS), obj=_pick(rng, lx.OBJECTS),
            weather=_pick(rng, lx.WEATHER),
        )

    lines = [fill(_pick(rng, _OPENINGS))]
    lines += [fill(_pick(rng, _STORY_SENTENCES)) for _ in range(n_sentences - 1)]
    return " ".join(lines)


# --- indirect object identification -----------------------------------------

IOI_OPENINGS = (
    "When {A} and {B} went to the {place},",
    "After {A} and {B} arrived at the {place},",
    "While {A} and {B} were working at the {place},",
    "Once {A} and {B} got to the {place},",
    "Then, {A} and {B} went to the {place}.",
    "Later, {A} and {B} had lunch at the {place}.",
    "When {A} and {B} left the {place},",
    "Since {A} and {B} were at the {place},",
)
IOI_ACTIONS = (
    "{S} gave a {obj} to",
    "{S} handed the {obj} to",
    "{S} passed the {obj} to",
    "{S} threw the {obj} to",
    "{S} brought a {obj} to",
    "{S} showed the {obj} to",
    "{S} sent a letter to",
    "{S} said goodbye to",
)


@dataclass(frozen=True)
class IOISplit:
    """Which name pairs and template pieces are kept out of training."""

    train_pairs: tuple[tuple[str, str], ...]
    test_pairs: tuple[tuple[str, str], ...]
    train_templates: tuple[tuple[int, int], ...]  # (opening index, action index)
    test_templates: tuple[tuple[int, int], ...]


def ioi_split(seed: int = 1234, test_share: float = 0.2) -> IOISplit:
    """Hold out a fixed share of unordered name pairs and of template combinations."""
    rng = np.random.default_rng(seed)
    pairs = [(a, b) for i, a in enumerate(lx.NAMES) for b in lx.NAMES[i + 1:]]
    templates = list(product(range(len(IOI_OPENINGS)), range(len(IOI_ACTIONS))))
    rng.shuffle(pairs)
    rng.shuffle(templates)
    n_pairs, n_templates = int(len(pairs) * test_share), int(len(templates) * test_share)
    return IOISplit(
        train_pairs=tuple(pairs[n_pairs:]), test_pairs=tuple(pairs[:n_pairs]),
        train_templates=tuple(templates[n_templates:]), test_templates=tuple(templates[:n_templates]),
    )


@dataclass(frozen=True)
class IOIItem:
    prompt: str  # ends just before the indirect object: "... John gave a drink to"
    io: str  # the right answer (indirect object), without its leading space
    s: str  # the subject, the wrong answer


def ioi_item(rng: np.random.Generator, pairs, templates) -> IOIItem:
    """One IOI prompt; ABBA and BABA orders equally often."""
    a, b = _pick(rng, pairs)
    io, s = (a, b) if rng.random() < 0.5 else (b, a)
    first, second = (io, s) if rng.random() < 0.5 else (s, io)
    opening, action = _pick(rng, templates)
    text = IOI_OPENINGS[opening].format(A=first, B=second, place=_pick(rng, lx.PLACES))
    text += " " + IOI_ACTIONS[action].format(S=s, obj=_pick(rng, lx.OBJECTS))
    return IOIItem(prompt=text, io=io, s=s)


# --- facts ---------------------------------------------------------------------

FACT_TEMPLATE = "The capital of {country} is"


def fact_sentence(rng: np.random.Generator) -> str:
    country, capital = _pick(rng, lx.CAPITALS)
    return f"{FACT_TEMPLATE.format(country=country)} {capital}."


# --- needles --------------------------------------------------------------------

@dataclass(frozen=True)
class Needle:
    key: str
    code: tuple[str, ...]  # the planted value, one word (= one token) each

    @property
    def statement(self) -> str:
        return f"The {self.key} code: {' '.join(self.code)}."

    @property
    def query(self) -> str:
        return f"The {self.key} code:"


def needle(rng: np.random.Generator, length: int = 3) -> Needle:
    return Needle(key=_pick(rng, lx.CODE_KEYS),
                  code=tuple(rng.choice(lx.CODE_WORDS, size=length, replace=False)))
