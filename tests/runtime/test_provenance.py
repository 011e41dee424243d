"""What a stored result was made with: the hub snapshot it is keyed by is the one loaded, and
a result made with other library versions is served, saying so."""
import shutil

import pytest
from test_store_eviction import lens_result

from analyses.runtime import models
from analyses.runtime import store as store_module
from analyses.runtime.store import Store


@pytest.fixture
def hub_cache(monkeypatch, tmp_path):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models.clear_cache()
    yield cache
    models.clear_cache()


def test_a_hub_model_loads_the_snapshot_its_key_names(tiny_gpt2_dir, hub_cache, monkeypatch):
    """Two snapshots cached; `main` names the older one. The fingerprint says which commit
    the results are keyed by, and the loader is asked for exactly that commit."""
    from transformer_lens.model_bridge import TransformerBridge

    repo = hub_cache / "models--tiny-org--tiny-gpt2"
    keyed, other = "1" * 40, "2" * 40
    for commit in (keyed, other):
        shutil.copytree(tiny_gpt2_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(keyed)
    asked = []
    real_boot = TransformerBridge.boot_transformers

    def recording_boot(name, **kwargs):
        asked.append((name, kwargs.get("revision")))
        return real_boot(name, **kwargs)

    monkeypatch.setattr(TransformerBridge, "boot_transformers", recording_boot)
    loaded = models.load("tiny-org/tiny-gpt2", device="cpu")
    assert loaded.fingerprint == f"tiny-org/tiny-gpt2@{keyed}"
    assert asked == [("tiny-org/tiny-gpt2", keyed)]


def test_a_local_model_is_loaded_without_a_revision(tiny_gpt2_dir, monkeypatch):
    from transformer_lens.model_bridge import TransformerBridge

    asked = []
    real_boot = TransformerBridge.boot_transformers
    monkeypatch.setattr(TransformerBridge, "boot_transformers",
                        lambda name, **kw: asked.append(kw.get("revision")) or real_boot(name, **kw))
    models.clear_cache()
    models.load(str(tiny_gpt2_dir), device="cpu")
    assert asked == [None]


def test_library_versions_include_this_package():
    versions = store_module.library_versions()
    assert {"torch", "transformers", "transformer-lens", "duckdb", "interpretability-workbench"} <= set(versions)


def test_a_result_made_with_other_versions_is_served_and_says_so(tmp_path, monkeypatch):
    store = Store(tmp_path / "cache.duckdb")
    here = store_module.library_versions()
    then = {**here, "torch": "1.0.0"}
    monkeypatch.setattr(store_module, "library_versions", lambda: then)
    assert store.put("k", lens_result("old", rows=3), "fp", 1)
    monkeypatch.setattr(store_module, "library_versions", lambda: here)
    hit = store.get("k")
    assert hit.meta["library_versions"] == then
    assert hit.meta["made_with_other_versions"] == [f"torch 1.0.0 (this server runs {here['torch']})"]
    assert store.put("same", lens_result("now", rows=3), "fp", 1)
    now = store.get("same")
    assert now.meta["library_versions"] == here and now.meta["made_with_other_versions"] == []
