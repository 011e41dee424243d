"""`Store.sql` answers questions and changes nothing."""
import pytest

from analyses.runtime.store import Store, StoreQueryRefused


@pytest.fixture
def filled(tmp_path):
    store = Store(tmp_path / "cache.duckdb")
    from analyses.core.datasets import PromptSet

    store.put_dataset(PromptSet(name="tiny", rows=({"prompt": "a"},)))
    return store


@pytest.mark.parametrize("query", [
    "INSERT INTO datasets SELECT * FROM datasets",
    "DELETE FROM results",
    "DROP TABLE datasets",
    "CREATE TABLE mine AS SELECT 1 AS x",
    "UPDATE datasets SET name = 'x'",
    "ATTACH ':memory:' AS other",
    "COPY datasets TO '/tmp/leak.csv'",
    "PRAGMA enable_profiling",
    "SET threads = 1",
    "CHECKPOINT",
    "EXPLAIN ANALYZE DELETE FROM datasets",
    "SELECT 1; DROP TABLE datasets",
    "WITH x AS (SELECT 1) INSERT INTO datasets SELECT * FROM datasets",
])
def test_sql_refuses_anything_but_a_query(filled, query):
    with pytest.raises(StoreQueryRefused, match="read-only"):
        filled.sql(query)
    assert filled.sql("SELECT count(*) AS n FROM datasets").n[0] == 1
    assert set(filled.sql("SHOW TABLES").name) >= {"datasets", "results"}


def test_sql_answers_select_and_with_queries(filled):
    assert filled.sql("SELECT name FROM datasets WHERE n_rows = ?", [1]).name.tolist() == ["tiny"]
    assert filled.sql("WITH d AS (SELECT * FROM datasets) SELECT count(*) AS n FROM d").n[0] == 1
    assert filled.sql("FROM datasets SELECT name").name.tolist() == ["tiny"]
