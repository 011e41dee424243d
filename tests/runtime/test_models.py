"""analyses.models: resolving references, fingerprints, loading, the LRU, refusals, offline."""
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from analyses.core.errors import ModelError
from analyses.runtime import models
from analyses.runtime import offline as _offline
from conftest import TINY_ARCHS

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(autouse=True)
def fresh_cache():
    models.clear_cache()
    yield
    models.clear_cache()


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    """Point the Hugging Face cache at an empty folder: what is cached here never matters."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def hf_logits(model_dir: Path, tokens: torch.Tensor) -> torch.Tensor:
    """The Hugging Face model's own logits, eager attention as the bridge uses."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        return hf(tokens).logits  # [batch, pos, d_vocab]


# --------------------------------------------------------------------------- loading

@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_tiny_model_logits_match_hugging_face(tiny_model_dir, arch):
    model_dir = tiny_model_dir(arch)
    loaded = models.load(str(model_dir), device="cpu")
    bridge = loaded.bridge
    assert (loaded.source, loaded.device, loaded.dtype) == ("local_dir", "cpu", "float32")
    assert not bridge.training
    assert loaded.tokenizer is bridge.tokenizer
    tokens = bridge.to_tokens(PROMPT)  # [1, pos]
    logits, cache = bridge.run_with_cache(tokens)
    expected = hf_logits(model_dir, tokens)
    assert expected.std() > 0.5  # random weights big enough that a wrong mapping shows
    assert logits.shape == expected.shape
    assert torch.allclose(logits, expected, atol=1e-4), (logits - expected).abs().max()
    assert cache["blocks.1.hook_resid_post"].shape == (1, tokens.shape[1], bridge.cfg.d_model)


def test_tiny_llama_has_grouped_query_attention(tiny_llama_dir):
    cfg = models.load(str(tiny_llama_dir), device="cpu").bridge.cfg
    assert cfg.n_key_value_heads == 2 < cfg.n_heads == 4


def test_bfloat16_load(tiny_gpt2_dir):
    loaded = models.load(str(tiny_gpt2_dir), device="cpu", dtype="bfloat16")
    assert loaded.dtype == "bfloat16"
    assert {p.dtype for p in loaded.bridge.parameters()} == {torch.bfloat16}
    assert torch.isfinite(loaded.bridge(loaded.bridge.to_tokens(PROMPT)).float()).all()


def test_default_loads_the_embedded_model():
    if not (models.EMBEDDED_ROOT / models.DEFAULT_MODEL / "config.json").is_file():
        pytest.skip(f"the embedded model {models.DEFAULT_MODEL} is not trained yet "
                    "(python -m analyses.embedded)")
    loaded = models.load("default", device="cpu")
    assert loaded.source == "embedded" and loaded.ref == "default"
    assert loaded.fingerprint == models.fingerprint(models.DEFAULT_MODEL)
    assert models.load(models.DEFAULT_MODEL, device="cpu").bridge is loaded.bridge


def test_default_missing_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "EMBEDDED_ROOT", tmp_path)
    with pytest.raises(ModelError, match="python -m analyses.embedded"):
        models.resolve("default")


# --------------------------------------------------------------------------- the LRU

def test_lru_returns_the_same_object_for_the_same_key(tiny_gpt2_dir, monkeypatch):
    first = models.load(str(tiny_gpt2_dir), device="cpu")
    assert models.load(str(tiny_gpt2_dir), device="cpu") is first
    # Another spelling of the same folder shares the bridge but keeps its own `ref`.
    monkeypatch.chdir(tiny_gpt2_dir.parent)
    relative = models.load("./gpt2", device="cpu")
    assert relative.bridge is first.bridge and relative.ref == "./gpt2"
    # A different dtype is a different key.
    assert models.load(str(tiny_gpt2_dir), device="cpu", dtype="bfloat16").bridge is not first.bridge


def test_lru_evicts_the_least_recently_used(tiny_model_dir):
    refs = [str(tiny_model_dir(arch)) for arch in TINY_ARCHS]  # LRU_SIZE + 1 models
    assert len(refs) == models.LRU_SIZE + 1
    first = models.load(refs[0], device="cpu")
    for ref in refs[1:]:
        models.load(ref, device="cpu")
    assert len(models._LOADED) == models.LRU_SIZE
    assert models.load(refs[0], device="cpu") is not first  # evicted, loaded again


def test_concurrent_loads_boot_once(tiny_gpt2_dir, monkeypatch):
    boots = []
    real_boot = models._boot

    def counting_boot(*args):
        boots.append(args)
        time.sleep(0.2)  # widen the window in which the other threads arrive
        return real_boot(*args)

    monkeypatch.setattr(models, "_boot", counting_boot)
    results = []
    threads = [threading.Thread(target=lambda: results.append(models.load(str(tiny_gpt2_dir), device="cpu")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(boots) == 1
    assert len(results) == 4 and all(r is results[0] for r in results)


# --------------------------------------------------------------------------- fingerprints

def test_fingerprint_is_stable_content_addressed_and_cached(tiny_gpt2_dir, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_gpt2_dir, copy)
    fp = models.fingerprint(str(tiny_gpt2_dir))
    assert models.fingerprint(str(tiny_gpt2_dir)) == fp
    assert models.fingerprint(str(copy)) == fp  # same bytes, same fingerprint
    hashed = []
    monkeypatch.setattr(models, "_hash_files", lambda files: hashed.append(files) or "x")
    assert models.fingerprint(str(copy)) == fp  # memoised: nothing hashed again
    assert hashed == []


def test_fingerprint_changes_with_a_weight(tiny_gpt2_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "copy"
    shutil.copytree(tiny_gpt2_dir, copy)
    old = models.load(str(copy), device="cpu")
    before = models.fingerprint(str(copy))
    assert old.fingerprint == before
    weights = load_file(copy / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] += 1.0  # same size, same path, one number different
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    after = models.fingerprint(str(copy))
    assert after != before
    # And the loader does not hand back the model loaded under the old weights.
    new = models.load(str(copy), device="cpu")
    assert new.fingerprint == after and new.bridge is not old.bridge


def test_fingerprint_ignores_logs_but_not_tokenizer(tiny_gpt2_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_gpt2_dir, copy)
    before = models.fingerprint(str(copy))
    (copy / "training_log.json").write_text("{}")
    assert models.fingerprint(str(copy)) == before
    config = json.loads((copy / "tokenizer_config.json").read_text())
    (copy / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 32}))
    assert models.fingerprint(str(copy)) != before


# --------------------------------------------------------------------------- refusals

def test_float16_on_cpu_is_refused(tiny_gpt2_dir):
    with pytest.raises(ModelError, match="float16 on the CPU"):
        models.load(str(tiny_gpt2_dir), device="cpu", dtype="float16")


def test_unknown_dtype_and_device_are_refused(tiny_gpt2_dir):
    with pytest.raises(ModelError, match="unknown dtype"):
        models.load(str(tiny_gpt2_dir), device="cpu", dtype="int8")
    with pytest.raises(ModelError, match="unknown device"):
        models.load(str(tiny_gpt2_dir), device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused(tiny_gpt2_dir):
    with pytest.raises(ModelError, match="no CUDA GPU"):
        models.load(str(tiny_gpt2_dir), device="cuda")


@pytest.mark.parametrize("ref", [
    "../../etc/passwd", "/etc/passwd", "/etc", "~/.ssh/id_rsa", "../../../../tmp/model.bin",
])
def test_paths_outside_the_roots_are_refused(ref, model_roots):
    with pytest.raises(ModelError, match="outside the folders") as err:
        models.resolve(ref)
    assert str(model_roots[0]) in str(err.value)


@pytest.mark.parametrize("ref", [
    "file:///etc/passwd", "http://example.com/model.bin", "https://huggingface.co/gpt2",
    "hf://gpt2",
])
def test_urls_are_refused(ref):
    with pytest.raises(ModelError, match="URLs are not model references") as err:
        models.resolve(ref)
    assert str(models.allowed_roots()[0]) in str(err.value)


def test_a_link_out_of_the_roots_is_refused(model_roots, tmp_path):
    (tmp_path / "escape").symlink_to("/etc")
    with pytest.raises(ModelError, match="outside the folders"):
        models.resolve(str(tmp_path / "escape"))


def test_roots_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(models.ROOTS_ENV, f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert models.allowed_roots() == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.delenv(models.ROOTS_ENV)
    assert models.EMBEDDED_ROOT.resolve() in models.allowed_roots()
    assert Path.cwd().resolve() in models.allowed_roots()


def test_missing_path_and_non_models_say_so(model_roots, tmp_path):
    with pytest.raises(ModelError, match="no such file or directory"):
        models.resolve(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        models.resolve(str(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="not a model"):
        models.resolve(str(tmp_path / "notes.txt"))
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 40)
    with pytest.raises(ModelError, match="not a llama2.c checkpoint"):
        models.resolve(str(tmp_path / "junk.bin"))


@pytest.mark.parametrize("ref", ["", "   ", "a b", "org/name/extra/..", "bad--name", "gpt2\x00", "x\ny"])
def test_malformed_references_are_refused(ref, model_roots):
    with pytest.raises(ModelError):
        models.resolve(ref)


def test_a_broken_model_dir_is_a_model_error(model_roots, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelError, match="cannot load") as err:
        models.load(str(broken), device="cpu")
    assert "\n" not in str(err.value)  # the CLI prints errors on one line
    assert models._LOADING == {}  # a failed load leaves no lock behind


# --------------------------------------------------------------------------- resolving

def test_resolve_classifies_references(tiny_gpt2_dir, model_roots, tmp_path, monkeypatch):
    assert models.resolve("gpt2") == models.Resolved("huggingface", hub_id="gpt2")
    assert models.resolve("EleutherAI/pythia-70m").hub_id == "EleutherAI/pythia-70m"
    assert models.resolve(str(tiny_gpt2_dir)) == models.Resolved("local_dir", path=tiny_gpt2_dir.resolve())
    # An owner/name folder that exists here is a local directory, as in transformers.
    monkeypatch.chdir(tiny_gpt2_dir.parent.parent)
    local = f"{tiny_gpt2_dir.parent.name}/{tiny_gpt2_dir.name}"
    assert models.resolve(local).source == "local_dir"
    # An embedded name wins over the hub.
    monkeypatch.setattr(models, "EMBEDDED_ROOT", tiny_gpt2_dir.parent)
    assert models.resolve("gpt2") == models.Resolved("embedded", path=tiny_gpt2_dir.resolve())


# --------------------------------------------------------------------------- the hub cache

def test_unknown_hub_id_offline_fails_fast_and_helpfully(monkeypatch, empty_hub_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelError) as err:
        models.load("no-such-org/no-such-model-3141", device="cpu")
    assert time.perf_counter() - started < 5.0
    message = str(err.value)
    for said in ("embedded models", "local path", "Hugging Face cache", "hf download",
                 "huggingface-cli download",
                 "local model directory", "HF_HUB_OFFLINE"):
        assert said in message
    with pytest.raises(ModelError, match="Hugging Face cache"):
        models.fingerprint("no-such-org/no-such-model-3141")


def fake_hub_snapshot(cache: Path, hub_id: str, model_dir: Path, commit: str) -> Path:
    """Lay out `model_dir` as huggingface_hub caches a download of `hub_id` at `commit`."""
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_hub_id_loads_from_the_local_cache_offline(tiny_gpt2_dir, empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0123456789abcdef0123456789abcdef01234567"
    fake_hub_snapshot(empty_hub_cache, "tiny-org/tiny-gpt2", tiny_gpt2_dir, commit)
    assert models.fingerprint("tiny-org/tiny-gpt2") == f"tiny-org/tiny-gpt2@{commit}"
    loaded = models.load("tiny-org/tiny-gpt2", device="cpu")
    assert loaded.source == "huggingface" and loaded.fingerprint.endswith(commit)
    tokens = loaded.bridge.to_tokens(PROMPT)
    assert torch.allclose(loaded.bridge(tokens), hf_logits(tiny_gpt2_dir, tokens), atol=1e-4)


def test_available_lists_embedded_and_cached_models(tiny_gpt2_dir, empty_hub_cache, monkeypatch):
    monkeypatch.setattr(models, "EMBEDDED_ROOT", tiny_gpt2_dir.parent)
    fake_hub_snapshot(empty_hub_cache, "tiny-org/tiny-gpt2", tiny_gpt2_dir, "a" * 40)
    rows = models.available()
    json.dumps(rows)  # the CLI prints it as it is
    by_ref = {row["ref"]: row for row in rows}
    assert by_ref["gpt2"]["source"] == "embedded"
    assert by_ref["tiny-org/tiny-gpt2"] == {**by_ref["tiny-org/tiny-gpt2"], "source": "huggingface",
                                           "revision": "a" * 40}


# --------------------------------------------------------------------------- offline switch

def test_offline_switch_respects_an_explicit_setting(monkeypatch):
    monkeypatch.setattr(_offline, "_decided", False)  # as in a fresh process
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(_offline, "hub_reachable", lambda *a, **k: pytest.fail("probed the network"))
    _offline.ensure_offline_if_unreachable()
    assert _offline.os.environ["HF_HUB_OFFLINE"] == "0"


@pytest.mark.parametrize("reachable, expected", [(False, "1"), (True, None)])
def test_offline_switch_follows_reachability(monkeypatch, reachable, expected):
    monkeypatch.setattr(_offline, "_decided", False)  # as in a fresh process
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(_offline, "hub_reachable", lambda *a, **k: reachable)
    _offline.ensure_offline_if_unreachable()
    assert _offline.os.environ.get("HF_HUB_OFFLINE") == expected


def test_hub_reachable_is_false_for_a_closed_port():
    with socket.socket() as s:  # bind, never listen: connecting is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        started = time.perf_counter()
        assert not _offline.hub_reachable("127.0.0.1", port, timeout=1.5)
    assert time.perf_counter() - started < 2.0


def test_offline_switch_probes_once_per_process(monkeypatch):
    probes = []
    monkeypatch.setattr(_offline, "_decided", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(_offline, "hub_reachable", lambda *a, **k: probes.append(1) or True)
    _offline.ensure_offline_if_unreachable()
    _offline.ensure_offline_if_unreachable()
    assert probes == [1]


# --------------------------------------------------------------------------- who may load what

def booting_is_an_error(monkeypatch):
    """Any boot from here on fails the test: a refusal must come before weights are read."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was booted")

    monkeypatch.setattr(models, "_boot", refuse)


def test_without_an_allowlist_or_a_cap_every_reference_loads_as_before(tiny_gpt2_dir, monkeypatch):
    monkeypatch.delenv("ANALYSES_MODEL_ALLOWLIST", raising=False)
    monkeypatch.delenv("ANALYSES_MAX_PARAMS", raising=False)
    assert models.load(str(tiny_gpt2_dir), device="cpu").source == "local_dir"


def test_the_allowlist_refuses_other_hub_ids_and_paths_naming_the_rule(tiny_gpt2_dir, empty_hub_cache,
                                                                       monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub_snapshot(empty_hub_cache, "tiny-org/tiny-gpt2", tiny_gpt2_dir, "b" * 40)
    fake_hub_snapshot(empty_hub_cache, "other-org/tiny-gpt2", tiny_gpt2_dir, "c" * 40)
    monkeypatch.setenv("ANALYSES_MODEL_ALLOWLIST", "gpt2, tiny-org/*")
    assert models.load("tiny-org/tiny-gpt2", device="cpu").source == "huggingface"
    booting_is_an_error(monkeypatch)
    for ref in ("other-org/tiny-gpt2", str(tiny_gpt2_dir)):
        with pytest.raises(ModelError, match=rf"model {ref!r} is not allowed on this server: "
                                             r"ANALYSES_MODEL_ALLOWLIST allows only gpt2, tiny-org/\*"):
            models.load(ref, device="cpu")


def test_the_embedded_models_are_always_allowed(monkeypatch):
    monkeypatch.setenv("ANALYSES_MODEL_ALLOWLIST", "gpt2")
    monkeypatch.setenv("ANALYSES_MAX_PARAMS", "1")
    from analyses.runtime import model_policy

    for ref in ("default", models.DEFAULT_MODEL):
        model_policy.check(ref, models.resolve(ref))  # no error


def test_a_local_path_is_allowed_by_a_pattern_on_its_path(tiny_gpt2_dir, monkeypatch):
    monkeypatch.setenv("ANALYSES_MODEL_ALLOWLIST", f"{tiny_gpt2_dir.parent}/*")
    assert models.load(str(tiny_gpt2_dir), device="cpu").source == "local_dir"


def test_the_parameter_count_comes_from_the_config_alone(tiny_gpt2_dir, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from analyses.runtime import model_policy

    for folder in (tiny_gpt2_dir, tiny_llama_dir):
        expected = AutoModelForCausalLM.from_pretrained(folder).num_parameters()
        assert model_policy.parameter_count(folder / "config.json") == expected


def test_a_model_over_the_parameter_cap_is_refused_before_its_weights_load(tiny_gpt2_dir, empty_hub_cache,
                                                                           monkeypatch):
    from analyses.runtime import model_policy

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub_snapshot(empty_hub_cache, "tiny-org/tiny-gpt2", tiny_gpt2_dir, "d" * 40)
    n = model_policy.parameter_count(tiny_gpt2_dir / "config.json")
    monkeypatch.setenv("ANALYSES_MAX_PARAMS", str(n))  # exactly the cap is fine
    assert models.load("tiny-org/tiny-gpt2", device="cpu").source == "huggingface"
    models.clear_cache()
    monkeypatch.setenv("ANALYSES_MAX_PARAMS", f"{n - 1}.0")
    booting_is_an_error(monkeypatch)
    for ref in ("tiny-org/tiny-gpt2", str(tiny_gpt2_dir)):
        with pytest.raises(ModelError, match=rf"model {ref!r} has {n:,} parameters; this server loads "
                                             rf"at most {n - 1:,} \(ANALYSES_MAX_PARAMS\)"):
            models.load(ref, device="cpu")


def test_a_bad_parameter_cap_is_named(monkeypatch, tiny_gpt2_dir):
    monkeypatch.setenv("ANALYSES_MAX_PARAMS", "two billion")
    with pytest.raises(ModelError, match="ANALYSES_MAX_PARAMS='two billion'"):
        models.load(str(tiny_gpt2_dir), device="cpu")
