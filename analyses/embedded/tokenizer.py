"""A byte-level BPE tokenizer trained on the project's own generated text.

Byte-level, so any prompt a user types can be encoded; trained on text in which
every lexicon word is frequent, so each of them (with its leading space) ends up
a single token. `check_single_tokens` proves the second property.
"""
from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from analyses.embedded import corpus
from analyses.embedded import lexicon as lx

BOS = "<|endoftext|>"  # id 0: begins every sequence, as in GPT-2


def single_token_words() -> list[str]:
    """Words that must each be one token, written as they appear after a space."""
    words = [*lx.NAMES, *lx.CODE_WORDS, *lx.CODE_KEYS, *lx.PLACES, *lx.OBJECTS, "code", "capital"]
    words += [w for pair in lx.CAPITALS for w in pair]
    return sorted({" " + w for w in words})


def training_text(rng: np.random.Generator, n_stories: int = 4000, word_repeats: int = 400):
    """Generated stories, IOI and fact sentences, plus each must-be-single word many times."""
    split = corpus.ioi_split()
    for _ in range(n_stories):
        yield corpus.story(rng, int(rng.integers(4, 12)))
        item = corpus.ioi_item(rng, split.train_pairs, split.train_templates)
        yield f"{item.prompt} {item.io}."
        yield corpus.fact_sentence(rng)
        yield corpus.needle(rng).statement
    for word in single_token_words():
        yield (word * word_repeats).strip()


def train_tokenizer(vocab_size: int = 2048, seed: int = 0) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(training_text(np.random.default_rng(seed)), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BOS, eos_token=BOS, unk_token=BOS,
        model_max_length=256, clean_up_tokenization_spaces=False,
    )
    check_single_tokens(tokenizer)
    return tokenizer


def check_single_tokens(tokenizer) -> None:
    split = [w for w in single_token_words() if len(tokenizer.encode(w, add_special_tokens=False)) != 1]
    if split:
        raise ValueError(f"{len(split)} lexicon words are not single tokens: {split[:10]}")
