"""Prompt sets are read without torch, checked line by line, and named by their content."""
import json

import numpy as np
import pytest

from analyses import AnalysisSpec, SpecError
from analyses.core import datasets as ds
from analyses.core.summary import mean_interval, t975


def jsonl(*rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_a_set_is_named_by_its_content_not_its_file_name():
    a = ds.parse(jsonl({"prompt": "Hi", "answer": " there"}), "a.jsonl")
    b = ds.parse(jsonl({"answer": " there", "prompt": "Hi"}), "b.jsonl")  # key order is not content
    assert a.reference == b.reference and ds.REFERENCE.fullmatch(a.reference)
    assert a.fields == ("prompt", "answer")
    c = ds.parse(b'prompt,answer\nHi, there\n', "c.csv")
    assert c.rows == ({"prompt": "Hi", "answer": " there"},) and c.reference == a.reference


@pytest.mark.parametrize("data, name, message", [
    (b'{"prompt": "ok"}\n{"prompt": "x"\n', "f.jsonl", "line 2: not valid JSON"),
    (b'{"prompt": "ok"}\n{"promt": "x"}\n', "f.jsonl", "line 2: unknown field 'promt'"),
    (b'{"prompt": ""}\n', "f.jsonl", "line 1: prompt is empty"),
    (b'{"prompt": 3}\n', "f.jsonl", "line 1: prompt must be text"),
    (b'[1, 2]\n', "f.jsonl", "line 1: expected a JSON object"),
    (b'prompt,colour\nHi,red\n', "f.csv", "line 1: unknown column 'colour'"),
    (b'prompt\nHi,extra\n', "f.csv", "line 2: more values than columns"),
    (b'', "f.jsonl", "no rows"),
    (b'\xff\xfe junk', "f.jsonl", "not UTF-8"),
    (b"x" * (ds.MAX_BYTES + 1), "f.jsonl", "a set file holds at most"),
])
def test_a_bad_file_is_refused_naming_the_line(data, name, message):
    with pytest.raises(ds.DatasetError, match=message):
        ds.parse(data, name)


def test_the_spec_takes_a_set_instead_of_the_rows_fields():
    spec = AnalysisSpec(kind="activation_patching", dataset="ioi", granularity="head_out")
    assert AnalysisSpec.from_query(spec.to_query()) == spec
    with pytest.raises(SpecError, match="clean: comes from each row of the dataset"):
        AnalysisSpec(kind="activation_patching", dataset="ioi", clean="a")
    with pytest.raises(SpecError, match="dataset: 'iio' is neither a shipped set"):
        AnalysisSpec(kind="dla", dataset="iio")
    with pytest.raises(SpecError, match="dataset: does not apply to kind 'heads'"):
        AnalysisSpec(kind="heads", dataset="ioi")
    AnalysisSpec(kind="dla", dataset="sha256:" + "0" * 64)  # a reference: checked when it runs


def test_the_shipped_sets_hold_at_least_100_checked_rows_each():
    for name in ds.SHIPPED:
        found = ds.shipped(name)
        assert len(found.rows) >= 100, name
    assert ds.shipped("ioi").fields == ("clean", "corrupted", "answer", "wrong")
    assert ds.shipped("needle").fields == ("prompt", "answer", "wrong")


def test_intervals_are_students_t():
    assert t975(1) == pytest.approx(12.706, abs=1e-3) and t975(30) == pytest.approx(2.042, abs=1e-3)
    assert t975(35) == pytest.approx(2.030, abs=1e-3)  # the exact quantile, not a table's neighbour
    values = np.array([1.0, 2.0, 3.0, 4.0])
    found = mean_interval(values)
    sem = values.std(ddof=1) / 2
    assert found["mean"] == 2.5 and found["sem"] == pytest.approx(sem) and found["n"] == 4
    assert found["ci_low"] == pytest.approx(2.5 - 3.1824 * sem, abs=1e-4) and found["interval"] == "t"
    one = mean_interval(np.array([5.0]))
    assert one["mean"] == 5.0 and np.isnan(one["sem"]) and one["n"] == 1


def test_a_set_serves_the_kinds_whose_row_inputs_it_gives():
    from analyses.core.catalogue import CATALOGUE

    pairs, prompts = ("clean", "corrupted", "answer", "wrong"), ("prompt", "answer", "wrong")
    assert ds.serves(CATALOGUE["activation_patching"], pairs)
    assert not ds.serves(CATALOGUE["activation_patching"], prompts)  # no pairs to patch
    assert ds.serves(CATALOGUE["logit_lens"], pairs)  # its clean prompts
    assert ds.serves(CATALOGUE["dla"], prompts) and not ds.serves(CATALOGUE["dla"], ("prompt",))
    assert not ds.serves(CATALOGUE["neurons"], prompts)  # takes no set
