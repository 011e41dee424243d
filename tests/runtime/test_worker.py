"""The local worker: dedupe of equal specs, isolation of concurrent jobs, progress, cancel, OOM."""
import threading

import pytest

from analyses import AnalysisSpec, compute
from analyses.core.catalogue import CATALOGUE
from analyses.core.progress import Cancelled
from analyses.kinds.logit_lens import run as lens_run
from analyses.runtime.jobs import Busy, JobFailed, State
from analyses.runtime.local_worker import LocalWorker
from analyses.runtime.service import result_key
from helpers import assert_same_result, lens_spec, run_concurrently

PROMPTS = [
    "When Mary and John went to the store, John gave a drink to",
    "The capital of France is",
    "Once upon a time there was",
    "def add(a, b): return a + b",
    "Lily liked to play in the park with her dog",
    "1 2 3 4 5 6 7 8 9",
    "The capital of Japan is Tokyo. The capital of",
    "Hello world",
]


def with_runner(runner):
    """The catalogue with logit_lens run by `runner`: a test double handed to one worker,
    never a change to the shared catalogue."""
    return CATALOGUE.replacing("logit_lens", runner=runner)


def gated(gate: threading.Event):
    """logit_lens that waits for `gate` (at most 30 s) before it runs."""
    return with_runner(lambda model, spec, progress: (gate.wait(30), lens_run(model, spec, progress))[1])


def test_twenty_identical_specs_compute_once(store, tiny_gpt2_dir):
    worker = LocalWorker(store=store)
    spec = lens_spec(tiny_gpt2_dir)
    results = run_concurrently(lambda: compute(spec, worker=worker, store=store), [()] * 20)
    assert worker.computations == 1
    for result in results[1:]:
        assert_same_result(results[0], result)


def test_eight_distinct_specs_at_once_equal_one_by_one(store, tiny_gpt2_dir):
    specs = [lens_spec(tiny_gpt2_dir, prompt) for prompt in PROMPTS]
    worker = LocalWorker(threads=4, store=store)
    together = run_concurrently(lambda s: compute(s, cache=False, worker=worker, store=store),
                                [(s,) for s in specs])
    alone = [compute(s, cache=False, worker=LocalWorker(threads=1, store=store), store=store) for s in specs]
    for a, b in zip(together, alone):
        assert_same_result(a, b)


def test_progress_reaches_the_caller(store, tiny_gpt2_dir):
    seen = []
    compute(lens_spec(tiny_gpt2_dir), worker=LocalWorker(store=store), store=store,
            progress=lambda f, m: seen.append((f, m)))
    assert seen and all(0.0 <= f <= 1.0 for f, _ in seen)


def test_a_cancelled_job_stops_and_is_not_stored(store, tiny_gpt2_dir):
    started, release = threading.Event(), threading.Event()

    def slow_run(model, spec, progress):
        started.set()
        release.wait(30)
        progress(0.5, "between batches")  # the cancellation lands here
        return lens_run(model, spec, progress)

    spec = lens_spec(tiny_gpt2_dir)
    worker = LocalWorker(store=store, catalogue=with_runner(slow_run))
    job = worker.submit(spec, result_key(spec))
    assert started.wait(30)
    job.cancel()
    release.set()
    with pytest.raises(Cancelled):
        job.wait(30)
    assert job.state is State.CANCELLED and store.keys() == []


def test_out_of_memory_fails_that_job_and_the_worker_goes_on(store, tiny_gpt2_dir):
    calls = []

    def exploding_once(model, spec, progress):
        calls.append(spec)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return lens_run(model, spec, progress)

    worker = LocalWorker(store=store, catalogue=with_runner(exploding_once))
    with pytest.raises(JobFailed, match="out of memory while running logit_lens"):
        compute(lens_spec(tiny_gpt2_dir), worker=worker, store=store)
    assert compute(lens_spec(tiny_gpt2_dir), worker=worker, store=store).tables["top"].shape[0] > 0


def test_a_full_queue_answers_busy_at_once(store, tiny_gpt2_dir):
    gate = threading.Event()
    worker = LocalWorker(threads=1, max_queued=1, store=store, catalogue=gated(gate))
    try:
        first = lens_spec(tiny_gpt2_dir, PROMPTS[0])
        worker.submit(first, result_key(first))
        second = lens_spec(tiny_gpt2_dir, PROMPTS[1])
        with pytest.raises(Busy, match="busy"):
            worker.submit(second, result_key(second))
    finally:
        gate.set()


def test_bad_input_fails_the_job_with_the_users_message(store, tiny_gpt2_dir):
    spec = AnalysisSpec(kind="logit_lens", model=str(tiny_gpt2_dir), prompt="word " * 500)
    with pytest.raises(JobFailed, match="prompt: .* context holds"):
        compute(spec, worker=LocalWorker(store=store), store=store)


def test_a_hung_job_gives_the_caller_a_bounded_wait(store, tiny_gpt2_dir):
    gate = threading.Event()
    worker = LocalWorker(store=store, catalogue=gated(gate))
    try:
        with pytest.raises(TimeoutError, match="keeps running and its result will be cached"):
            compute(lens_spec(tiny_gpt2_dir), worker=worker, store=store, timeout=0.5)
    finally:
        gate.set()


def test_an_abandoned_job_still_stores_its_result_for_the_next_visit(store, tiny_gpt2_dir):
    """A closed tab or a rerun page stops waiting; the job goes on and its result is cached,
    and asking again meanwhile joins the same job instead of starting another."""
    gate = threading.Event()
    worker = LocalWorker(store=store, catalogue=gated(gate))
    spec = lens_spec(tiny_gpt2_dir)
    try:
        with pytest.raises(TimeoutError):
            compute(spec, worker=worker, store=store, timeout=0.2)  # the visitor leaves
        with pytest.raises(TimeoutError):
            compute(spec, worker=worker, store=store, timeout=0.2)  # a rerun: same job
        gate.set()
        worker.jobs()[0].wait(30) if worker.jobs() else None
    finally:
        gate.set()
    for _ in range(100):
        if result_key(spec) in store:
            break
        threading.Event().wait(0.1)
    assert result_key(spec) in store
    assert worker.computations == 1
    assert compute(spec, worker=worker, store=store).meta["cache_hit"]


def test_a_job_keeps_its_progress_history(store, tiny_gpt2_dir):
    """A poller sees only the report current at each poll; the job keeps the latest ones in
    order: execute()'s own (the load, the run) first, the same under every backend."""
    spec = lens_spec(tiny_gpt2_dir, "Progress, please")
    job = LocalWorker(store=store).submit(spec, result_key(spec))
    job.wait(120)
    messages = [message for _, message in job.history]
    assert messages[0] == f"loading {spec.model}" and messages[1] == "running", messages
    assert all(0.0 <= fraction <= 1.0 for fraction, _ in job.history)


def endless(model, spec, progress):
    """A kind that never finishes by itself but reports progress between its batches."""
    for step in range(3000):
        progress(step / 3000, f"batch {step}")
        threading.Event().wait(0.01)
    raise AssertionError("the time limit should have stopped this job")


def test_a_job_over_the_time_limit_is_stopped_and_says_so(store, tiny_gpt2_dir, monkeypatch):
    monkeypatch.setenv("ANALYSES_JOB_TIME_LIMIT", "0.5")
    worker = LocalWorker(store=store, catalogue=with_runner(endless))
    spec = lens_spec(tiny_gpt2_dir)
    job = worker.submit(spec, result_key(spec))
    with pytest.raises(JobFailed, match=r"stopped after 0.5 s: this server's limit per job "
                                        r"\(ANALYSES_JOB_TIME_LIMIT\)"):
        job.wait(30)
    assert job.state is State.FAILED and job.user_error and store.keys() == []
    assert compute(lens_spec(tiny_gpt2_dir, "Hello world"), worker=LocalWorker(store=store),
                   store=store).tables["top"].shape[0] > 0  # a quick job still runs


@pytest.mark.parametrize("value, limit", [("", None), ("0", None), ("600", 600.0), ("2.5", 2.5)])
def test_the_time_limit_is_read_from_the_environment(monkeypatch, value, limit):
    from analyses.runtime.jobs import job_time_limit

    monkeypatch.setenv("ANALYSES_JOB_TIME_LIMIT", value)
    assert job_time_limit() == limit


def test_a_bad_time_limit_is_named(monkeypatch):
    from analyses.runtime.jobs import job_time_limit

    monkeypatch.setenv("ANALYSES_JOB_TIME_LIMIT", "ten minutes")
    with pytest.raises(ValueError, match="ANALYSES_JOB_TIME_LIMIT='ten minutes'"):
        job_time_limit()
