"""Token previews match what the loaded model reads, on every tokenizer family, torch-free."""
import pytest

from analyses.kinds.tokens import prompt_tokens, token_strings
from analyses.runtime import models
from analyses.runtime.preview import preview, spacing_hint

TEXTS = ["When Mary and John went to the store, John gave a drink to", " Lily went home.", "a+b=c\n  ok"]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox", "qwen2"])
@pytest.mark.parametrize("text", TEXTS)
def test_a_prompts_preview_is_the_models_own_tokens(tiny_model_dir, arch, text):
    ref = str(tiny_model_dir(arch))
    bridge = models.load(ref).bridge
    expected = token_strings(bridge, prompt_tokens(bridge, text)[0])
    assert preview(ref, text).tokens == expected


@pytest.mark.parametrize("text", TEXTS)
def test_the_preview_matches_stories260k_sentencepiece(stories260k_dir, text):
    ref = str(stories260k_dir / "stories260K.bin")
    bridge = models.load(ref).bridge
    expected = token_strings(bridge, prompt_tokens(bridge, text)[0])
    assert preview(ref, text).tokens == expected


def test_an_answer_without_its_leading_space_is_pointed_out():
    hint = spacing_hint("default", "Paris")
    assert hint is not None and "' Paris'" in hint and "no leading space" in hint
    assert spacing_hint("default", " Paris") is None
    assert preview("default", " Paris", with_bos=False).tokens == [" Paris"]


def test_no_preview_for_an_unknown_model_and_no_error():
    assert preview("no-such-org/no-such-model", "Hi") is None
