"""Results read again in one process come from memory: equal, bounded, invalidated with the
store, and never shared between callers."""
from datetime import timedelta

import pandas as pd
import pytest

from analyses import AnalysisSpec
from analyses.core.result import Result
from analyses.runtime import store as store_module
from analyses.runtime.store import Store, tables_bytes


def lens_result(prompt: str, rows: int = 500) -> Result:
    top = pd.DataFrame({"layer": ["L0"] * rows, "layer_index": range(rows), "position": 0, "token": "x",
                        "rank": 0, "token_id": range(rows), "token_str": [f"tok{i}" for i in range(rows)],
                        "prob": 0.5, "logit": 1.0})
    return Result(spec=AnalysisSpec(kind="logit_lens", model="default", prompt=prompt), tables={"top": top})


SIZE = tables_bytes(lens_result("size").tables)


def file_closed(store: Store, monkeypatch) -> None:
    """Any operation on the file from now on fails the test."""
    def refuse():
        raise AssertionError("the file was opened")
    monkeypatch.setattr(store, "_session", refuse)


def last_used(store: Store, key: str):
    return store.sql("SELECT last_used FROM results WHERE key = ?", [key]).last_used[0]


def test_a_result_read_again_comes_from_memory_equal_to_the_stored_one(tmp_path, monkeypatch):
    store = Store(tmp_path / "cache.duckdb")
    assert store.put("one", lens_result("one"), "fp", 1)
    first = store.get("one")
    assert first.meta["cache_hit"] == "store"
    file_closed(store, monkeypatch)
    again = store.get("one")
    assert again.meta["cache_hit"] == "memory"
    assert again.spec == first.spec and again.tables.keys() == first.tables.keys()
    pd.testing.assert_frame_equal(again.tables["top"], first.tables["top"])
    assert {k: v for k, v in again.meta.items() if k != "cache_hit"} == \
        {k: v for k, v in first.meta.items() if k != "cache_hit"}


def test_memory_is_bounded_and_lets_the_least_recently_used_go(tmp_path):
    store = Store(tmp_path / "cache.duckdb", memory_bytes=int(SIZE * 2.5))  # room for two
    for key in ("one", "two", "three"):
        assert store.put(key, lens_result(key), "fp", 1)
    store.get("one"), store.get("two"), store.get("one")  # "two" is now the least recently used
    store.get("three")
    assert "one" in store.memory and "three" in store.memory and "two" not in store.memory
    assert store.memory.n_bytes <= store.memory.max_bytes
    assert store.get("two").meta["cache_hit"] == "store"  # still in the file


def test_a_result_larger_than_the_memory_cap_is_read_from_the_file(tmp_path):
    store = Store(tmp_path / "cache.duckdb", memory_bytes=SIZE // 2)
    assert store.put("one", lens_result("one"), "fp", 1)
    assert store.get("one").meta["cache_hit"] == store.get("one").meta["cache_hit"] == "store"


def test_a_result_the_store_evicts_leaves_memory(tmp_path):
    store = Store(tmp_path / "cache.duckdb", max_bytes=int(SIZE * 1.5))  # room for one
    assert store.put("one", lens_result("one"), "fp", 1)
    assert store.get("one") is not None and "one" in store.memory
    assert store.put("two", lens_result("two"), "fp", 1)  # evicts "one"
    assert "one" not in store.memory and store.get("one") is None


def test_a_result_another_store_evicts_leaves_memory_at_the_next_check(tmp_path):
    path = tmp_path / "cache.duckdb"
    reader = Store(path)
    assert reader.put("one", lens_result("one"), "fp", 1)
    assert reader.get("one") is not None
    writer = Store(path, max_bytes=int(SIZE * 1.5))  # another process's store, as far as memory goes
    assert writer.put("two", lens_result("two"), "fp", 1)
    assert "one" not in writer.keys()
    assert reader.get("one").meta["cache_hit"] == "memory"  # within a minute: not asked
    reader.TOUCH_EVERY_S = 0  # the minute is up
    assert reader.get("one") is None and "one" not in reader.memory


def test_a_store_on_another_path_starts_with_nothing_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "_STORE", None)
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "a.duckdb"))
    first = store_module.default_store()
    assert first.put("one", lens_result("one"), "fp", 1) and first.get("one") is not None
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "b.duckdb"))
    second = store_module.default_store()
    assert second is not first and "one" not in second.memory and second.get("one") is None
    assert "one" not in first.memory  # the old store let go of its memory too


def test_a_read_from_memory_refreshes_last_used_at_most_once_a_minute(tmp_path, monkeypatch):
    store = Store(tmp_path / "cache.duckdb")
    assert store.put("one", lens_result("one"), "fp", 1)
    store.get("one")
    kept = store.memory.get("one")
    kept.checked -= timedelta(minutes=2)  # its last refresh was two minutes ago
    before = last_used(store, "one")
    assert store.get("one").meta["cache_hit"] == "memory"
    assert last_used(store, "one") > before  # a read from memory is a use
    file_closed(store, monkeypatch)
    assert store.get("one").meta["cache_hit"] == "memory"  # refreshed under a minute ago: not again


def test_callers_never_see_each_others_edits(tmp_path):
    store = Store(tmp_path / "cache.duckdb")
    assert store.put("one", lens_result("one"), "fp", 1)
    first = store.get("one")  # from the file: its frames are the ones kept in memory, shared
    expected = first.tables["top"].copy(deep=True)
    first.tables["top"].loc[0, "prob"] = 99.0
    first.tables["top"]["extra"] = 1
    first.tables["top"].drop(index=1, inplace=True)
    first.meta["stored"] = False
    first.meta["library_versions"]["torch"] = "edited"
    second = store.get("one")
    second.tables["top"].iloc[2, second.tables["top"].columns.get_loc("logit")] = -5.0
    with pytest.raises(ValueError):  # pandas hands out read-only arrays under copy-on-write
        second.tables["top"]["prob"].to_numpy()[0] = 42.0
    third = store.get("one")
    assert third.meta["cache_hit"] == "memory"
    pd.testing.assert_frame_equal(third.tables["top"], expected)
    assert "stored" not in third.meta and third.meta["library_versions"]["torch"] != "edited"


def test_the_memory_cap_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSES_MEMORY_CACHE_MB", "1.5")
    assert Store(tmp_path / "cache.duckdb").memory.max_bytes == int(1.5 * 2**20)
    monkeypatch.delenv("ANALYSES_MEMORY_CACHE_MB")
    assert Store(tmp_path / "cache.duckdb").memory.max_bytes == 256 * 2**20
