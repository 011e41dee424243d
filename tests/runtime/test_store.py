"""The DuckDB store: exact round trips, atomic writes, and a cache that survives bad files."""
import os
import signal
from pathlib import Path

import pytest

from analyses import AnalysisSpec, compute
from analyses.core.catalogue import CATALOGUE
from analyses.runtime import models
from analyses.runtime.local_worker import LocalWorker
from analyses.runtime.service import result_key
from analyses.runtime.store import Store, table_name
from helpers import assert_same_result, lens_spec, run_python, wait_for_line

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_returns_an_equal_result(store, tiny_gpt2_dir):
    spec = lens_spec(tiny_gpt2_dir)
    worker = LocalWorker(store=store)
    computed = compute(spec, worker=worker, store=store)
    stored = store.get(result_key(spec))
    assert stored is not None and stored.meta["cache_hit"]
    assert_same_result(computed, stored)
    row = store.sql("SELECT kind, model_fingerprint, analysis_version, library_versions, compute_seconds "
                    "FROM results").iloc[0]
    assert row.kind == "logit_lens" and row.analysis_version == CATALOGUE["logit_lens"].version
    assert row.model_fingerprint == models.fingerprint(str(tiny_gpt2_dir))
    assert "transformer-lens" in row.library_versions


def test_result_tables_are_queryable_with_sql(store, tiny_gpt2_dir):
    compute(lens_spec(tiny_gpt2_dir), worker=LocalWorker(store=store), store=store)
    targets = table_name("logit_lens", "targets", CATALOGUE["logit_lens"].version)
    frame = store.sql(f"SELECT r.model_fingerprint, t.layer, t.prob FROM {targets} t "
                      "JOIN results r ON r.key = t.result_key WHERE t.token_str = ? ORDER BY t.prob DESC",
                      [" Mary"])
    assert len(frame) > 0 and frame.prob.is_monotonic_decreasing


def test_a_cache_hit_loads_no_model(store, tiny_gpt2_dir, monkeypatch):
    spec = lens_spec(tiny_gpt2_dir)
    compute(spec, worker=LocalWorker(store=store), store=store)
    models.clear_cache()
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("a cache hit loaded a model"))
    assert compute(spec, store=store, worker=LocalWorker(store=store)).meta["cache_hit"]


def test_cache_false_bypasses_the_store_both_ways(store, tiny_gpt2_dir):
    spec = lens_spec(tiny_gpt2_dir)
    worker = LocalWorker(store=store)
    compute(spec, cache=False, worker=worker, store=store)
    assert store.keys() == []
    compute(spec, worker=worker, store=store)
    compute(spec, cache=False, worker=worker, store=store)
    assert worker.computations == 3


def test_a_corrupt_file_is_moved_aside_and_rebuilt(tmp_path):
    path = tmp_path / "cache.duckdb"
    path.write_bytes(b"this is not a duckdb file" * 100)
    store = Store(path)
    assert store.available and not store.read_only
    assert store.keys() == []
    assert any(p.name.startswith("cache.duckdb.broken-") for p in tmp_path.iterdir())
    store.close()


def test_sigkill_in_the_middle_of_a_write_leaves_no_partial_result(tmp_path, tiny_gpt2_dir):
    path = tmp_path / "cache.duckdb"
    writer = run_python(f"""
        import time
        from analyses import AnalysisSpec
        from analyses.runtime.store import Store
        from analyses.runtime.local_worker import LocalWorker
        from analyses.runtime.service import result_key
        store = Store({str(path)!r})
        spec = AnalysisSpec(kind="logit_lens", model={str(tiny_gpt2_dir)!r}, prompt="Hello there", top_k=2)
        result = LocalWorker(store=store).submit(spec, "k").wait(120)
        import analyses.runtime.store as store_module
        insert = store_module.insert_rows
        def slow_insert(*args):
            insert(*args)
            print("inserted one table", flush=True)
            time.sleep(60)  # killed here: a table written, the catalogue row not yet
        store_module.insert_rows = slow_insert
        store.put("partial-key", result, "fp", 1)
    """, ANALYSES_MODEL_ROOTS=os.environ["ANALYSES_MODEL_ROOTS"])
    try:
        wait_for_line(writer, "inserted one table")
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        writer.kill()
    store = Store(path)
    assert store.available and not store.read_only
    assert "partial-key" not in store
    leftovers = store.sql("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'tbl_%'")
    for name in leftovers.table_name:
        assert store.sql(f"SELECT count(*) AS n FROM {name} WHERE result_key = 'partial-key'").n[0] == 0
    store.close()


def test_a_store_open_in_another_process_neither_locks_this_one_out_nor_crashes(tmp_path):
    """A Store holds its file only during an operation: another process's open Store leaves
    this one free to read and write. (A file another *program* keeps open: "busy", never a
    crash — test_store_processes.py.)"""
    path = tmp_path / "cache.duckdb"
    holder = run_python(f"""
        import time
        from analyses.runtime.store import Store
        store = Store({str(path)!r})
        print("holding", flush=True)
        time.sleep(60)
    """)
    try:
        wait_for_line(holder, "holding")
        store = Store(path)
        assert store.available and not store.read_only and store.problem is None
        assert store.get("anything") is None  # reads answer, and writes go in
        assert store.put("k", dla_set_result("ioi", []), "fp", 1) and store.get("k") is not None
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.parametrize("prompt", [
    "'); DROP TABLE results; --",
    '<img src=x onerror="alert(1)"> <script>alert(2)</script>',
    "rtl \u202e mark, zero\u200bwidth, nul \x00 end",
])
def test_hostile_text_round_trips_link_to_store_unchanged(store, tiny_gpt2_dir, prompt):
    spec = AnalysisSpec.from_query(lens_spec(tiny_gpt2_dir, prompt).to_query())
    assert spec.prompt == prompt
    compute(spec, worker=LocalWorker(store=store), store=store)
    stored = store.get(result_key(spec))
    assert stored.spec.prompt == prompt and stored.spec == spec.with_defaults()
    assert set(store.sql("SELECT table_name FROM information_schema.tables").table_name) >= {"results"}
    assert store.sql("SELECT count(*) AS n FROM results").n[0] == 1


def test_new_weights_under_the_same_name_are_never_served_old_results(tmp_path, monkeypatch):
    from conftest import save_tiny_model

    monkeypatch.setenv("ANALYSES_MODEL_ROOTS", str(tmp_path))
    store = Store(tmp_path / "cache.duckdb")
    worker = LocalWorker(store=store)
    directory = save_tiny_model("gpt2", tmp_path / "same-name", seed=0)
    spec = lens_spec(directory)
    first = compute(spec, worker=worker, store=store)
    models.clear_cache()
    save_tiny_model("gpt2", directory, seed=1)  # retrained weights, same path and name
    second = compute(spec, worker=worker, store=store)
    assert not second.meta.get("cache_hit")
    assert second.meta["model_fingerprint"] != first.meta["model_fingerprint"]
    assert worker.computations == 2 and len(store.keys()) == 2
    store.close()


def test_the_readmes_example_sql_finds_the_embedded_models_induction_heads(tmp_path):
    """The query in README's store section, run as printed, on a store holding a heads result
    of the embedded model: it returns that model's induction heads (score ≥ 0.5, the 0-1 scale)."""
    import re

    readme = (REPO / "README.md").read_text()
    query = re.search(r"```sql\n(.*?)```", readme, re.S).group(1)
    query = "\n".join(line for line in query.splitlines() if not line.startswith("--"))
    store = Store(tmp_path / "cache.duckdb")
    try:
        spec = AnalysisSpec(kind="heads", detector="induction")
        result = compute(spec, worker=LocalWorker(store=store), store=store)
        rows = store.sql(query)
    finally:
        store.close()
    scores = result.tables["scores"]
    expected = {(int(r.layer), int(r.head)) for r in scores[scores.score > 0.5].itertuples()}
    assert len(expected) >= 2
    assert {(int(r.layer), int(r.head)) for r in rows.itertuples()} == expected
    assert set(rows.model_ref) == {"default"}


def test_a_table_that_gains_a_column_keeps_every_stored_result_as_it_was(store, tiny_gpt2_dir):
    """A later version of a table may carry a new column (a set's `examples` gained its
    prompts' tokens): the store adds it, and each result comes back with its own columns."""
    import pandas as pd

    from analyses.core.result import Result

    spec = lens_spec(tiny_gpt2_dir)
    computed = compute(spec, worker=LocalWorker(store=store), store=store)
    wider = {name: frame.assign(note="new") if name == "targets" else frame
             for name, frame in computed.tables.items()}
    later = Result(spec=lens_spec(tiny_gpt2_dir, prompt="Another prompt"), tables=wider, meta=computed.meta)
    assert store.put("later-key", later, "fingerprint", 1)
    old = store.get(result_key(spec))
    assert list(old.tables["targets"].columns) == list(computed.tables["targets"].columns)
    pd.testing.assert_frame_equal(store.get("later-key").tables["targets"], wider["targets"], check_dtype=False)


def dla_set_result(prompt_set: str, skipped_rows: list[dict]):
    """A dla result over a prompt set, built by hand: its `skipped` table holds `skipped_rows`."""
    import pandas as pd

    from analyses.core.catalogue import CATALOGUE
    from analyses.core.result import Result

    columns = CATALOGUE["dla"].set_tables["skipped"]
    contributions = pd.DataFrame({"example": [0, 0], "component": ["embed", "L0H0"], "layer": [0, 0],
                                  "head": [None, 0], "value": [0.25, -1.5]})
    return Result(spec=AnalysisSpec(kind="dla", model="default", dataset=prompt_set),
                  tables={"contributions": contributions,
                          "skipped": pd.DataFrame(skipped_rows, columns=columns)},
                  meta={"n_skipped": len(skipped_rows)})


def test_a_set_with_skipped_rows_is_stored_after_one_without(store, caplog):
    """The first set stored had no skipped row (an empty table, no column types); a later
    set that has one is stored all the same, and comes back from the cache."""
    import pandas as pd

    none_skipped = dla_set_result("ioi", [])
    assert store.put("no-skipped", none_skipped, "fp", 1)
    assert none_skipped.meta["stored"] is True
    one_skipped = dla_set_result("facts", [{"example": 3, "reason": "the answer is two tokens",
                                            "row": '{"prompt": "x"}'}])
    with caplog.at_level("WARNING", logger="analyses.runtime.store"):
        stored = store.put("one-skipped", one_skipped, "fp", 1)
    assert stored, [r.getMessage() for r in caplog.records]
    assert one_skipped.meta["stored"] is True and "store_problem" not in one_skipped.meta
    hit = store.get("one-skipped")
    assert hit is not None and hit.meta["cache_hit"]
    pd.testing.assert_frame_equal(hit.tables["skipped"], one_skipped.tables["skipped"], check_dtype=False)
    pd.testing.assert_frame_equal(hit.tables["contributions"], one_skipped.tables["contributions"],
                                  check_dtype=False)
    empty = store.get("no-skipped").tables["skipped"]
    assert len(empty) == 0 and list(empty.columns) == ["example", "reason", "row"]


def test_an_all_empty_column_takes_its_type_from_a_later_result(store):
    """A heads `ablation` table whose `heads` column held only None in the first result stored."""
    import pandas as pd

    from analyses.core.result import Result

    def ablation(heads, prompt):
        frame = pd.DataFrame({"detector": ["induction"], "heads": [heads], "ablated": [2],
                              "metric": ["loss"], "baseline": [1.0], "after": [1.5], "drop": [0.5]})
        return Result(spec=AnalysisSpec(kind="heads", model="default", prompt=prompt),
                      tables={"ablation": frame})

    assert store.put("a", ablation(None, "first"), "fp", 3)
    later = ablation("L0H1,L1H0", "second")
    assert store.put("b", later, "fp", 3) and later.meta["stored"]
    assert store.get("b").tables["ablation"].heads[0] == "L0H1,L1H0"
    assert store.get("a").tables["ablation"].heads.isna().all()


def test_a_column_stored_as_integers_keeps_the_fractions_of_a_later_result(store):
    """DuckDB would round 1.5 into a BIGINT column: the column is widened instead."""
    import pandas as pd

    from analyses.core.result import Result

    def contributions(values, prompt):
        frame = pd.DataFrame({"component": ["embed"], "layer": [0], "head": [0], "value": values})
        return Result(spec=AnalysisSpec(kind="dla", model="default", prompt=prompt, answer=" x"),
                      tables={"contributions": frame})

    assert store.put("ints", contributions([2], "first"), "fp", 1)
    assert store.put("fractions", contributions([1.5], "second"), "fp", 1)
    assert store.get("fractions").tables["contributions"].value[0] == 1.5
    assert store.get("ints").tables["contributions"].value[0] == 2


def test_a_result_that_cannot_be_stored_says_so_and_why(store, caplog):
    """The real error (not DuckDB's "transaction is aborted" that follows it) is logged and
    put in the result's meta, for the page to show."""
    import pandas as pd

    from analyses.core.result import Result

    def contributions(values, prompt):
        frame = pd.DataFrame({"component": ["embed"], "layer": [0], "head": [0], "value": values})
        return Result(spec=AnalysisSpec(kind="dla", model="default", prompt=prompt, answer=" x"),
                      tables={"contributions": frame})

    assert store.put("numbers", contributions([2.5], "first"), "fp", 1)
    text = contributions(["not a number"], "second")
    with caplog.at_level("WARNING", logger="analyses.runtime.store"):
        assert not store.put("text", text, "fp", 1)
    assert text.meta["stored"] is False and "value" in text.meta["store_problem"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "value" in messages and "aborted" not in messages.lower()
    assert "text" not in store and store.get("numbers") is not None
