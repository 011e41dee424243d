"""Metrics against independent numpy re-derivations on random data."""
import numpy as np
import pytest
import torch
from tiny_dictionaries import random_coder, random_inputs

from analyses.dictionaries import metrics as mt


def test_sparsity_stats_match_numpy_over_batches():
    coder = random_coder(num_latents=64, k=4)
    x = random_inputs(n=300) * 3
    stats = mt.SparsityStats(64, 8)
    with torch.no_grad():
        for part in x.split(70):  # uneven batches: the sums must not care
            acts, idx = coder.encode(part)
            stats.add(part, coder.decode(acts, idx), acts, idx)
        acts, idx = coder.encode(x)
        dense = coder.dense(acts, idx).double().numpy()
        x_hat = coder(x).double().numpy()
    y = x.double().numpy()
    got = stats.result()
    fvu = ((y - x_hat) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    density = (dense > 0).mean(0)
    assert np.isclose(got["explained_variance"], 1 - fvu, rtol=1e-9)
    assert np.isclose(got["l0"], (dense > 0).sum(1).mean())
    assert got["dead_share"] == (density == 0).mean()
    assert got["dense_share"] == (density > 0.1).mean()
    hist = got["density_histogram"]
    assert hist["dead"] + sum(hist["counts"]) + hist["below_first_edge"] == 64


def test_explained_variance_by_document_kind_matches_numpy_and_adds_up():
    coder = random_coder(num_latents=64, k=4)
    x = random_inputs(n=300) * 3
    x[200:] += 10.0  # one kind far from the others: its variance about the common mean is large
    kinds = np.array(["mixed"] * 120 + ["needle"] * 80 + ["repeat"] * 100)
    whole, by_kind = mt.SparsityStats(64, 8), {}
    with torch.no_grad():
        for rows in (slice(0, 150), slice(150, 300)):  # two chunks, each with several kinds
            acts, idx = coder.encode(x[rows])
            x_hat = coder.decode(acts, idx)
            whole.add(x[rows], x_hat, acts, idx)
            for kind in np.unique(kinds[rows]):
                mine = torch.from_numpy(kinds[rows] == kind)
                by_kind.setdefault(kind, mt.SparsityStats(64, 8)).add(x[rows][mine], x_hat[mine], acts[mine],
                                                                      idx[mine])
        y, y_hat = x.double().numpy(), coder(x).double().numpy()
    got = mt.explained_variance_by_kind(by_kind)
    spread = ((y - y.mean(0)) ** 2).sum(1)  # [token]: about the common mean
    error = ((y - y_hat) ** 2).sum(1)
    for kind in ("mixed", "needle", "repeat"):
        mine = kinds == kind
        assert got[kind]["tokens"] == mine.sum()
        assert np.isclose(got[kind]["variance_share"], spread[mine].sum() / spread.sum(), rtol=1e-9)
        assert np.isclose(got[kind]["explained_variance"], 1 - error[mine].sum() / spread[mine].sum(), rtol=1e-9)
    assert got["repeat"]["variance_share"] > 0.5
    weighted_fvu = sum(e["variance_share"] * (1 - e["explained_variance"]) for e in got.values())
    assert np.isclose(weighted_fvu, whole.result()["fvu"], rtol=1e-9)


def brute_force_best_f1(values, labels):
    best = 0.0
    for t in np.unique(values):
        pred = values >= t
        tp = (pred & labels).sum()
        best = max(best, 2 * tp / (pred.sum() + labels.sum()))
    return best


def test_best_f1_is_the_best_threshold():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(200, 5))
    acts[:, 0] = np.where(rng.random(200) < 0.7, 0.0, acts[:, 0])  # many ties at zero, like a latent
    acts[:, 1] = rng.integers(0, 3, 200)  # heavy ties
    labels = rng.random((200, 3)) < [0.1, 0.3, 0.5]
    labels[:, 2] = acts[:, 3] > 0.5  # a unit that separates one category exactly
    got = mt.best_f1(torch.tensor(acts), torch.tensor(labels)).numpy()
    for u in range(5):
        for c in range(3):
            assert np.isclose(got[u, c], brute_force_best_f1(acts[:, u], labels[:, c])), (u, c)
    assert np.isclose(got[3, 2], 1.0)


def test_ce_and_kl_match_numpy():
    rng = np.random.default_rng(1)
    clean, other = rng.normal(size=(2, 3, 6, 11))
    tokens = rng.integers(0, 11, size=(3, 6))

    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))
    lp = log_softmax(clean)
    expected_ce = -np.take_along_axis(lp[:, :-1], tokens[:, 1:, None], -1)[..., 0]
    got_ce = mt.next_token_ce(torch.tensor(clean), torch.tensor(tokens)).numpy()
    np.testing.assert_allclose(got_ce, expected_ce, rtol=1e-5)
    expected_kl = (np.exp(lp) * (lp - log_softmax(other))).sum(-1)
    np.testing.assert_allclose(mt.kl_per_token(torch.tensor(clean), torch.tensor(other)).numpy(), expected_kl,
                               rtol=1e-5, atol=1e-7)
    assert mt.ce_recovered(ce_clean=2.0, ce_zero=6.0, ce_spliced=2.5) == 0.875


def test_ce_recovered_se_agrees_with_a_bootstrap_over_documents():
    """The delta-method SE of CE recovered against the spread of the ratio over documents
    resampled with replacement (an independent estimate of the same thing)."""
    rng = np.random.default_rng(3)
    docs = 400
    clean = rng.gamma(5.0, 40.0, size=docs)  # per-document CE sums
    zero = clean + rng.gamma(2.0, 30.0, size=docs)
    spliced = clean + 0.1 * (zero - clean) + rng.normal(0, 4.0, size=docs)
    se = mt.ce_recovered_se(clean, zero, spliced)
    draws = rng.integers(0, docs, size=(4000, docs))
    ratios = (zero[draws] - spliced[draws]).sum(1) / (zero[draws] - clean[draws]).sum(1)
    assert se == pytest.approx(ratios.std(), rel=0.1)
    assert mt.ce_recovered_se(clean[:1], zero[:1], spliced[:1]) is None  # metrics.json holds no NaN


def test_doc_kinds_name_the_repeated_token_documents_of_a_chunk():
    """The replayed kinds against the documents themselves: a "repeat" row is periodic
    (period <= 100 after BOS), the stories and needles are not."""
    from analyses.dictionaries.tokens import TokenStream, builder_for
    from analyses.runtime import models

    stream = TokenStream(n_ctx=256, docs_per_chunk=16, seed=4)
    tokens = stream.chunk(builder_for(models.load("default").tokenizer, 256), "eval", 2)
    kinds = stream.doc_kinds("eval", 2)

    def periodic(row):
        body = row[1:]
        return any((body[p:] == body[:-p]).all() for p in range(6, 101))
    assert [periodic(row) for row in tokens] == [k == "repeat" for k in kinds]
    assert {"repeat", "mixed"} <= set(kinds)


def test_ce_by_kind_is_the_ratio_of_each_kinds_sums():
    rng = np.random.default_rng(5)
    per_doc = {"clean": rng.uniform(100, 200, 12)}
    per_doc["zero"] = per_doc["clean"] + rng.uniform(50, 100, 12)
    per_doc["spliced"] = per_doc["clean"] + rng.uniform(0, 20, 12)
    kinds = np.array(["repeat", "mixed", "needle"] * 4)
    out = mt.ce_by_kind(per_doc, kinds, tokens_per_doc=10)
    for kind in ("repeat", "mixed", "needle"):
        m = kinds == kind
        c, z, s = (per_doc[k][m] for k in ("clean", "zero", "spliced"))
        assert out[kind]["docs"] == 4
        assert out[kind]["ce_clean"] == pytest.approx(c.mean() / 10)
        assert out[kind]["ce_recovered"] == pytest.approx((z.mean() - s.mean()) / (z.mean() - c.mean()))
