"""Two processes on one store file (the app and a notebook beside it): both store, both read."""
import time

from test_store_eviction import lens_result

from analyses.runtime.store import Store
from helpers import run_python, wait_for_line

OTHER = """
    import sys, time
    sys.path.insert(0, "tests/runtime")
    from analyses.runtime.store import Store
    from test_store_eviction import lens_result
    store = Store({path!r})
    for i in range(20):
        assert store.put(f"other-{{i}}", lens_result(f"other {{i}}", rows=50), "fp", 1), i
        time.sleep(0.01)
    print("stored", flush=True)
    deadline = time.monotonic() + 60
    while store.get("mine-19") is None:
        assert time.monotonic() < deadline, "never saw the other process's results"
        time.sleep(0.05)
    print("read", flush=True)
"""


def test_two_processes_take_turns_writing_and_read_each_others_results(tmp_path):
    path = tmp_path / "cache.duckdb"
    store = Store(path)
    other = run_python(OTHER.format(path=str(path)))
    try:
        for i in range(20):  # interleaved with the other process's writes
            result = lens_result(f"mine {i}", rows=50)
            assert store.put(f"mine-{i}", result, "fp", 1), result.meta
        wait_for_line(other, "stored", seconds=60)
        wait_for_line(other, "read", seconds=60)
        assert other.wait(30) == 0, other.stderr.read()
    finally:
        other.kill()
        other.wait(10)
    assert store.get("other-19") is not None and len(store.keys()) == 40


def test_a_file_held_by_another_program_is_reported_busy_then_used_when_free(tmp_path):
    """Another program keeps the file open: operations wait a bounded time, then answer
    "not stored, busy" without raising; once it lets go, the same store works."""
    path = tmp_path / "cache.duckdb"
    store = Store(path, busy_s=0.5)
    holder = run_python(f"""
        import duckdb, time
        connection = duckdb.connect({str(path)!r})
        print("holding", flush=True)
        time.sleep(60)
    """)
    try:
        wait_for_line(holder, "holding")
        started = time.monotonic()
        result = lens_result("while held", rows=5)
        assert store.put("k", result, "fp", 1) is False
        assert time.monotonic() - started < 5
        assert result.meta["stored"] is False and "another process" in result.meta["store_problem"]
        assert store.get("k") is None and "another process" in store.problem
    finally:
        holder.kill()
        holder.wait(10)
    assert store.put("k", lens_result("free again", rows=5), "fp", 1) and store.get("k") is not None
