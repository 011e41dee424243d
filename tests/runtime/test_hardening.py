"""Hardening (issue 8): a full disk, a worker killed mid-job, and twenty app sessions at once.

Covered elsewhere, so not repeated here: a corrupt store file and a store held by another
process, a SIGKILL in the middle of a store write (test_store.py); out of memory, a full
queue, a hung job, and a closed tab / rerun page that abandons a job while it runs — it
still computes once and stores its result (test_worker.py).
"""
import errno
import os
import signal
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from analyses import AnalysisSpec, compute
from analyses.runtime.local_worker import LocalWorker
from analyses.runtime.service import result_key
from analyses.runtime.store import Store
from helpers import assert_same_result, lens_spec, run_concurrently, run_python, wait_for_line

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_CONFIG = REPO / "data" / "models" / "tiny-circuits" / "config.json"
DISK_FULL = os.strerror(errno.ENOSPC)  # "No space left on device"


def stored_rows(store: Store, key: str) -> int:
    """Rows under `key` in the catalogue and in every result table: 0 means no trace of it."""
    tables = store.sql("SELECT table_name FROM information_schema.tables "
                       "WHERE table_name = 'results' OR table_name LIKE 'tbl_%'").table_name
    column = {name: "key" if name == "results" else "result_key" for name in tables}
    return sum(int(store.sql(f"SELECT count(*) AS n FROM {name} WHERE {column[name]} = ?", [key]).n[0])
               for name in tables)


# --------------------------------------------------------------------------- full disk

class _FullDiskCursor:
    """A store cursor whose disk fills up part-way through a result's write transaction.

    "table": the second result table's INSERT fails, with the first table's rows already
    in the open transaction. "commit": COMMIT fails; DuckDB has then ended the transaction
    itself (it does so for every failed commit), so this aborts it before raising too.
    """

    def __init__(self, cursor, stage: str, failures: list):
        self._cursor, self._stage, self._failures, self._tables_written = cursor, stage, failures, 0

    def execute(self, sql: str, *params):
        if self._stage == "table" and sql.startswith("INSERT INTO tbl_"):
            self._tables_written += 1
            if self._tables_written == 2:
                self._fail(OSError(errno.ENOSPC, DISK_FULL))
        if self._stage == "commit" and sql == "COMMIT":
            self._cursor.execute("ROLLBACK")
            self._fail(duckdb.IOException(f'Could not write file "cache.duckdb.wal": {DISK_FULL}'))
        return self._cursor.execute(sql, *params)

    def _fail(self, error: Exception):
        self._failures.append(error)
        raise error

    def __getattr__(self, name):
        return getattr(self._cursor, name)


@contextmanager
def full_disk(store: Store, stage: str):
    """While inside, every write of a result to `store` runs out of disk at `stage`;
    yields the list of errors raised, so a test can check the disk did fill up."""
    real_cursor, failures = store._cursor, []
    store._cursor = lambda: _FullDiskCursor(real_cursor(), stage, failures)
    try:
        yield failures
    finally:
        del store._cursor  # the class's own method again: the disk has room


@pytest.mark.parametrize("stage", ["table", "commit"])
def test_a_full_disk_still_returns_the_result_and_leaves_no_partial_rows(store, tiny_gpt2_dir,
                                                                         stage, caplog):
    worker = LocalWorker(store=store)
    earlier = compute(lens_spec(tiny_gpt2_dir, "The capital of France is"), worker=worker, store=store)
    spec = lens_spec(tiny_gpt2_dir)  # two result tables ("top", "targets"): "table" fails the second
    key = result_key(spec)

    with full_disk(store, stage) as failures, caplog.at_level("WARNING", logger="analyses.runtime.store"):
        result = compute(spec, worker=worker, store=store)  # the cache is only a cache

    assert len(failures) == 1, "the disk never filled up: nothing was tested"
    assert result.tables["top"].shape[0] > 0 and not result.meta.get("cache_hit")
    assert any(DISK_FULL in r.getMessage() and key in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    assert store.get(key) is None and stored_rows(store, key) == 0
    assert len(store.keys()) == 1
    assert_same_result(store.get(result_key(earlier.spec)), earlier)

    # With room on disk again the same store (and this thread's cursor) writes normally.
    again = compute(spec, worker=worker, store=store)
    assert not again.meta.get("cache_hit") and key in store
    assert_same_result(store.get(key), result)


# --------------------------------------------------------------------------- worker killed

def test_a_worker_killed_mid_job_keeps_finished_results_and_the_job_can_be_resubmitted(
        tmp_path, tiny_gpt2_dir):
    path = tmp_path / "cache.duckdb"
    finished = lens_spec(tiny_gpt2_dir, "The capital of France is")
    killed = lens_spec(tiny_gpt2_dir)
    # The app's own path: compute() on the process's default worker and store (ANALYSES_CACHE).
    app = run_python(f"""
        import time
        from analyses import AnalysisSpec, compute
        from analyses.core.catalogue import CATALOGUE
        from analyses.runtime.local_worker import LocalWorker
        compute(AnalysisSpec.from_json({finished.to_json()!r}))
        print("stored", flush=True)

        def hang(model, spec, progress):
            print("running", flush=True)
            time.sleep(120)  # SIGKILLed here: the job holds its model lock, state "running"

        hanging = LocalWorker(catalogue=CATALOGUE.replacing("logit_lens", runner=hang))
        compute(AnalysisSpec.from_json({killed.to_json()!r}), worker=hanging)
    """, ANALYSES_CACHE=str(path), ANALYSES_MODEL_ROOTS=os.environ["ANALYSES_MODEL_ROOTS"])
    try:
        wait_for_line(app, "stored", seconds=120)
        wait_for_line(app, "running", seconds=60)
        app.send_signal(signal.SIGKILL)
        assert app.wait(10) == -signal.SIGKILL
    finally:
        app.kill()
        app.wait(10)

    store = Store(path)
    try:
        assert store.available and not store.read_only  # the dead process's lock is gone
        assert store.keys() == [result_key(finished)]
        worker = LocalWorker(store=store)
        assert_same_result(store.get(result_key(finished)),
                           compute(finished, cache=False, worker=worker, store=store))
        resubmitted = compute(killed, worker=worker, store=store)
        assert not resubmitted.meta.get("cache_hit") and worker.computations == 2
        assert_same_result(store.get(result_key(killed)), resubmitted)
    finally:
        store.close()


# --------------------------------------------------------------------------- twenty sessions

def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024  # reported in kB


def default_lens(prompt: str) -> AnalysisSpec:
    return AnalysisSpec(kind="logit_lens", model="default", prompt=prompt, top_k=5)


@pytest.mark.skipif(not DEFAULT_MODEL_CONFIG.is_file(),
                    reason="the embedded default model is not trained yet")
def test_twenty_sessions_at_once_all_get_their_result_and_cache_hits_do_not_wait(store):
    """Ten sessions open a shared link that is already cached, ten ask for new prompts.

    Sessions make the call a page makes (`app.components.run`: `compute` with a progress
    callback and the page's wait bound) on one worker and one store, as the sessions of one
    server share them. Not through AppTest: it swaps a process-wide Streamlit Runtime in and
    out on every run, so twenty AppTests in threads fail inside Streamlit itself.
    """
    from app.components.run import WAIT_S

    worker = LocalWorker(store=store)  # the app's configuration (default_worker): 2 threads, 64 in flight
    shared = default_lens("The capital of France is")
    first = compute(shared, worker=worker, store=store)  # cached before the crowd; model loaded
    requests = [shared if i % 2 == 0 else default_lens(f"Visitor {i} asks what the capital of France is")
                for i in range(20)]

    def session(spec):
        started = time.perf_counter()
        result = compute(spec, worker=worker, store=store, timeout=WAIT_S,
                         progress=lambda fraction, message: None)  # a page moves its bar here
        return result, time.perf_counter() - started

    before = rss_bytes()
    answers = run_concurrently(session, [(spec,) for spec in requests])
    growth = rss_bytes() - before

    cached_s, computed_s = [], []
    for spec, (result, seconds) in zip(requests, answers):
        assert result.spec.prompt == spec.prompt and result.tables["top"].shape[0] > 0
        if spec is shared:
            assert result.meta.get("cache_hit")
            assert_same_result(result, first)
            cached_s.append(seconds)
        else:
            assert not result.meta.get("cache_hit")
            computed_s.append(seconds)
    assert worker.computations == 1 + 10  # the warm-up, then each new prompt once
    assert len(store.keys()) == 11
    # A cache hit never queues behind the jobs the other sessions started.
    assert statistics.median(cached_s) < statistics.median(computed_s), (cached_s, computed_s)
    # Bound: 512 MB over the warmed-up process (measured: 12-20 MB). Eleven small results and
    # twenty threads need little; growth per session or per progress poll (kept frames, a
    # connection or model load per session) is what would cross it.
    assert growth < 512 * 2**20, f"RSS grew {growth / 2**20:.0f} MB"
    print(f"20 sessions: RSS grew {growth / 2**20:.1f} MB; median latency "
          f"{statistics.median(cached_s):.4f} s cached, {statistics.median(computed_s):.4f} s computed")
