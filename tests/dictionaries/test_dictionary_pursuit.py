"""Matching-pursuit SAEs (MP-SAE): the pursuit's code against a numpy re-derivation, its
reconstruction as training differentiates it, the decoder's training through it, and the
files: a pursuit dictionary saves and loads to the same codes."""
import dataclasses

import numpy as np
import pytest
import torch
from latent_helpers import numpy_pursuit_code
from tiny_dictionaries import random_coder, random_inputs

from analyses.dictionaries import formats, pursuit
from analyses.dictionaries import train as tr
from analyses.dictionaries.coder import (
    gram_pursuit_steps,
    pursuit_code,
    pursuit_reconstruction,
    pursuit_steps,
    replayed_pursuit_steps,
)
from analyses.dictionaries.config import CoderConfig


def pursuit_coder(**cfg):
    coder = random_coder(encoding="matching_pursuit", **cfg)
    coder.normalize_decoder_()
    return coder


def test_the_pursuits_code_equals_a_numpy_matching_pursuit():
    coder = pursuit_coder(d_in=8, num_latents=32, k=5).double()
    x = random_inputs(n=300, d_in=8).double()
    with torch.no_grad():
        values, latents = coder.encode(x)
        y_hat = coder.decode(values, latents)
    W, b = coder.W_dec.detach().numpy(), coder.b_dec.detach().numpy()
    code = numpy_pursuit_code(W, b, x.numpy(), 5)
    np.testing.assert_allclose(coder.dense(values, latents).numpy(), code, atol=1e-12)
    np.testing.assert_allclose(y_hat.numpy(), code @ W + b, atol=1e-12)
    assert (values[:, :-1] >= values[:, 1:]).all()  # strongest first, as TopK's
    assert ((code > 0).sum(axis=1) < 5).any()  # some token took one latent twice: fewer than k fire


def test_the_gram_matrix_steps_are_the_residual_steps():
    """Without gradient the pursuit updates scores by the decoder's Gram matrix; with it, the
    residual: the same codes (float64), and the cached Gram follows a changed decoder."""
    coder = pursuit_coder(d_in=8, num_latents=32, k=6).double()
    x = random_inputs(n=400, d_in=8).double()
    with torch.no_grad():
        by_gram = pursuit_code(coder, x)
        latents, values = zip(*pursuit_steps(coder, x))
    by_residual = torch.zeros_like(by_gram).scatter_add_(1, torch.stack(latents, 1), torch.stack(values, 1))
    torch.testing.assert_close(by_gram, by_residual, rtol=0, atol=1e-12)
    with torch.no_grad():  # rows taken a block at a time (400 = 6 blocks of 64 and a part)
        for (a, b), (c, d) in zip(gram_pursuit_steps(coder, x, block=64), zip(latents, values)):
            assert torch.equal(a, c)
            torch.testing.assert_close(b, d, rtol=0, atol=1e-12)
    with torch.no_grad():
        coder.W_dec[3] = -coder.W_dec[3]  # an edit in place: the Gram matrix must follow
        torch.testing.assert_close(coder.decoder_gram(), coder.W_dec @ coder.W_dec.T)


def test_the_trained_reconstruction_is_decode_of_the_code_with_a_decoder_gradient():
    coder = pursuit_coder(d_in=8, num_latents=32, k=4)
    x = random_inputs(n=200, d_in=8)
    y_hat = pursuit_reconstruction(coder, x)
    with torch.no_grad():
        torch.testing.assert_close(y_hat.detach(), coder.decode(*coder.encode(x)), rtol=1e-5, atol=1e-5)
    (x - y_hat).pow(2).sum().backward()
    assert coder.W_dec.grad.abs().sum() > 0 and coder.b_dec.grad.abs().sum() > 0
    assert coder.encoder.weight.grad is None  # the pursuit never reads the encoder


def test_the_replayed_steps_give_the_residual_steps_values_and_gradients():
    """Training chooses the latents by the Gram matrix and replays the steps on the chosen rows
    only: the same activations and the same decoder and b_dec gradients (float64) as the plain
    residual steps, which score every row at every step."""
    coder = pursuit_coder(d_in=8, num_latents=32, k=6).double()
    x = random_inputs(n=400, d_in=8).double()
    target = torch.randn_like(x)

    def values_and_grads(steps):
        coder.zero_grad(set_to_none=True)
        latents, values = zip(*steps(coder, x))
        y_hat = coder.b_dec + sum(v[:, None] * coder.W_dec[i] for i, v in zip(latents, values))
        (y_hat * target).sum().backward()
        return torch.stack(latents), torch.stack(values).detach(), coder.W_dec.grad.clone(), coder.b_dec.grad.clone()

    plain, replayed = values_and_grads(pursuit_steps), values_and_grads(replayed_pursuit_steps)
    assert torch.equal(plain[0], replayed[0])
    for a, b in zip(plain[1:], replayed[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert plain[2].abs().sum() > 0


def sparse_data(n, seed):
    directions = torch.nn.functional.normalize(torch.randn(24, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 24, generator=g) * (torch.rand(n, 24, generator=g) < 0.1)) @ directions


def test_training_through_the_pursuit_lowers_its_fvu_and_makes_a_pursuit_dictionary():
    coder = random_coder(num_latents=32, k=3)
    x0 = sparse_data(512, 0)
    tr.initialise(coder, x0, x0, seed=0)
    trainer = tr.Trainer(coder, tr.TrainSettings(lr=1e-2, warmup_steps=5, dead_after_tokens=512), total_steps=60)
    for step in range(60):  # a TopK SAE first, as the shipped recipe trains one
        x = sparse_data(256, step + 1)
        trainer.step(x, x)
    held_out = sparse_data(2000, 999)
    with torch.no_grad():
        before = float(pursuit.pursuit_fvu(coder, held_out))
    settings = pursuit.PursuitSettings(tokens=100 * 256, batch_size=256, lr=5e-3)
    pursuit.pursuit_finetune(coder, (sparse_data(256, 100 + s) for s in range(100)), settings)
    with torch.no_grad():
        after = float(pursuit.pursuit_fvu(coder, held_out))
    assert after < 0.8 * before
    assert coder.cfg.encoding == "matching_pursuit" and coder.cfg.mp_finetune_tokens == 100 * 256
    torch.testing.assert_close(coder.encoder.weight, coder.W_dec)  # sparsify reads the first step
    torch.testing.assert_close(coder.W_dec.norm(dim=1), torch.ones(32))


def test_a_pursuit_dictionary_saves_and_loads_to_the_same_codes(tmp_path):
    coder = pursuit_coder(d_in=8, num_latents=32, k=4, site="blocks.0.attn.hook_z")
    pursuit.sync_encoder(coder)
    loaded = formats.load(formats.save(coder, tmp_path / "mp"))
    assert loaded.cfg.encoding == "matching_pursuit"
    x = random_inputs(n=100, d_in=8)
    with torch.no_grad():
        for a, b in zip(coder.encode(x), loaded.encode(x)):
            torch.testing.assert_close(a, b)


def test_matching_pursuit_is_for_autoencoders_with_a_known_encoding():
    with pytest.raises(ValueError, match="transcoder cannot use it"):
        CoderConfig(d_in=8, transcode=True, encoding="matching_pursuit")
    with pytest.raises(ValueError, match="encoding must be one of"):
        CoderConfig(d_in=8, encoding="omp")
    with pytest.raises(ValueError, match="transcoder cannot use it"):
        pursuit.to_pursuit(random_coder(transcode=True))


def test_a_pursuit_dictionarys_metrics_equal_numpy():
    """The sparsity and variance metrics (metrics.SparsityStats, what metrics.json holds) of a
    pursuit dictionary, from its encode and decode, against the numpy pursuit's code."""
    from analyses.dictionaries.metrics import SparsityStats

    coder = pursuit_coder(d_in=8, num_latents=32, k=3).double()
    x = random_inputs(n=500, d_in=8).double()
    stats = SparsityStats(32, 8)
    with torch.no_grad():
        for part in x.split(128):  # evaluation adds batch by batch
            acts, latents = coder.encode(part)
            stats.add(part, coder.decode(acts, latents), acts, latents)
    got = stats.result()
    W, b, xs = coder.W_dec.detach().numpy(), coder.b_dec.detach().numpy(), x.numpy()
    code = numpy_pursuit_code(W, b, xs, 3)
    residual = xs - (code @ W + b)
    assert got["explained_variance"] == pytest.approx(1 - (residual ** 2).sum() / ((xs - xs.mean(0)) ** 2).sum(),
                                                      abs=1e-10)
    assert got["l0"] == pytest.approx((code > 0).sum(1).mean())
    assert got["dead_share"] == pytest.approx(((code > 0).sum(0) == 0).mean())


def test_the_pipeline_trains_through_the_pursuit_then_kl_once(tmp_path):
    """`dictionaries train`'s stages on the embedded model, small: MSE, pursuit, then the KL
    fine-tune through the pursuit; the saved config counts each stage's tokens, a second run of
    the same plan changes nothing (its pursuit tokens, 3,000, are not whole batches of 2,048: the
    run records the 2,048 it trained), and a plan asking for more pursuit KL is refused by name."""
    import json

    from pipeline_checks import assert_done_once

    from analyses.dictionaries.pipeline import Plan, train
    from analyses.dictionaries.train import TrainSettings

    plan = Plan(model="default", sites=("blocks.0.attn.hook_z",), num_latents=64, k=4, tokens=2048,
                mp_finetune_tokens=3000, mp_kl_finetune_tokens=400, kl_coeff=2.0, eval_tokens=1000, ce_tokens=200,
                n_ctx=64, out=tmp_path / "out", cache=tmp_path / "cache",
                settings=TrainSettings(batch_size=512, warmup_steps=2))
    [folder] = train(plan)
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["encoding"] == "matching_pursuit" and cfg["mp_finetune_tokens"] == 2048
    assert cfg["mp_kl_finetune_tokens"] >= 400 and cfg["mp_kl_coeff"] == 2.0  # whole documents: may overshoot
    assert json.loads((folder / "metrics.json").read_text())["l0"] <= 4
    assert_done_once(plan, folder, dataclasses.replace(plan, mp_kl_finetune_tokens=100_000),
                     "KL fine-tuned through the pursuit otherwise")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("width", [4096, 320, 100])
def test_row_max_is_torch_max(width, dtype):
    """The pursuit's row maximum (numpy's argmax on CPU, torch's own for bf16): torch's values
    and first indices, a tie included, and the values are the scores' own (no copy kept)."""
    from analyses.dictionaries.coder import row_max

    scores = torch.randn(37, width, generator=torch.Generator().manual_seed(width)).to(dtype)
    scores[5, width // 2] = scores[5, width // 3] = scores[5].max() + 1  # a tie: the first one wins
    values, indices = row_max(scores)
    expected = scores.max(dim=-1)
    assert values.dtype == dtype and indices.dtype == torch.long
    assert torch.equal(values, expected.values) and torch.equal(indices, expected.indices)
    assert indices[5] == width // 3
