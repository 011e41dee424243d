"""`python -m analyses dictionaries train` end to end on stories260K (a second model, not the
embedded one): the directory it prints loads, and its metrics.json's explained variance, L0
and dead share are re-derived here in numpy from the weights and the cached eval activations.
Bad arguments exit 2 with one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "analyses", "dictionaries", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def numpy_metrics(weights: dict, cfg: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """TopK encode / decode written out in numpy: EV, L0, dead share over all tokens."""
    centred = x - weights["b_dec"] if not cfg["transcode"] else x
    pre = np.maximum(centred @ weights["encoder.weight"].T + weights["encoder.bias"], 0.0)  # [n, latent]
    k = cfg["k"]
    top = np.argpartition(-pre, k - 1, axis=1)[:, :k]  # [n, k]
    acts = np.take_along_axis(pre, top, axis=1)
    code = np.zeros_like(pre)
    np.put_along_axis(code, top, acts, axis=1)
    y_hat = code @ weights["W_dec"] + weights["b_dec"]
    sse = ((y - y_hat) ** 2).sum()
    fired = (code > 0).sum(axis=0)
    return {"explained_variance": 1 - sse / ((y - y.mean(0)) ** 2).sum(), "l0": (code > 0).sum(1).mean(),
            "dead_share": (fired == 0).mean()}


def test_dictionaries_train_on_stories260k_writes_a_dictionary_whose_metrics_numpy_recovers(
        stories260k_dir, tmp_path):
    from safetensors.numpy import load_file

    out, cache = tmp_path / "out", tmp_path / "cache"
    done = run_cli("train", "--model", str(stories260k_dir / "stories260K.bin"), "--site", "blocks.1.mlp",
                   "--latents", "64", "--k", "4", "--tokens", "16256", "--distinct-tokens", "8128",
                   "--eval-tokens", "4000",
                   "--ce-tokens", "254", "--ctx", "128", "--out", str(out), "--cache", str(cache),
                   env_extra={"ANALYSES_MODEL_ROOTS": str(stories260k_dir)})
    assert done.returncode == 0, done.stderr[-2000:]
    [folder] = map(Path, json.loads(done.stdout)["dictionaries"])
    assert folder == out / "blocks.1.mlp"
    assert "step" in done.stderr and "evaluating" in done.stderr  # progress on stderr
    cfg = json.loads((folder / "cfg.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert cfg["transcode"] and cfg["num_latents"] == 64 and cfg["k"] == 4
    assert cfg["tokens_seen"] == 16256 // 2048 * 2048
    # two epochs over a pool of two chunks (32 x 127 tokens each): only those are cached
    assert cfg["distinct_tokens"] == 8128 and len(list(cache.glob("*/train-s0-c128/chunk_*"))) == 2
    weights = {k: v.astype(np.float64) for k, v in load_file(str(folder / "sae.safetensors")).items()}
    [chunk] = (cache).glob("*/eval-s0-c128/chunk_00000.safetensors")  # 4,000 tokens: one chunk of 32 x 127
    stored = {k: v.astype(np.float64) for k, v in load_file(str(chunk)).items() if k != "tokens"}
    expected = numpy_metrics(weights, cfg, stored["blocks.1.mlp.hook_in"], stored["blocks.1.hook_mlp_out"])
    assert metrics["tokens"] == len(stored["blocks.1.mlp.hook_in"])
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-4), name
    assert metrics["ce_zero"] > metrics["ce_clean"] and np.isfinite(metrics["ce_recovered"])


@pytest.mark.parametrize("args, words", [
    (("--site", "blocks.0.hook_resid_post", "--k", "0"), "--k must be in 1..--latents"),
    (("--site", "blocks.0.nope"), "site 'blocks.0.nope'"),
    (("--site", "blocks.0.mlp", "--distinct-tokens", "0"), "--distinct-tokens"),
    (("--site", "blocks.0.mlp", "--threads", "0"), "--threads must be 1 or more"),
    (("--site", "blocks.0.mlp", "--mp-finetune-tokens", "1000"), "--mp-finetune-tokens: blocks.0.mlp is a transcoder"),
    (("--site", "blocks.0.attn.hook_z", "--mp-kl-finetune-tokens", "1000"),
     "--mp-kl-finetune-tokens fine-tunes through the pursuit: it needs --mp-finetune-tokens"),
    (("--site", "blocks.0.attn.hook_z", "--mp-finetune-tokens", "1000", "--mp-kl-finetune-tokens", "-1"),
     "--mp-kl-finetune-tokens must be 0 or more"),
    (("--site", "blocks.0.mlp", "--latents", "64", "--matryoshka", "64"),
     "--matryoshka sizes must be in 1..--latents - 1 (63), got 64"),
    (("--site", "blocks.0.mlp", "--matryoshka-release-tokens", "1000"),
     "--matryoshka-release-tokens drops the Matryoshka prefix terms: it needs --matryoshka"),
    (("--site", "blocks.0.mlp", "--matryoshka", "8", "--matryoshka-release-tokens", "-5"),
     "--matryoshka-release-tokens must be 0 or more, got -5"),
])
def test_bad_train_arguments_exit_2_with_one_line(args, words):
    done = run_cli("train", "--model", "default", *args)
    assert done.returncode == 2
    assert words in done.stderr and done.stderr.strip().count("\n") == 0 and not done.stdout
