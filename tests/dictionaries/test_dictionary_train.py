"""Our TopK trainer against EleutherAI sparsify's loss and update on the same weights and
activations, and the trainer's own promises (resumable batch stream, dead latents revived)."""
import pytest
import torch
from tiny_dictionaries import random_coder, random_inputs

from analyses.dictionaries import train as tr


def sparsify_twin(ours):
    sparse_coder = pytest.importorskip("sparsify.sparse_coder", reason="eai-sparsify is not installed")
    config = pytest.importorskip("sparsify.config")
    cfg = ours.cfg
    theirs = sparse_coder.SparseCoder(cfg.d_in, config.SparseCoderConfig(num_latents=cfg.num_latents, k=cfg.k,
                                                                           transcode=cfg.transcode))
    theirs.load_state_dict({k: v.clone() for k, v in ours.state_dict().items()})
    return theirs


@pytest.mark.parametrize("transcode", [False, True])
def test_loss_terms_equal_sparsify_forward(transcode):
    ours = random_coder(transcode=transcode)
    theirs = sparsify_twin(ours)
    x, y = random_inputs(), random_inputs(seed=2)
    target = y if transcode else x
    dead = torch.zeros(32, dtype=torch.bool)
    dead[::3] = True
    terms = tr.loss_terms(ours, x, target, dead)
    out = theirs(x, target if transcode else None, dead_mask=dead)
    torch.testing.assert_close(terms.fvu, out.fvu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms.auxk, out.auxk_loss, rtol=1e-5, atol=1e-6)


def test_three_adam_steps_equal_sparsify_update():
    """Without AuxK (see the next test for why) our update is sparsify's to float tolerance."""
    ours = random_coder()
    theirs = sparsify_twin(ours)
    settings = tr.TrainSettings(lr=1e-2, warmup_steps=1, decay_share=0.0, auxk_alpha=0.0)
    trainer = tr.Trainer(ours, settings, total_steps=3)
    adam = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    since_fired = torch.zeros(32, dtype=torch.long)
    for step in range(3):
        x = random_inputs(seed=10 + step)
        trainer.step(x, x)
        dead = since_fired > settings.dead_after_tokens
        out = theirs(x, dead_mask=dead)
        (out.fvu + settings.auxk_alpha * out.auxk_loss).backward()
        theirs.remove_gradient_parallel_to_decoder_directions()  # sparsify's Trainer's order
        adam.step()
        adam.zero_grad()
        theirs.set_decoder_norm_to_unit_norm()
        since_fired += len(x)
        since_fired[out.latent_indices.flatten()] = 0
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_auxk_trains_dead_latents_encoder_rows_too():
    """Gao et al.'s AuxK reaches a dead latent's encoder row (its pre-activation must rise for
    it to fire again). sparsify's fused encoder drops the gradient of its pre-activations, so
    there AuxK moves only decoder rows; ours keeps the encoder's share: the same loss value,
    the same decoder gradient, and encoder gradient on the dead rows."""
    ours = random_coder()
    theirs = sparsify_twin(ours)
    x = random_inputs()
    dead = torch.zeros(32, dtype=torch.bool)
    dead[::3] = True
    tr.loss_terms(ours, x, x, dead).auxk.backward()
    theirs(x, dead_mask=dead).auxk_loss.backward()
    torch.testing.assert_close(ours.W_dec.grad, theirs.W_dec.grad, rtol=1e-5, atol=1e-6)
    assert ours.encoder.weight.grad[dead].abs().sum() > 0
    assert theirs.encoder.weight.grad is None or theirs.encoder.weight.grad.abs().sum() == 0


def dense_loss(coder, x, y, dead):
    """The loss as autograd through the whole [batch, latent] encoder would take it: what
    loss_terms's chosen-rows gradient (gathered.py) must equal. A Matryoshka prefix m's
    reconstruction here is the dense code with every column from m on zeroed, times W_dec."""
    pre = coder.pre_acts(x)
    top_acts, top_indices = pre.topk(coder.cfg.k, dim=-1, sorted=False)
    error = y - (coder.decode(top_acts, top_indices) + coder.skip(x))
    total = (y - y.mean(0)).pow(2).sum()
    aux_acts, aux_idx = torch.where(dead[None], pre, -torch.inf).topk(min(x.shape[1] // 2, int(dead.sum())))
    e_hat = torch.nn.functional.embedding_bag(aux_idx, coder.W_dec, per_sample_weights=aux_acts, mode="sum")
    auxk = min(int(dead.sum()) / (x.shape[1] // 2), 1.0) * (e_hat - error.detach()).pow(2).sum() / total
    code = torch.zeros_like(pre).scatter(1, top_indices, top_acts)  # [batch, latent], with grad
    fvus = [error.pow(2).sum() / total]
    for m in coder.cfg.matryoshka_prefixes:
        y_hat = code[:, :m] @ coder.W_dec[:m] + coder.b_dec + coder.skip(x)
        fvus.append((y - y_hat).pow(2).sum() / total)
    return sum(fvus) / len(fvus) + auxk


@pytest.mark.parametrize("transcode", [False, True])
@pytest.mark.parametrize("every", [4, 16])  # 16 dead latents (more than AuxK's d_in / 2 = 8: ranked), or 4 (all used)
@pytest.mark.parametrize("prefixes", [[], [8, 40]])  # plain TopK, or Matryoshka with two nested prefixes
def test_chosen_rows_gradient_equals_autograd_through_the_dense_encoder(transcode, every, prefixes):
    # 600 tokens: choose() works in blocks of 256, and the last one is partial
    x = random_inputs(n=600, d_in=16).double()
    y = random_inputs(n=600, d_in=16, seed=5).double() if transcode else x
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::every] = True
    def chosen_rows_loss(coder):
        terms = tr.loss_terms(coder, x, y, dead)
        return terms.reconstruction + terms.auxk

    grads = []
    for loss in (chosen_rows_loss, lambda c: dense_loss(c, x, y, dead)):
        coder = random_coder(d_in=16, num_latents=64, k=4, transcode=transcode, skip_connection=transcode,
                             matryoshka_prefixes=prefixes).double()
        loss(coder).backward()
        grads.append({n: p.grad for n, p in coder.named_parameters()})
    assert grads[0]["encoder.weight"][dead].abs().sum() > 0  # AuxK reaches dead rows
    for name, grad in grads[1].items():
        torch.testing.assert_close(grads[0][name], grad, rtol=1e-10, atol=1e-12, msg=name)


def test_batch_stream_resumes_where_an_unbroken_one_is():
    chunks = {i: (torch.arange(100.0)[:, None] + 1000 * i, torch.zeros(100, 1)) for i in range(4)}
    settings = tr.TrainSettings(batch_size=30, group_chunks=2)
    whole = [x for x, _ in tr.batches(chunks.__getitem__, 4, 100, settings, seed=0, start_step=0, total_steps=20)]
    resumed = [x for x, _ in tr.batches(chunks.__getitem__, 4, 100, settings, seed=0, start_step=7, total_steps=20)]
    assert len(whole) == 20
    for a, b in zip(whole[7:], resumed):
        assert torch.equal(a, b)
    seen = torch.cat(whole[:12]).flatten()  # one epoch: 2 groups x 6 batches, no repeats
    assert len(seen.unique()) == len(seen)


def test_a_run_longer_than_its_pool_cycles_over_the_pool_in_epochs():
    chunks = {i: (torch.arange(100.0)[:, None] + 1000 * i, torch.zeros(100, 1)) for i in range(5)}
    settings = tr.TrainSettings(batch_size=25, group_chunks=2)
    # 5 chunks make 2 whole groups of 2: the fifth is left out, and the pool says so
    assert tr.distinct_tokens(5, 100, settings) == 400
    stream = [x for x, _ in tr.batches(chunks.__getitem__, 5, 100, settings, seed=0, start_step=0, total_steps=48)]
    epochs = [torch.cat(stream[i:i + 16]).flatten() for i in (0, 16, 32)]  # 400 tokens / 25 a batch
    pool = torch.cat([chunks[i][0] for i in range(4)]).flatten()
    for seen in epochs:  # every epoch is the whole pool once, in its own order
        assert torch.equal(seen.sort().values, pool.sort().values)
    assert not torch.equal(epochs[0], epochs[1])


def test_training_lowers_fvu_on_sparse_data():
    directions = torch.nn.functional.normalize(torch.randn(24, 8, generator=torch.Generator().manual_seed(0)), dim=1)

    def sample(n, seed):  # sparse non-negative sums of 24 true directions
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(n, 24, generator=g) * (torch.rand(n, 24, generator=g) < 0.1)) @ directions
    coder = random_coder(num_latents=32, k=4)
    x0 = sample(512, 0)
    tr.initialise(coder, x0, x0, seed=0)
    trainer = tr.Trainer(coder, tr.TrainSettings(lr=1e-2, warmup_steps=5, dead_after_tokens=512), total_steps=100)
    first = trainer.step(x0, x0)["fvu"]
    for step in range(99):
        x = sample(256, step + 1)
        last = trainer.step(x, x)
    assert last["fvu"] < 0.5 * first


def sparse_hierarchy(n, seed):
    """Tokens built like a lexicon: one of 4 category directions (strong, always on) plus
    one of 6 members of that category (weaker), plus noise; [n, 12]."""
    g = torch.Generator().manual_seed(0)
    parents = torch.nn.functional.normalize(torch.randn(4, 12, generator=g), dim=1)
    children = torch.nn.functional.normalize(torch.randn(4, 6, 12, generator=g), dim=2)
    g = torch.Generator().manual_seed(seed)
    category = torch.randint(4, (n,), generator=g)
    member = torch.randint(6, (n,), generator=g)
    return 2 * parents[category] + children[category, member] + 0.05 * torch.randn(n, 12, generator=g)


def trained(prefixes):
    coder = random_coder(d_in=12, num_latents=48, k=2, matryoshka_prefixes=prefixes)
    x0 = sparse_hierarchy(512, 0)
    tr.initialise(coder, x0, x0, seed=0)
    trainer = tr.Trainer(coder, tr.TrainSettings(lr=1e-2, warmup_steps=5, dead_after_tokens=512), total_steps=300)
    for step in range(300):
        x = sparse_hierarchy(256, step + 1)
        stats = trainer.step(x, x)
    assert ("reconstruction" in stats) == bool(prefixes)  # the log shows the loss's term when it differs
    return coder


def prefix_fvu(coder, x, m):
    with torch.no_grad():
        acts, idx = coder.encode(x)
        y_hat = coder.decode(acts * (idx < m), idx)
    return float((x - y_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def test_a_matryoshka_prefix_reconstructs_alone_where_a_plain_dictionarys_first_latents_cannot():
    """Four latents of a Matryoshka dictionary (prefix 4) learn the four categories: alone they
    explain most of the variance of held-out tokens. A plain TopK dictionary trained the same
    way spends its first four latents on whatever they happened to start as."""
    x = sparse_hierarchy(2000, 999)
    nested, plain = trained([4]), trained([])
    assert prefix_fvu(nested, x, 4) < 0.5 * prefix_fvu(plain, x, 4)
    assert prefix_fvu(nested, x, 4) < 0.35  # the category directions carry 80% of the variance
    assert prefix_fvu(nested, x, 48) < 0.2  # and the whole dictionary still reconstructs


def test_matryoshka_prefixes_must_be_increasing_sizes_inside_the_dictionary():
    from analyses.dictionaries.config import CoderConfig

    for bad in ([0], [32], [16, 8], [8, 8]):
        with pytest.raises(ValueError, match="matryoshka_prefixes"):
            CoderConfig(d_in=8, num_latents=32, matryoshka_prefixes=bad)
    saved = CoderConfig(d_in=8, matryoshka_prefixes=[4, 16]).to_dict()
    assert CoderConfig.from_dict(saved).matryoshka_prefixes == [4, 16]


def test_a_resumed_run_is_the_same_dictionary_only_with_the_same_matryoshka_prefixes():
    from analyses.dictionaries.config import CoderConfig
    from analyses.dictionaries.pipeline import _same_dictionary

    plain = CoderConfig(d_in=8, num_latents=32, site="blocks.0.hook_resid_post")
    nested = CoderConfig(d_in=8, num_latents=32, site="blocks.0.hook_resid_post", matryoshka_prefixes=[8])
    assert _same_dictionary(nested, CoderConfig.from_dict(nested.to_dict()))
    assert not _same_dictionary(plain, nested) and not _same_dictionary(nested, plain)


def test_a_released_matryoshka_dictionary_trains_on_the_whole_dictionarys_loss_alone():
    """Once released (cfg.matryoshka_release_tokens), the loss's reconstruction term is the whole
    dictionary's FVU again; before, it is the mean with the prefix's FVU. A release needs
    prefixes to drop."""
    from analyses.dictionaries.config import CoderConfig

    coder = random_coder(d_in=12, num_latents=48, k=2, matryoshka_prefixes=[4])
    x = sparse_hierarchy(256, 3)
    nested = tr.loss_terms(coder, x, x, dead=None)
    assert nested.reconstruction.item() == pytest.approx((nested.fvu.item() + prefix_fvu(coder, x, 4)) / 2,
                                                         rel=1e-5)
    coder.cfg.matryoshka_release_tokens = 1024
    released = tr.loss_terms(coder, x, x, dead=None)
    assert released.reconstruction.item() == released.fvu.item() == nested.fvu.item()
    assert CoderConfig.from_dict(coder.cfg.to_dict()).prefixes_in_loss == []
    with pytest.raises(ValueError, match="matryoshka_release_tokens needs matryoshka_prefixes"):
        CoderConfig(d_in=8, num_latents=32, matryoshka_release_tokens=1024)


def test_releasing_the_prefix_terms_lowers_the_whole_fvu_and_keeps_the_prefix_latents():
    """The release's promise on the toy lexicon: training on after the Matryoshka run, with the
    prefix terms dropped at half the rate, lowers the whole dictionary's held-out FVU while its
    first four latents still reconstruct alone far better than a plain dictionary's."""
    x = sparse_hierarchy(2000, 999)
    coder, plain = trained([4]), trained([])
    before = prefix_fvu(coder, x, 48)
    coder.cfg.matryoshka_release_tokens = 100 * 256
    trainer = tr.Trainer(coder, tr.TrainSettings(lr=5e-3, warmup_steps=5, dead_after_tokens=512), total_steps=100)
    for step in range(100):
        batch = sparse_hierarchy(256, 1000 + step)
        stats = trainer.step(batch, batch)
    assert "reconstruction" not in stats  # the loss is plain FVU + AuxK now
    assert prefix_fvu(coder, x, 48) < before
    assert prefix_fvu(coder, x, 4) < 0.5 * prefix_fvu(plain, x, 4)


def test_the_pipeline_releases_a_matryoshka_dictionary_once(tmp_path):
    """`dictionaries train --matryoshka M --matryoshka-release-tokens N` on the embedded model,
    small: the config keeps the MSE run's tokens and records the release's; a second run of the
    plan changes nothing, and a plan asking for a longer release is refused by name."""
    import dataclasses
    import json

    from pipeline_checks import assert_done_once

    from analyses.dictionaries.pipeline import Plan, train

    plan = Plan(model="default", sites=("blocks.0.hook_resid_post",), num_latents=64, k=4, tokens=2048,
                matryoshka_prefixes=(16,), matryoshka_release_tokens=1024, eval_tokens=1000, ce_tokens=200,
                n_ctx=64, out=tmp_path / "out", cache=tmp_path / "cache",
                settings=tr.TrainSettings(batch_size=512, warmup_steps=2))
    [folder] = train(plan)
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["tokens_seen"] == 2048 and cfg["matryoshka_release_tokens"] == 1024
    assert cfg["matryoshka_prefixes"] == [16]
    assert json.loads((folder / "metrics.json").read_text())["l0"] <= 4
    assert_done_once(plan, folder, dataclasses.replace(plan, matryoshka_release_tokens=4096),
                     "released from its Matryoshka prefixes after fewer tokens")
