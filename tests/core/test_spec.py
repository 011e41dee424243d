"""The analysis spec: exact round trips through links and JSON, and errors that name the field."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyses import AnalysisSpec
from analyses.core.errors import SpecError

# Any text a user may paste, surrogates aside (they are not encodable Unicode).
user_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60,
) | st.sampled_from([" Paris", "a&b=c#d%e", "  lead and trail  ", "line\nbreak", "😀 emoji", "%20"])


@settings(max_examples=200, deadline=None)
@given(prompt=user_text, token=user_text, top_k=st.integers(1, 100), final_norm=st.booleans())
def test_query_and_json_round_trip_exactly(prompt, token, top_k, final_norm):
    spec = AnalysisSpec(kind="logit_lens", prompt=prompt, token=token, top_k=top_k,
                        final_norm=final_norm)
    assert AnalysisSpec.from_query(spec.to_query()) == spec
    assert AnalysisSpec.from_json(spec.to_json()) == spec
    assert AnalysisSpec.parse(spec.to_query()) == AnalysisSpec.parse(spec.to_json()) == spec


def test_leading_space_of_an_answer_token_survives_a_link():
    spec = AnalysisSpec.from_query("kind=logit_lens&prompt=The%20capital%20of%20France%20is&token=%20Paris")
    assert spec.token == " Paris"
    assert "token=%20Paris" in spec.to_query()
    assert spec.targets() == [" Paris"]


def test_plus_in_a_link_is_a_space_and_a_literal_plus_survives():
    assert AnalysisSpec.from_query("kind=logit_lens&prompt=a+b").prompt == "a b"
    spec = AnalysisSpec(kind="logit_lens", prompt="1+1=2")
    assert AnalysisSpec.from_query(spec.to_query()).prompt == "1+1=2"


def test_question_mark_prefix_is_accepted():
    assert AnalysisSpec.from_query("?kind=logit_lens&prompt=hi").prompt == "hi"


@pytest.mark.parametrize("query, field, words", [
    ("kind=nope&prompt=x", "kind", "unknown kind"),
    ("kind=logit_lens&prompt=x&colour=red", "colour", "unknown field"),
    ("kind=logit_lens&prompt=x&prompt=y", "prompt", "more than once"),
    ("kind=logit_lens&prompt=x&top_k=abc", "top_k", "integer"),
    ("kind=logit_lens&prompt=x&top_k=0", "top_k", "at least 1"),
    ("kind=logit_lens", "prompt", "required"),
    ("kind=logit_lens&prompt=x&layer=2", "layer", "does not apply"),
    ("kind=logit_lens&prompt=100%zz", "prompt", "percent-encoding"),
    ("kind=logit_lens&prompt=x&final_norm=yes", "final_norm", "0 or 1"),
    ("just some words", "just some words", "key=value"),
    ("prompt=x", "kind", "missing"),
])
def test_bad_links_name_the_field(query, field, words):
    with pytest.raises(SpecError) as err:
        AnalysisSpec.from_query(query)
    assert err.value.field == field
    assert words in str(err.value)


@pytest.mark.parametrize("text, field", [
    ("[1, 2]", "json"), ("{not json", "json"), ('{"kind": "logit_lens", "prompt": 3}', "prompt"),
])
def test_bad_json_names_the_problem(text, field):
    with pytest.raises(SpecError) as err:
        AnalysisSpec.from_json(text)
    assert err.value.field == field


def test_overlong_text_is_refused_with_the_limit():
    with pytest.raises(SpecError, match="at most 20000"):
        AnalysisSpec(kind="logit_lens", prompt="x" * 20_001)


def test_key_depends_on_content_not_spelling():
    short = AnalysisSpec(kind="logit_lens", prompt="Hello")
    explicit = AnalysisSpec(kind="logit_lens", prompt="Hello", top_k=10, final_norm=True)
    assert short.content_key("fp1", 1) == explicit.content_key("fp1", 1)
    assert short.content_key("fp1", 1) != short.content_key("fp2", 1)  # another model's weights
    assert short.content_key("fp1", 1) != short.content_key("fp1", 2)  # another analysis version
    assert short.content_key("fp1", 1) != AnalysisSpec(kind="logit_lens", prompt="Hello ").content_key("fp1", 1)
    # the model's name does not enter the key, its fingerprint does
    renamed = AnalysisSpec(kind="logit_lens", prompt="Hello", model="other-name")
    assert renamed.content_key("fp1", 1) == short.content_key("fp1", 1)


def test_json_is_a_flat_object_of_the_set_fields():
    spec = AnalysisSpec(kind="logit_lens", prompt="hi", top_k=3)
    assert json.loads(spec.to_json()) == {"kind": "logit_lens", "model": "default", "prompt": "hi", "top_k": 3}


# --------------------------------------------------------------------------- comma lists of tokens
# `token` lists target tokens separated by commas; `\,` is a comma inside a token, `\\` a
# backslash, and a backslash before a space keeps a token made only of spaces.
TRICKY_TOKENS = [",", " ", " ,", "\\", ",,", "\\,", " \\ ", "\t", "a\\b", ", ", "  "]


@pytest.mark.parametrize("answer", TRICKY_TOKENS)
@pytest.mark.parametrize("wrong", [" Paris", ","])
def test_tricky_targets_round_trip_through_query_and_json(answer, wrong):
    from analyses.core.listtext import join_text_items

    spec = AnalysisSpec(kind="logit_lens", prompt="x", token=join_text_items([answer, wrong]))
    for back in (AnalysisSpec.from_query(spec.to_query()), AnalysisSpec.from_json(spec.to_json())):
        assert back.targets() == [answer, wrong]


@settings(max_examples=200, deadline=None)
@given(tokens=st.lists(st.text(st.sampled_from(", \\\tab"), min_size=1, max_size=4), min_size=1, max_size=4))
def test_any_list_of_tokens_round_trips(tokens):
    from analyses.core.listtext import join_text_items

    spec = AnalysisSpec(kind="logit_lens", prompt="x", token=join_text_items(tokens))
    assert AnalysisSpec.from_query(spec.to_query()).targets() == tokens


@pytest.mark.parametrize("token, targets", [
    ("%20Paris,%20London", [" Paris", " London"]),
    ("%20Paris,", [" Paris"]),  # a trailing comma, as a form leaves it
    ("a,,b", ["a", "b"]),
    ("%20Paris,%20,%20London", [" Paris", " London"]),  # a blank item is no token
    ("a%5Cb", ["a\\b"]),  # a backslash before another character stays as written
    ("%5C", ["\\"]),
])
def test_existing_links_keep_their_targets(token, targets):
    assert AnalysisSpec.from_query(f"kind=logit_lens&prompt=x&token={token}").targets() == targets


@pytest.mark.parametrize("answer", [",", " ,", ",,", "\\", "a,b"])
def test_a_dataset_row_keeps_its_answer_first(answer):
    spec = AnalysisSpec(kind="logit_lens", dataset="ioi")
    row = spec.for_row({"clean": "x", "answer": answer, "wrong": " Paris"})
    assert row.targets() == [answer, " Paris"]


@pytest.mark.parametrize("answer", TRICKY_TOKENS)
def test_a_tricky_single_answer_round_trips(answer):
    spec = AnalysisSpec(kind="dla", prompt="x", answer=answer, wrong=" Paris")
    for back in (AnalysisSpec.from_query(spec.to_query()), AnalysisSpec.from_json(spec.to_json())):
        assert (back.answer, back.wrong) == (answer, " Paris")


def test_a_share_links_view_keys_are_not_part_of_its_spec():
    """`view.*` keys (what a page shows of a result, e.g. the attention page's one head) ride
    along a share link: a query string copied from the browser still gives the spec."""
    spec = AnalysisSpec(kind="attention", prompt="When Mary")
    assert AnalysisSpec.from_query(spec.to_query() + "&view.layer=1&view.head=0") == spec
    with pytest.raises(SpecError, match="view"):  # a mapping is the spec's own fields only
        AnalysisSpec.from_mapping({"kind": "attention", "prompt": "x", "view.head": "0"})
