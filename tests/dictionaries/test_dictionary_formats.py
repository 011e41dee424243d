"""Dictionaries on disk: our save -> load round-trips exactly; a SAELens-format directory
written by hand and sparsify's own directories load to the same encodings; sparsify loads ours."""
import json

import pytest
import torch
from safetensors.torch import save_file
from tiny_dictionaries import random_coder, random_inputs

from analyses.core.errors import UserError
from analyses.dictionaries import formats


def same_encoding(a, b, x):
    with torch.no_grad():
        acts_a, idx_a = a.encode(x)
        acts_b, idx_b = b.encode(x)
        torch.testing.assert_close(a.dense(acts_a, idx_a), b.dense(acts_b, idx_b), rtol=0, atol=0)
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_save_load_round_trips_exactly(tmp_path):
    coder = random_coder(transcode=True, skip_connection=True)
    coder.cfg.site, coder.cfg.model_fingerprint, coder.cfg.tokens_seen = "blocks.0.mlp", "abc", 1234
    formats.save(coder, tmp_path / "d")
    loaded = formats.load(tmp_path / "d")
    assert loaded.cfg == coder.cfg
    for name, value in coder.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    same_encoding(coder, loaded, random_inputs())


def write_saelens(folder, coder, cfg_extra):
    folder.mkdir()
    sd = coder.state_dict()
    save_file({"W_enc": sd["encoder.weight"].T.contiguous(), "b_enc": sd["encoder.bias"],
               "W_dec": sd["W_dec"], "b_dec": sd["b_dec"]}, str(folder / "sae_weights.safetensors"))
    cfg = {"d_in": coder.cfg.d_in, "d_sae": coder.cfg.num_latents, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", **cfg_extra}
    (folder / "cfg.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("cfg_extra", [
    # SAELens 6
    {"architecture": "topk", "k": 4, "metadata": {"hook_name": "blocks.1.hook_resid_post", "model_name": "m"}},
    {"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}, "hook_name": "blocks.1.hook_resid_post"},  # 5
])
def test_saelens_directory_written_by_hand_loads_to_same_encodings(tmp_path, cfg_extra):
    coder = random_coder()
    write_saelens(tmp_path / "sae", coder, cfg_extra)
    loaded = formats.load(tmp_path / "sae")
    assert loaded.cfg.site == "blocks.1.hook_resid_post" and loaded.cfg.k == 4
    same_encoding(coder, loaded, random_inputs())


def test_saelens_relu_sae_is_refused_by_name(tmp_path):
    write_saelens(tmp_path / "sae", random_coder(), {"architecture": "jumprelu"})
    with pytest.raises(UserError, match="jumprelu"):
        formats.load(tmp_path / "sae")


def test_not_a_dictionary_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no cfg.json"):
        formats.load(tmp_path)


def sparsify_coder_class():
    sparse_coder = pytest.importorskip("sparsify.sparse_coder", reason="eai-sparsify is not installed")
    return sparse_coder.SparseCoder, pytest.importorskip("sparsify.config").SparseCoderConfig


@pytest.mark.parametrize("transcode", [False, True])
def test_sparsify_saved_directory_loads_to_same_encodings(tmp_path, transcode):
    SparsifyCoder, SparsifyConfig = sparsify_coder_class()
    torch.manual_seed(0)
    theirs = SparsifyCoder(8, SparsifyConfig(num_latents=32, k=4, transcode=transcode, skip_connection=transcode))
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p))
    theirs.save_to_disk(tmp_path / "h.0")
    ours = formats.load(tmp_path / "h.0")
    x = random_inputs()
    with torch.no_grad():
        their_acts, their_idx, _ = theirs.encode(x)
        our_acts, our_idx = ours.encode(x)
        torch.testing.assert_close(ours.dense(our_acts, our_idx), ours.dense(their_acts, their_idx), rtol=0, atol=0)
        their_out = theirs.decode(their_acts, their_idx) + (x @ theirs.W_skip.mT if transcode else 0)
        torch.testing.assert_close(ours(x), their_out, rtol=1e-6, atol=1e-6)


def test_sparsify_loads_our_directory_to_same_encodings(tmp_path):
    SparsifyCoder, _ = sparsify_coder_class()
    ours = random_coder()
    ours.cfg.site = "blocks.1.hook_resid_post"  # extra fields: sparsify drops them
    formats.save(ours, tmp_path / "d")
    theirs = SparsifyCoder.load_from_disk(tmp_path / "d")
    x = random_inputs()
    with torch.no_grad():
        their_acts, their_idx, _ = theirs.encode(x)
        our_acts, our_idx = ours.encode(x)
        torch.testing.assert_close(ours.dense(their_acts, their_idx), ours.dense(our_acts, our_idx), rtol=0, atol=0)
        torch.testing.assert_close(theirs.decode(their_acts, their_idx), ours(x), rtol=1e-6, atol=1e-6)
