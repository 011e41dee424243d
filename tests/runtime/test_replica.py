"""A Ray replica's own logic, without Ray: the replica class is a plain Python class, so
its generator can be driven (and abandoned, as a cancelled job's stream is) right here."""
import threading
import time

from analyses.core.catalogue import CATALOGUE
from analyses.kinds.logit_lens import run as lens_run
from analyses.runtime.ray_worker import DONE, PROGRESS, AnalysisReplica
from helpers import lens_spec


def test_a_cancelled_job_still_running_on_a_replica_keeps_the_model_until_it_stops(tiny_gpt2_dir):
    """Cancelling ends the stream at once, but the replica's thread runs on until its next
    progress report: the next request on that replica must wait for the model's lock
    instead of running its hooks on the same model at the same time."""
    inside, overlaps, first_in = [], [], threading.Event()
    lock = threading.Lock()

    def slow_run(model, spec, progress):
        with lock:
            inside.append(spec.prompt)
            if len(inside) > 1:
                overlaps.append(tuple(inside))
        first_in.set()
        time.sleep(1.0)  # a long batch between two progress reports
        with lock:
            inside.remove(spec.prompt)
        return lens_run(model, spec, progress)

    replica = AnalysisReplica(catalogue=CATALOGUE.replacing("logit_lens", runner=slow_run))
    first = replica.run(lens_spec(tiny_gpt2_dir, "first job").to_json(), "cpu", "float32")
    while not first_in.is_set():
        assert next(first)[0] == PROGRESS
    first.close()  # the caller cancelled: the stream ends, the thread runs on
    second = list(replica.run(lens_spec(tiny_gpt2_dir, "second job").to_json(), "cpu", "float32"))
    assert second[-1][0] == DONE, second[-1]
    assert overlaps == []
