"""Token previews match what the loaded model reads, on every tokenizer family, torch-free."""
import pytest
import torch

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


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox", "qwen2"])
def test_typed_special_token_text_is_plain_text_on_every_model(tiny_model_dir, arch):
    """One policy: a special token's spelling typed into a prompt is read as its characters;
    the only special token is the BOS the analyses put first. The preview says the same."""
    ref = str(tiny_model_dir(arch))
    bridge = models.load(ref).bridge
    text = "Hi<|endoftext|> there"
    tokens = prompt_tokens(bridge, text)[0].tolist()
    special = set(bridge.tokenizer.all_special_ids)
    assert tokens[0] in special and not special & set(tokens[1:]), tokens
    assert "".join(token_strings(bridge, prompt_tokens(bridge, text)[0])[1:]) == text
    assert preview(ref, text).tokens == token_strings(bridge, prompt_tokens(bridge, text)[0])
    plain = bridge.to_tokens("Hi there", prepend_bos=True)[0].tolist()  # no special text: as TL reads it
    assert prompt_tokens(bridge, "Hi there")[0].tolist() == plain


def test_stories260k_reads_special_token_text_as_text_too(stories260k_dir):
    ref = str(stories260k_dir / "stories260K.bin")
    bridge = models.load(ref).bridge
    tokens = prompt_tokens(bridge, "<s> Once upon a time")[0].tolist()
    assert tokens[0] == bridge.tokenizer.bos_token_id and bridge.tokenizer.bos_token_id not in tokens[1:]
    assert preview(ref, "<s> Once upon a time").tokens == token_strings(bridge, torch.tensor(tokens))
