"""Training a dictionary as a job: what the app's dictionaries page submits.

A `TrainRequest` says what to train (checked without torch, so a bad form is answered
before anything loads); `submit(request)` hands it to the training worker, a `Worker` with
one thread (one training at a time: they share the machine's cores), so the page follows
it with the same job machinery every analysis uses: progress, cancel, a time limit, equal
requests sharing one job, bad input failing the job with its message.

A trained dictionary goes to `data/dictionaries/trained/<model>/<latents>x<k>-<tokens>-s<seed>/<site>/`
(`…-s<seed>-skip/` for a transcoder with a linear skip; never the shipped folder), where
`registry.listing` finds it.
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from analyses.core.errors import UserError
from analyses.runtime.jobs import Job, Worker

SITE_PATTERN = re.compile(r"^blocks\.\d+\.(hook_resid_post|attn\.hook_z|mlp)$")
# bounds of a dictionary trained from the page: small enough to finish inside a job's time limit
MAX_LATENTS = 4096
MAX_K = 64
MIN_TOKENS, MAX_TOKENS = 8_160, 500_000  # one activation chunk .. about a minute of training
EVAL_TOKENS = 20_000  # held-out tokens of its metrics (the shipped ones use 100k)
TRAINED = "trained"  # the folder under data/dictionaries/ for dictionaries trained here


@dataclass(frozen=True)
class TrainRequest:
    model: str
    site: str
    latents: int = 256
    k: int = 16
    tokens: int = 100_000
    seed: int = 0
    # a transcoder's linear skip, MLP input -> output (sparsify's `skip_connection`, the CLI's
    # --transcoder-skip): only for MLP sites, the only ones with an input and an output to join
    transcoder_skip: bool = False
    kind: str = "dictionary training"  # what the worker's messages call this job

    def __post_init__(self):
        if not SITE_PATTERN.match(self.site):
            raise UserError(f"site {self.site!r}: expected blocks.L.hook_resid_post, blocks.L.attn.hook_z "
                            "or blocks.L.mlp")
        if not 1 <= self.latents <= MAX_LATENTS:
            raise UserError(f"latents must be 1..{MAX_LATENTS:,}, got {self.latents:,}")
        if not 1 <= self.k <= min(self.latents, MAX_K):
            raise UserError(f"k must be 1..{min(self.latents, MAX_K)} (at most the latents and {MAX_K}), "
                            f"got {self.k}")
        if not MIN_TOKENS <= self.tokens <= MAX_TOKENS:
            raise UserError(f"training tokens must be {MIN_TOKENS:,}..{MAX_TOKENS:,} here (the CLI trains "
                            f"more), got {self.tokens:,}")
        if self.seed < 0:
            raise UserError(f"seed must be 0 or more, got {self.seed}")
        if self.transcoder_skip and not self.site.endswith(".mlp"):
            raise UserError(f"a linear skip is for transcoders only (blocks.L.mlp); site {self.site!r} is "
                            "an autoencoder's")

    @property
    def key(self) -> str:
        """Equal requests share one job."""
        text = repr(sorted(asdict(self).items()))
        return "dictionary-train/" + hashlib.sha256(text.encode()).hexdigest()[:24]

    def out(self, root: Path) -> Path:
        """The folder holding this request's site directory."""
        from analyses.dictionaries import registry

        return root / TRAINED / registry.model_slug(self.model) / \
            f"{self.latents}x{self.k}-{self.tokens}-s{self.seed}{'-skip' if self.transcoder_skip else ''}"


@dataclass(frozen=True)
class Trained:
    """A finished training job's result: where the dictionary is and its metrics."""

    path: str
    metrics: dict


class TrainingWorker(Worker):
    """Runs TrainRequests (as `Job.spec`) through the pipeline; results are not put in the
    analysis store (the dictionary directory is the artefact). The model's lock (shared with
    the process's analysis worker, where it has one) is held while it trains: hooks are not
    thread-safe and training reads the same loaded model."""

    def __init__(self, root: Path | None = None, model_lock=None):
        super().__init__(threads=1, max_queued=4)
        self.root = root
        self._model_lock = model_lock

    def _execute(self, job: Job, device, dtype, progress):
        from analyses.dictionaries import pipeline, registry
        from analyses.runtime import models
        from analyses.runtime.execute import Execution
        from analyses.runtime.stack import import_model_stack

        request: TrainRequest = job.spec
        root = Path(self.root) if self.root else registry.ROOT
        progress(0.0, f"loading {request.model}")
        import_model_stack()
        loaded = models.load(request.model, device="cpu")
        plan = pipeline.Plan(model=request.model, sites=(request.site,), num_latents=request.latents,
                             k=request.k, transcoder_skip=request.transcoder_skip,
                             tokens=request.tokens, eval_tokens=EVAL_TOKENS,
                             ce_tokens=EVAL_TOKENS // 2, seed=request.seed, out=request.out(root), threads=None)
        lock = self._model_lock(loaded.fingerprint) if self._model_lock else threading.Lock()
        with lock:
            from analyses.runtime.jobs import State

            job.state = State.RUNNING
            [folder] = pipeline.train(plan, progress=progress)
        from analyses.dictionaries import files

        return Execution(Trained(str(folder), files.read_metrics(folder)), loaded.fingerprint, 0, 0.0)


_WORKER: TrainingWorker | None = None
_GUARD = threading.Lock()


def training_worker() -> TrainingWorker:
    """The process's training worker, sharing the local analysis worker's model locks."""
    global _WORKER
    with _GUARD:
        if _WORKER is None:
            from analyses.runtime.workers import default_worker

            _WORKER = TrainingWorker(model_lock=getattr(default_worker(), "model_lock", None))
        return _WORKER


def submit(request: TrainRequest, worker: TrainingWorker | None = None) -> Job:
    worker = worker or training_worker()
    return worker.submit(request, request.key, store=False)
