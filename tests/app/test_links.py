"""Links: building share URLs and parsing query parameters back into specs."""
from urllib.parse import parse_qsl

import pytest

from analyses import AnalysisSpec
from app import links


def spec(**fields):
    return AnalysisSpec(kind="logit_lens", **{"prompt": "The capital of France is", **fields})


def test_params_round_trip_through_parse():
    original = spec(token=" Paris, London", top_k=5, final_norm=False, model="gpt2")
    raw = {name: [value] for name, value in links.params(original).items()}
    assert links.parse(raw, "logit_lens").spec == original


def test_share_url_is_page_path_plus_spec_query():
    s = spec(token=" Paris")
    url = links.share_url(s, "http://host:9/")
    assert url == f"http://host:9/logit_lens?{s.to_query()}"
    assert "token=%20Paris" in url
    assert AnalysisSpec.from_query(url.split("?", 1)[1]) == s


@pytest.mark.parametrize("context_url, base", [
    (None, "http://localhost:8501"),
    ("http://h:1/logit_lens", "http://h:1"),
    ("http://h:1/logit_lens/", "http://h:1"),
    ("https://h/prefix/logit_lens", "https://h/prefix"),
    ("http://h:1", "http://h:1"),
    ("http://h:1/?x=1", "http://h:1"),
])
def test_app_base(context_url, base):
    assert links.app_base(context_url) == base


def test_blank_query_is_a_blank_page():
    parsed = links.parse({}, "logit_lens")
    assert parsed.empty and parsed.spec is None and parsed.error is None


def test_kind_defaults_to_the_page():
    assert links.parse({"prompt": ["Hi"]}, "logit_lens").spec == AnalysisSpec(kind="logit_lens",
                                                                              prompt="Hi")


@pytest.mark.parametrize("raw, field", [
    ({"prompt": ["a"], "top_k": ["abc"]}, "top_k"),
    ({"prompt": ["a"], "top_k": ["0"]}, "top_k"),
    ({"prompt": ["a"], "bogus": ["1"]}, "bogus"),
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": ["a"], "final_norm": ["2"]}, "final_norm"),
    ({"kind": ["nope"], "prompt": ["a"]}, "kind"),
    ({"prompt": ["a"], "clean": ["b"]}, "clean"),
])
def test_bad_links_give_readable_errors(raw, field):
    parsed = links.parse(raw, "logit_lens")
    assert parsed.spec is None
    assert parsed.error.startswith("This link cannot be opened")
    assert field in parsed.error.replace("\\", "")


def test_read_query_params_accepts_apptest_dicts():
    assert links.read_query_params({"a": "1", "b": ["2", "3"]}) == {"a": ["1"], "b": ["2", "3"]}


def test_snippet_reproduces_the_spec():
    s = spec(token=" Paris, 'x'")
    namespace = {}
    code = links.snippet(s)
    query = code.split("from_query(", 1)[1].split("))", 1)[0]
    exec(f"q = {query}", namespace)  # the literal in the snippet is the spec's query
    assert AnalysisSpec.from_query(namespace["q"]) == s
    assert "from analyses import AnalysisSpec, compute" in code


def test_a_link_without_the_required_fields_is_a_draft():
    parsed = links.parse({"model": ["gpt2"], "top_k": ["3"]}, "logit_lens")
    assert parsed.spec is None and parsed.error is None
    assert parsed.draft == {"kind": "logit_lens", "model": "gpt2", "top_k": 3}
    bad = links.parse({"model": ["gpt2"], "top_k": ["0"]}, "logit_lens")
    assert "top_k" in bad.error.replace("\\", "")
    assert bad.draft == {"kind": "logit_lens", "model": "gpt2"}  # the valid fields stay


def test_params_keep_awkward_text_exactly():
    text = "a+b & c=d %20 50% ünï\u200b\n 'q' \"dq\" #frag ?x"
    original = spec(prompt=text, token=" +, &")
    raw = {name: [value] for name, value in links.params(original).items()}
    assert links.parse(raw, "logit_lens").spec == original


@pytest.mark.parametrize("raw, kept", [
    ({"prompt": ["Hi"], "top_k": ["abc"]}, {"prompt": "Hi"}),
    ({"prompt": ["Hi"], "top_k": ["abc"], "bogus": ["1"], "token": [" a"]}, {"prompt": "Hi", "token": " a"}),
    ({"prompt": ["Hi"], "token": [" a", " b"]}, {"prompt": "Hi"}),
])
def test_a_malformed_link_keeps_its_valid_fields_and_runs_nothing(raw, kept):
    parsed = links.parse(raw, "logit_lens")
    assert parsed.spec is None and parsed.error.startswith("This link cannot be opened")
    assert parsed.draft == {"kind": "logit_lens", "model": "default", **kept}


def test_view_keys_ride_along_a_link_without_touching_its_spec():
    """`view.*` keys hold what a page shows of a result (the attention page's one head): the
    spec, and so the result's key and the form's sync, ignore them."""
    s = AnalysisSpec(kind="attention", prompt="When Mary and John went")
    url = links.share_url(s, "http://host:9", view={"layer": "1", "head": "0"})
    assert url.endswith("&view.layer=1&view.head=0")
    raw = {}
    for name, value in parse_qsl(url.split("?", 1)[1]):
        raw.setdefault(name, []).append(value)
    assert links.parse(raw, "attention").spec == s
    assert links.view_state(raw) == {"layer": "1", "head": "0"}
    plain = {name: values for name, values in raw.items() if not name.startswith("view.")}
    assert links.query_key(raw) == links.query_key(plain)
    assert links.share_url(s, "http://host:9") == f"http://host:9/attention?{s.to_query()}"
