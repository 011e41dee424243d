"""A graph on stories260K (a real pretrained Llama-style model, gated MLPs, RMSNorm, rotary
positions) with transcoders trained here by `dictionaries train` (small, to keep the test short)."""
import numpy as np
import pytest

from analyses import AnalysisSpec

pytestmark = pytest.mark.usefixtures("private_cache")


def test_a_graph_builds_on_stories260k_with_transcoders_trained_here(stories260k_dir, model_roots, tmp_path):
    from analyses.dictionaries.pipeline import Plan, train
    from analyses.kinds.graph.run import run
    from analyses.runtime import models

    model_ref = str(stories260k_dir / "stories260K.bin")
    loaded = models.load(model_ref)
    n_layers = loaded.bridge.cfg.n_layers
    out = tmp_path / "transcoders"
    train(Plan(model=model_ref, sites=tuple(f"blocks.{layer}.mlp" for layer in range(n_layers)),
               num_latents=64, k=4, tokens=8_128, eval_tokens=4_000, ce_tokens=254, n_ctx=128, out=out,
               cache=tmp_path / "cache"))
    result = run(loaded, AnalysisSpec(kind="graph", model=model_ref, prompt="Once upon a time, Lily saw a cat. Lily",
                                      transcoders=str(out)))
    assert result.meta["replacement_error"] <= 1e-4
    nodes, scores = result.tables["nodes"], result.tables["scores"]
    assert (nodes["type"] == "latent").sum() > 0 and nodes["kept"].any()
    assert scores[["replacement", "completeness"]].stack().between(0, 1).all()
    # each logit's incoming edges + bias are its value (logit - mean logit)
    logits = result.tables["logits"]
    assert np.all(np.isfinite(logits["bias"])) and len(logits) <= 10
