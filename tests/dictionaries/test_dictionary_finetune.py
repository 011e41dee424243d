"""The KL fine-tune (finetune.py): on a batch of the training mixture's documents it lowers the
KL of the spliced model below what the same number of MSE-only steps reaches from the same
start, leaves the model's weights alone, and counts its tokens apart from the MSE ones. KL is
measured here with torch.nn.functional.kl_div around a splice written in the test, not with
the module's own helpers."""
import copy

import pytest
import torch
import torch.nn.functional as F

from analyses.dictionaries import finetune as ft
from analyses.dictionaries import sites as st
from analyses.dictionaries import train as tr
from analyses.dictionaries.coder import SparseCoder
from analyses.dictionaries.config import CoderConfig

SITE = st.parse("blocks.0.hook_resid_post")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: many small forwards and backwards, which threads on a busy machine
    slow down tenfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def documents(embedded):
    """[6, 64] token rows of the training mixture (BOS first), the repeated-token kind among them."""
    from analyses.dictionaries.tokens import TokenStream, builder_for

    stream = TokenStream(n_ctx=64, docs_per_chunk=6, seed=3)
    return torch.from_numpy(stream.chunk(builder_for(embedded.tokenizer, 64), "train", 0)).long()


def spliced_kl(bridge, coder: SparseCoder, tokens) -> float:
    """Mean KL(clean || spliced) over non-BOS positions, the splice written out by hand."""
    keep = tokens != bridge.tokenizer.bos_token_id

    def replace(value, hook):
        return torch.where(keep[..., None], coder(value), value)

    with torch.no_grad():
        clean = bridge(tokens)
        with bridge.hooks(fwd_hooks=[(SITE.name, replace)]):
            spliced = bridge(tokens)
    per_position = F.kl_div(spliced.log_softmax(-1), clean.log_softmax(-1), log_target=True,
                            reduction="none").sum(-1)  # [batch, pos]
    return float(per_position[keep].mean())


def mse_start(bridge, tokens) -> SparseCoder:
    """A small SAE trained briefly with MSE only on these documents' activations."""
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n == SITE.name)
    x = cache[SITE.name][tokens != bridge.tokenizer.bos_token_id]  # [n, d_model]
    coder = SparseCoder(CoderConfig(d_in=x.shape[-1], num_latents=64, k=4, site=SITE.name))
    tr.initialise(coder, x, x, seed=0)
    trainer = tr.Trainer(coder, tr.TrainSettings(lr=5e-3, warmup_steps=1), total_steps=40)
    for _ in range(40):
        trainer.step(x, x)
    coder.cfg.tokens_seen = 1234
    return coder


def test_kl_finetune_lowers_kl_below_mse_only_steps_from_the_same_start(embedded, documents):
    bridge = embedded.bridge
    start = mse_start(bridge, documents)
    weights = {k: v.clone() for k, v in bridge.state_dict().items()}
    steps = 30
    settings = ft.FinetuneSettings(tokens=steps * len(documents) * 63, kl_coeff=1.0, batch_docs=len(documents),
                                   lr=2e-3, warmup_steps=1)

    tuned = copy.deepcopy(start)
    ft.finetune(tuned, bridge, SITE, [documents] * steps, settings, steps)

    mse_only = copy.deepcopy(start)  # the same number of updates at the same rate, FVU only
    trainer = tr.Trainer(mse_only, settings.train_settings(), steps)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(documents, names_filter=lambda n: n == SITE.name)
    x = cache[SITE.name][documents != bridge.tokenizer.bos_token_id]
    for _ in range(steps):
        trainer.step(x, x)

    before, after, baseline = (spliced_kl(bridge, c, documents) for c in (start, tuned, mse_only))
    assert after < 0.8 * before, (before, after)
    assert after < 0.8 * baseline, (baseline, after)
    # the model is untouched and trainable again; the fine-tune's tokens are counted apart
    for name, value in bridge.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert all(p.requires_grad for p in bridge.parameters())
    assert tuned.cfg.tokens_seen == 1234
    assert tuned.cfg.kl_finetune_tokens == steps * int((documents != bridge.tokenizer.bos_token_id).sum())
    assert tuned.cfg.kl_coeff == 1.0


def test_a_decoder_only_finetune_keeps_the_encoder_and_so_the_chosen_latents(embedded, documents):
    bridge = embedded.bridge
    start = mse_start(bridge, documents)
    coder = copy.deepcopy(start)
    settings = ft.FinetuneSettings(tokens=1, batch_docs=len(documents), lr=2e-3, warmup_steps=1, train_encoder=False)
    ft.finetune(coder, bridge, SITE, [documents] * 5, settings, 5)
    assert torch.equal(coder.encoder.weight, start.encoder.weight)
    assert torch.equal(coder.encoder.bias, start.encoder.bias)
    assert not torch.equal(coder.W_dec, start.W_dec)
    assert coder.encoder.weight.requires_grad and coder.cfg.kl_decoder_only


def test_kl_step_reports_the_kl_the_hand_splice_measures(embedded, documents):
    """The step's own "kl" is the spliced model's KL before its update (same weights)."""
    bridge = embedded.bridge
    coder = mse_start(bridge, documents)
    expected = spliced_kl(bridge, coder, documents)
    trainer = tr.Trainer(coder, tr.TrainSettings(lr=0.0, warmup_steps=1), total_steps=1)
    with ft.frozen(bridge):
        stats = ft.kl_step(trainer, bridge, SITE, documents, kl_coeff=1.0)
    assert stats["kl"] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_a_pursuit_kl_finetune_lowers_kl_below_pursuit_fvu_steps_from_the_same_start(embedded, documents):
    """The KL fine-tune through matching pursuit (pursuit.pursuit_kl_finetune): the spliced
    pursuit's KL, measured by the hand splice, falls below what as many FVU-only pursuit steps
    reach; the model is untouched, the encoder stays the decoder, and its tokens count apart."""
    from analyses.dictionaries import pursuit

    bridge = embedded.bridge
    start = mse_start(bridge, documents)
    pursuit.to_pursuit(start)
    weights = {k: v.clone() for k, v in bridge.state_dict().items()}
    steps = 30
    settings = ft.FinetuneSettings(tokens=1, kl_coeff=1.0, batch_docs=len(documents), lr=2e-3, warmup_steps=1)
    tuned = copy.deepcopy(start)
    pursuit.pursuit_kl_finetune(tuned, bridge, SITE, [documents] * steps, settings, steps)

    fvu_only = copy.deepcopy(start)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(documents, names_filter=lambda n: n == SITE.name)
    x = cache[SITE.name][documents != bridge.tokenizer.bos_token_id]
    pursuit.pursuit_finetune(fvu_only, [x] * steps, pursuit.PursuitSettings(tokens=steps * len(x), batch_size=len(x),
                                                                           lr=2e-3))

    before, after, baseline = (spliced_kl(bridge, c, documents) for c in (start, tuned, fvu_only))
    assert after < 0.8 * before, (before, after)
    assert after < 0.8 * baseline, (baseline, after)
    for name, value in bridge.state_dict().items():
        assert torch.equal(value, weights[name]), name
    torch.testing.assert_close(tuned.encoder.weight, tuned.W_dec)
    assert tuned.cfg.mp_kl_finetune_tokens == steps * len(x) and tuned.cfg.mp_kl_coeff == 1.0
    assert tuned.cfg.tokens_seen == 1234 and tuned.cfg.encoding == "matching_pursuit"
    with pytest.raises(ValueError, match="needs a pursuit dictionary"):
        pursuit.pursuit_kl_finetune(mse_start(bridge, documents), bridge, SITE, [documents], settings, 1)


def test_document_batches_give_the_planned_steps():
    rows = [torch.arange(10 * 4).reshape(10, 4), torch.arange(10 * 4).reshape(10, 4) + 100]
    batches = list(ft.document_batches(iter(rows), batch_docs=4, steps=4))
    assert [len(b) for b in batches] == [4, 4, 2, 4]
    assert ft.steps_for(1000, batch_docs=4, tokens_per_doc=63) == 4  # 3 x 252 < 1000 <= 4 x 252
