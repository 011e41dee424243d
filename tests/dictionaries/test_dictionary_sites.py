"""Sites on real bridges: the hooks exist, hold the tensors we say, and splices replace only
where asked (the embedded model; stories260K trains a small dictionary end to end)."""
import json

import pytest
import torch

from analyses.core.errors import UserError
from analyses.dictionaries import sites as st


def test_site_names_parse_and_refuse_clearly():
    site = st.parse("blocks.2.mlp")
    assert (site.input_hook, site.output_hook) == ("blocks.2.mlp.hook_in", "blocks.2.hook_mlp_out")
    assert site.transcode
    assert st.parse("blocks.0.attn.hook_z").input_hook == "blocks.0.attn.hook_z"
    with pytest.raises(UserError, match="layers 0..2"):
        st.parse("blocks.3.hook_resid_post", n_layers=3)
    with pytest.raises(UserError, match="expected blocks.L"):
        st.parse("blocks.1.hook_resid_pre")
    assert len(st.every_site(3)) == 9


def test_sites_read_the_right_tensors_and_splice_only_where_masked(embedded):
    bridge = embedded.bridge
    tokens = bridge.to_tokens("Once upon a time, there was a happy girl named Lily.")
    sites = [st.parse(n) for n in ("blocks.1.hook_resid_post", "blocks.1.attn.hook_z", "blocks.1.mlp")]
    values = st.read(bridge, tokens, sites)
    _, cache = bridge.run_with_cache(tokens)
    assert values["blocks.1.attn.hook_z"].shape[-1] == bridge.cfg.n_heads * bridge.cfg.d_head
    torch.testing.assert_close(values["blocks.1.attn.hook_z"], cache["blocks.1.attn.hook_z"].flatten(-2))
    torch.testing.assert_close(values["blocks.1.mlp.hook_in"], cache["blocks.1.ln2.hook_out"])
    clean = bridge(tokens)
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[:, 3:] = True
    for site in sites:
        seen = {}

        def replace(x, site=site, seen=seen):
            seen["x"] = x
            return torch.zeros_like(x)
        with st.spliced(bridge, site, replace, mask):
            out = bridge(tokens)
        torch.testing.assert_close(seen["x"], values[site.input_hook])  # the transcoder reads MLP input
        torch.testing.assert_close(out[:, :3], clean[:, :3])  # unmasked positions stay clean
        assert (out[:, 3:] - clean[:, 3:]).abs().max() > 1e-3
    torch.testing.assert_close(bridge(tokens), clean)  # no hook left behind


def _capture_equals_run_with_cache(bridge, tokens):
    for site in st.every_site(bridge.cfg.n_layers):
        names = {site.input_hook, site.output_hook}
        _, cache = bridge.run_with_cache(tokens, names_filter=lambda n, names=names: n in names)
        for stop in (None, site.layer + 1):
            got = st.captured(bridge, tokens, names, stop_at_layer=stop)
            assert set(got) == names
            for name in names:
                assert torch.equal(got[name], st.flat(cache[name])), (site.name, name, stop)


def test_captured_reads_what_run_with_cache_does_at_every_site(embedded):
    """The light capture (hooks on the hook points, a forward stopped after the site's block)
    against TransformerLens's run_with_cache, value for value, at every site of the model."""
    bridge = embedded.bridge
    tokens = bridge.to_tokens("When Mary and John went to the store, John gave a drink to")
    _capture_equals_run_with_cache(bridge, tokens)


def test_captured_reads_what_run_with_cache_does_on_a_llama_model(stories260k_dir):
    from analyses.runtime import models

    bridge = models.load(str(stories260k_dir / "stories260K.bin")).bridge
    _capture_equals_run_with_cache(bridge, torch.tensor([[1, 403, 261, 378, 129, 300, 291]]))


def test_a_capture_inside_a_splice_reads_the_splice_and_leaves_its_hook(embedded):
    """Read while a splice is on: the capture sees the spliced output (its hook runs after the
    splice's), and removing the capture's hooks leaves the splice's in place."""
    bridge = embedded.bridge
    tokens = bridge.to_tokens("Once upon a time, there was a happy girl named Lily.")
    site = st.parse("blocks.1.hook_resid_post")
    clean = bridge(tokens)
    with st.spliced(bridge, site, torch.zeros_like):
        got = st.captured(bridge, tokens, {site.output_hook})
        assert not got[site.output_hook].any()
        spliced = bridge(tokens)
    assert (spliced - clean).abs().max() > 1e-3  # the splice was still on after the capture
    torch.testing.assert_close(bridge(tokens), clean)  # and nothing is left behind


def test_train_a_small_dictionary_on_stories260k(stories260k_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSES_MODEL_ROOTS", str(stories260k_dir))
    from analyses.dictionaries import formats
    from analyses.dictionaries.pipeline import Plan, train
    from analyses.dictionaries.train import TrainSettings

    plan = Plan(model=str(stories260k_dir / "stories260K.bin"), sites=("blocks.2.hook_resid_post",),
                num_latents=64, k=4, tokens=4064, eval_tokens=2000, ce_tokens=200, n_ctx=128,
                out=tmp_path / "out", cache=tmp_path / "cache", settings=TrainSettings(batch_size=512, warmup_steps=2))
    [folder] = train(plan)
    metrics = json.loads((folder / "metrics.json").read_text())
    coder = formats.load(folder)
    assert coder.cfg.d_in == 64 and coder.cfg.tokens_seen == 7 * 512
    assert 0 < metrics["l0"] <= 4 and metrics["explained_variance"] > 0
    assert metrics["ce_zero"] > metrics["ce_clean"]
