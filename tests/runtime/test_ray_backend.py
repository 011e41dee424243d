"""The Ray Serve backend returns the same results as the local worker (Ray started here)."""
import pytest

from analyses import compute
from analyses.runtime.local_worker import LocalWorker
from analyses.runtime.store import Store
from helpers import assert_same_result, lens_spec

ray = pytest.importorskip("ray", reason="ray is in requirements.txt; this environment lacks it")


@pytest.fixture(scope="module")
def ray_worker(tmp_path_factory, tiny_models_root):
    from analyses.runtime.ray_worker import RayWorker

    with pytest.MonkeyPatch.context() as env:  # undone after the module: nothing leaks
        env.setenv("ANALYSES_MODEL_ROOTS", str(tiny_models_root))  # replicas read it at start
        worker = RayWorker(store=Store(tmp_path_factory.mktemp("ray") / "cache.duckdb"), replicas=1)
        yield worker
        worker.shutdown()


@pytest.mark.slow
def test_ray_backend_matches_the_local_worker(ray_worker, tiny_gpt2_dir, tmp_path):
    prompts = ["When Mary and John went to the store, John gave a drink to", "The capital of France is"]
    local_store = Store(tmp_path / "local.duckdb")
    for prompt in prompts:
        spec = lens_spec(tiny_gpt2_dir, prompt)
        remote = compute(spec, cache=False, worker=ray_worker, store=ray_worker.store)
        local = compute(spec, cache=False, worker=LocalWorker(store=local_store), store=local_store)
        assert_same_result(remote, local)
    assert ray_worker.computations == len(prompts)


@pytest.mark.slow
def test_ray_backend_stores_and_dedupes(ray_worker, tiny_gpt2_dir):
    spec = lens_spec(tiny_gpt2_dir, "Once upon a time")
    before = ray_worker.computations
    first = compute(spec, worker=ray_worker, store=ray_worker.store)
    again = compute(spec, worker=ray_worker, store=ray_worker.store)
    assert again.meta.get("cache_hit") and ray_worker.computations == before + 1
    assert_same_result(first, again)


@pytest.mark.slow
def test_ray_backend_streams_the_jobs_progress(ray_worker, tiny_gpt2_dir):
    """The replica runs the same execute() as the local worker and streams each report:
    the job sees the model load and the run, not only "sent to a Ray replica"."""
    from analyses.runtime.service import result_key

    spec = lens_spec(tiny_gpt2_dir, "Progress, please")
    job = ray_worker.submit(spec, result_key(spec), store=False)
    job.wait(120)
    messages = [message for _, message in job.history]
    assert messages[0] == "sent to a Ray replica", messages
    assert any(message.startswith("loading ") for message in messages), messages
    assert "running" in messages, messages
    assert all(0.0 <= fraction <= 1.0 for fraction, _ in job.history)

