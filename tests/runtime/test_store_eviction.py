"""The store's size cap: least recently used results go first; prompt sets never do."""
import pandas as pd

from analyses import AnalysisSpec
from analyses.core.datasets import PromptSet
from analyses.core.result import Result
from analyses.runtime.store import Store


def lens_result(prompt: str, rows: int = 2000) -> Result:
    """A logit lens result of about `rows` rows (~0.2 MB as pandas holds it)."""
    top = pd.DataFrame({"layer": ["L0"] * rows, "layer_index": range(rows), "position": 0, "token": "x",
                        "rank": 0, "token_id": range(rows), "token_str": [f"tok{i}" for i in range(rows)],
                        "prob": 0.5, "logit": 1.0})
    return Result(spec=AnalysisSpec(kind="logit_lens", model="default", prompt=prompt), tables={"top": top})


def table_rows(store: Store, key: str) -> int:
    return int(store.sql("SELECT count(*) AS n FROM tbl_logit_lens_top_v1 WHERE result_key = ?", [key]).n[0])


def test_the_least_recently_read_result_is_evicted_first(tmp_path):
    one = lens_result("one")
    size = sum(int(f.memory_usage(deep=True).sum()) for f in one.tables.values())
    store = Store(tmp_path / "cache.duckdb", max_bytes=int(size * 2.5))  # room for two of them
    store.TOUCH_EVERY_S = 0  # every read counts (the default: once a minute per result)
    prompt_set = PromptSet(name="tiny", rows=({"prompt": "a"},))
    assert store.put_dataset(prompt_set)
    assert store.put("one", one, "fp", 1)
    assert store.put("two", lens_result("two"), "fp", 1)
    assert store.get("one") is not None  # read: "two" is now the least recently used
    assert store.put("three", lens_result("three"), "fp", 1)
    assert set(store.keys()) == {"one", "three"}
    assert table_rows(store, "two") == 0 and table_rows(store, "one") > 0  # its rows went with it
    assert store.put("four", lens_result("four"), "fp", 1)
    assert set(store.keys()) == {"three", "four"}
    assert store.get_dataset(prompt_set.reference) is not None  # prompt sets are never evicted


def test_the_cap_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSES_CACHE_MAX_MB", "1.5")
    assert Store(tmp_path / "cache.duckdb").max_bytes == int(1.5 * 2**20)
    monkeypatch.delenv("ANALYSES_CACHE_MAX_MB")
    assert Store(tmp_path / "cache.duckdb").max_bytes == 2048 * 2**20


def test_an_older_store_gains_the_recency_columns(tmp_path):
    """A store written before `last_used` existed: opened, its results are still served and
    the catalogue has the new columns."""
    import duckdb

    from analyses.runtime import store as store_module

    path = tmp_path / "cache.duckdb"
    old = duckdb.connect(str(path))
    old.execute(store_module.SCHEMA.replace("    last_used TIMESTAMP,\n", "").replace(
        "    n_bytes BIGINT,\n", ""))
    old.close()
    store = Store(path)
    columns = set(store.sql("SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = 'results'").column_name)
    assert {"last_used", "n_bytes"} <= columns
    assert store.put("one", lens_result("one", rows=3), "fp", 1) and store.get("one") is not None
