"""The app's training request: checked before anything loads, keyed by content, written
under trained/ (never over a shipped set); a transcoder asked for with a linear skip is
trained with one (its cfg says so and its weights hold it)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from analyses.core.errors import UserError
from analyses.dictionaries import train_job as tj


@pytest.mark.parametrize("fields, words", [
    ({"site": "blocks.0.nope"}, "site 'blocks.0.nope'"),
    ({"latents": 0}, "latents must be 1..4,096"),
    ({"latents": 8, "k": 9}, "k must be 1..8"),
    ({"k": 65, "latents": 1024}, "k must be 1..64"),
    ({"tokens": 100}, "training tokens must be 8,160..500,000"),
    ({"tokens": 10_000_000}, "training tokens must be 8,160..500,000"),
    ({"seed": -1}, "seed must be 0 or more"),
    ({"transcoder_skip": True}, "a linear skip is for transcoders only"),
    ({"transcoder_skip": True}, "site 'blocks.0.hook_resid_post' is an autoencoder's"),
])
def test_a_bad_request_names_what_is_wrong(fields, words):
    with pytest.raises(UserError, match=words.replace(".", r"\.")):
        tj.TrainRequest(**{"model": "default", "site": "blocks.0.hook_resid_post", **fields})


def test_equal_requests_share_a_key_and_a_folder_under_trained():
    a = tj.TrainRequest(model="default", site="blocks.1.mlp", latents=64, k=4, tokens=10_000)
    b = tj.TrainRequest(model="default", site="blocks.1.mlp", latents=64, k=4, tokens=10_000)
    c = tj.TrainRequest(model="default", site="blocks.1.mlp", latents=64, k=4, tokens=10_000, seed=1)
    assert a.key == b.key != c.key
    assert a.out(Path("/r")) == Path("/r/trained/tiny-circuits/64x4-10000-s0")


def test_the_skip_keys_its_own_job_and_folder():
    plain = tj.TrainRequest(model="default", site="blocks.1.mlp", latents=64, k=4, tokens=10_000)
    skip = tj.TrainRequest(model="default", site="blocks.1.mlp", latents=64, k=4, tokens=10_000,
                           transcoder_skip=True)
    assert plain.key != skip.key
    assert skip.out(Path("/r")) == Path("/r/trained/tiny-circuits/64x4-10000-s0-skip")


def test_a_job_asked_for_a_skip_trains_a_transcoder_with_one(tmp_path, monkeypatch):
    from analyses.dictionaries import formats
    from analyses.runtime.service import follow

    monkeypatch.setattr(tj, "EVAL_TOKENS", 8_160)  # one eval chunk: the job's path, not its size
    monkeypatch.setenv("ANALYSES_ACTIVATIONS", str(tmp_path / "activations"))
    request = tj.TrainRequest(model="default", site="blocks.1.mlp", latents=32, k=4, tokens=8_160,
                              transcoder_skip=True)
    worker = tj.TrainingWorker(root=tmp_path)
    try:
        trained = follow(tj.submit(request, worker), timeout=600)
    finally:
        worker.shutdown()
    folder = Path(trained.path)
    assert folder == request.out(tmp_path) / "blocks.1.mlp"
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["skip_connection"] is True and cfg["transcode"] is True
    weights = load_file(str(folder / "sae.safetensors"))
    d_in = cfg["d_in"]
    assert weights["W_skip"].shape == (d_in, d_in) and np.abs(weights["W_skip"]).max() > 0  # trained, not zeros
    coder = formats.load(folder)  # the loaded transcoder adds it: output = decode(encode(x)) + x @ W_skip.T
    x = torch.randn(5, d_in)
    expected = coder.decode(*coder.encode(x)).detach().numpy() + x.numpy() @ weights["W_skip"].T
    np.testing.assert_allclose(coder(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert 0 <= trained.metrics["dead_share"] <= 1 and np.isfinite(trained.metrics["explained_variance"])
