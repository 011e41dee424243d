"""The sparse coder's two verbs against an independent numpy re-derivation."""
import numpy as np
import torch
from tiny_dictionaries import random_coder, random_inputs


def numpy_encode(x, W_enc, b_enc, b_dec, k, center=True):
    pre = np.maximum((x - b_dec if center else x) @ W_enc.T + b_enc, 0.0)
    idx = np.argsort(-pre, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(pre, idx, -1), idx


def numpy_decode(acts, idx, W_dec, b_dec):
    return np.einsum("nk,nkd->nd", acts, W_dec[idx]) + b_dec


def params(coder):
    return {k: v.detach().double().numpy() for k, v in coder.state_dict().items()}


def test_encode_decode_match_numpy():
    coder = random_coder()
    x = random_inputs()
    p = params(coder)
    with torch.no_grad():
        top_acts, top_indices = coder.encode(x)
    acts_np, idx_np = numpy_encode(x.double().numpy(), p["encoder.weight"], p["encoder.bias"], p["b_dec"], 4)
    np.testing.assert_allclose(top_acts.numpy(), acts_np, rtol=1e-5, atol=1e-6)
    assert (top_indices.numpy() == idx_np).all()
    np.testing.assert_allclose(coder.decode(top_acts, top_indices).detach().numpy(),
                               numpy_decode(acts_np, idx_np, p["W_dec"], p["b_dec"]), rtol=1e-5, atol=1e-5)


def test_transcoder_skips_centering_and_adds_skip():
    coder = random_coder(transcode=True, skip_connection=True)
    x = random_inputs()
    p = params(coder)
    acts_np, idx_np = numpy_encode(x.double().numpy(), p["encoder.weight"], p["encoder.bias"], p["b_dec"], 4,
                                   center=False)
    expected = numpy_decode(acts_np, idx_np, p["W_dec"], p["b_dec"]) + x.double().numpy() @ p["W_skip"].T
    np.testing.assert_allclose(coder(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_encode_keeps_leading_dimensions_and_dense_scatters():
    coder = random_coder()
    x = random_inputs(n=24).reshape(2, 3, 4, 8)  # [batch, pos, ..., d_in]
    top_acts, top_indices = coder.encode(x)
    assert top_acts.shape == top_indices.shape == (2, 3, 4, 4)
    assert coder(x).shape == x.shape
    dense = coder.dense(top_acts, top_indices)
    assert dense.shape == (2, 3, 4, 32)
    torch.testing.assert_close(dense.gather(-1, top_indices), top_acts)
    assert int((dense != 0).sum(-1).max()) <= 4


def test_decoder_rows_unit_norm_and_parallel_gradient_removed():
    coder = random_coder()
    torch.testing.assert_close(coder.W_dec.norm(dim=1), torch.ones(32))
    coder.W_dec.grad = torch.randn_like(coder.W_dec)
    coder.remove_parallel_decoder_grad_()
    along = (coder.W_dec.grad * coder.W_dec).sum(1)
    torch.testing.assert_close(along, torch.zeros(32), atol=1e-6, rtol=0)
