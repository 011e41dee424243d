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
from analyses.runtime.store import Store
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
    version = CATALOGUE["logit_lens"].version
    frame = store.sql(f"SELECT r.model_fingerprint, t.layer, t.prob FROM tbl_logit_lens_targets_v{version} t "
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
        insert = Store._insert_table
        def slow_insert(*args):
            insert(*args)
            print("inserted one table", flush=True)
            time.sleep(60)  # killed here: a table written, the catalogue row not yet
        Store._insert_table = staticmethod(slow_insert)
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


def test_a_store_held_by_another_process_is_read_only_or_unavailable_never_a_crash(tmp_path):
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
        assert store.read_only or not store.available
        assert "another process" in store.problem
        assert store.get("anything") is None  # reads still answer
        assert store.put("k", None, "fp", 1) is False  # and writes decline, without raising
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
