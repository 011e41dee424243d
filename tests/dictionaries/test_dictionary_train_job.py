"""The app's training request: checked before anything loads, keyed by content, written
under trained/ (never over a shipped set)."""
from pathlib import Path

import pytest

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
