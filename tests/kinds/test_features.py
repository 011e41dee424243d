"""Reading a prompt through a dictionary and indexing every latent, held to numpy: the
encodings, reconstruction errors and logit effects re-derived from the weights files and the
model's own hooks; the index's top contexts against a brute-force sort of every activation;
the SQL search against the full latent × vocabulary score matrix."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from latent_helpers import numpy_pursuit_code
from safetensors.numpy import load_file

from analyses import AnalysisSpec, SpecError
from analyses.core.errors import UserError
from analyses.dictionaries import density, readout, reference, scan
from analyses.kinds import features, latent_index
from analyses.kinds.tokens import prompt_tokens
from analyses.runtime import latent_search
from analyses.runtime.service import result_key
from analyses.runtime.store import Store

pytestmark = pytest.mark.usefixtures("private_cache")

PROMPT = "When Mary and John went to the store, John gave a drink to"
SITES = ("blocks.1.hook_resid_post", "blocks.1.attn.hook_z", "blocks.1.mlp")


@pytest.fixture(autouse=True)
def known_densities(monkeypatch, tmp_path):
    """Densities as a known vector (measuring them reads 100k tokens): the table must carry them."""
    monkeypatch.setenv("ANALYSES_ACTIVATIONS", str(tmp_path / "activations"))
    monkeypatch.setattr(density, "firing_rates", lambda loaded, d, **_: np.linspace(0, 1, d.coder.num_latents))


def numpy_dictionary(site: str) -> dict:
    """The shipped dictionary's weights as numpy arrays, straight from its file."""
    folder = reference.resolve("default", site)
    return {name: value.astype(np.float64) for name, value in load_file(str(folder / "sae.safetensors")).items()}


def site_values(bridge, site: str, prompt: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) [pos, d]: what the dictionary reads and what it reconstructs, from the hooks."""
    layer = int(site.split(".")[1])
    names = {"hook_resid_post": (site, site), "attn": (site, site),
             "mlp": (f"blocks.{layer}.mlp.hook_in", f"blocks.{layer}.hook_mlp_out")}[site.split(".")[2]]
    _, cache = bridge.run_with_cache(prompt_tokens(bridge, prompt), names_filter=lambda n: n in names)
    x, y = (cache[n][0].reshape(cache[n].shape[1], -1).double().numpy() for n in names)
    return x, y


def shipped_encoding(site: str) -> str:
    """How the shipped dictionary encodes ("topk" or "matching_pursuit"), from its cfg.json."""
    return json.loads((reference.resolve("default", site) / "cfg.json").read_text()).get("encoding", "topk")


def numpy_codes(w: dict, x: np.ndarray, k: int, centre: bool, encoding: str = "topk") -> np.ndarray:
    """Dense [n, latent] TopK codes: ReLU(W_enc (x - b_dec) + b_enc), all but the k largest
    zeroed; or a matching pursuit's (latent_helpers.numpy_pursuit_code)."""
    if encoding == "matching_pursuit":
        return numpy_pursuit_code(w["W_dec"], w["b_dec"], x, k)
    pre = np.maximum((x - w["b_dec"] if centre else x) @ w["encoder.weight"].T + w["encoder.bias"], 0.0)
    keep = np.argsort(-pre, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(pre)
    np.put_along_axis(out, keep, np.take_along_axis(pre, keep, 1), 1)
    return out


def numpy_scores(bridge, w: dict, site: str) -> np.ndarray:
    """[latent, vocab] direct logit effect per unit: decoder row (through W_O for hook_z),
    centred (LayerNorm), times ln_final's weight, times W_U."""
    rows = w["W_dec"]
    if "attn" in site:
        W_O = bridge.blocks[int(site.split(".")[1])].attn.W_O.detach().double().numpy()  # [head, d_head, d_model]
        rows = sum(rows[:, h * W_O.shape[1]:(h + 1) * W_O.shape[1]] @ W_O[h] for h in range(W_O.shape[0]))
    rows = rows - rows.mean(-1, keepdims=True)
    return (rows * bridge.ln_final.weight.detach().double().numpy()) @ bridge.W_U.detach().double().numpy()


@pytest.mark.parametrize("site", SITES)
def test_encodings_errors_and_logit_effects_equal_numpy(embedded, site):
    bridge = embedded.bridge
    result = features.run(embedded, AnalysisSpec(kind="features", prompt=PROMPT, dictionary=site, top_k=5))
    w = numpy_dictionary(site)
    x, y = site_values(bridge, site, PROMPT)
    codes = numpy_codes(w, x, 16, centre="mlp" not in site, encoding=shipped_encoding(site))
    # activations: each position's 5 strongest latents, in order
    acts = result.tables["activations"]
    for position, part in acts.groupby("position"):
        order = np.argsort(-codes[position], kind="stable")[:5]
        order = order[codes[position, order] > 0]
        np.testing.assert_array_equal(part.sort_values("rank")["latent"].to_numpy(), order)
        np.testing.assert_allclose(part.sort_values("rank")["value"], codes[position, order], rtol=1e-4, atol=1e-5)
    # errors: |y - (codes @ W_dec + b_dec + x @ W_skip.T)| per position (the skip: transcoders that have one)
    y_hat = codes @ w["W_dec"] + w["b_dec"] + (x @ w["W_skip"].T if "W_skip" in w else 0.0)
    errors = result.tables["errors"]
    np.testing.assert_allclose(errors["error_norm"], np.linalg.norm(y - y_hat, axis=1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(errors["norm"], np.linalg.norm(y, axis=1), rtol=1e-5)
    np.testing.assert_allclose(errors["relative"], errors["error_norm"] / errors["norm"])
    # latents: every latent ranked after BOS, with its top and bottom tokens and its density
    latents = result.tables["latents"]
    assert set(latents["latent"]) == set(acts.loc[acts["position"] >= 1, "latent"])
    scores = numpy_scores(bridge, w, site)
    rates = np.linspace(0, 1, w["W_dec"].shape[0])
    for latent, part in latents.groupby("latent"):
        assert part["density"].iloc[0] == pytest.approx(rates[latent])
        promote = part[part["direction"] == "promote"].sort_values("rank")
        suppress = part[part["direction"] == "suppress"].sort_values("rank")
        np.testing.assert_array_equal(promote["token_id"], np.argsort(-scores[latent], kind="stable")[:len(promote)])
        np.testing.assert_allclose(promote["score"], np.sort(scores[latent])[::-1][:len(promote)], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(suppress["score"], np.sort(scores[latent])[:len(suppress)], rtol=1e-4, atol=1e-5)


def test_logit_effects_are_read_once_a_latent_and_kept_in_latent_order(embedded, monkeypatch):
    """Runs share each latent's read-out while the dictionary is loaded: a second call reads
    only the latents no call has read, and every latent's effects stay those of numpy."""
    bridge, site = embedded.bridge, "blocks.1.attn.hook_z"
    dictionary = readout.load_for(embedded, "default", site)
    features._READ.pop(dictionary, None)  # a fresh start for this dictionary
    first = features.logit_effects_of(bridge, dictionary, np.array([40, 7, 7]))
    assert first.latents.tolist() == [7, 40]
    calls, real = [], readout.logit_effects
    monkeypatch.setattr(readout, "logit_effects",
                        lambda b, directions, k: calls.append(len(directions)) or real(b, directions, k))
    both = features.logit_effects_of(bridge, dictionary, np.array([3, 40, 900]))
    again = features.logit_effects_of(bridge, dictionary, np.array([900, 7]))
    assert calls == [2]  # 3 and 900 read; 40 and then 7 and 900 came from the first reads
    assert both.latents.tolist() == [3, 7, 40, 900] and again is both
    scores = numpy_scores(bridge, numpy_dictionary(site), site)
    top_v, top_i, bottom_v, _ = both.of(np.array([900, 3, 40, 7]))
    for row, latent in enumerate([900, 3, 40, 7]):
        np.testing.assert_array_equal(top_i[row], np.argsort(-scores[latent], kind="stable")[:top_i.shape[1]])
        np.testing.assert_allclose(top_v[row], np.sort(scores[latent])[::-1][:top_v.shape[1]], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bottom_v[row], np.sort(scores[latent])[:bottom_v.shape[1]], rtol=1e-4, atol=1e-5)


def small_corpus(embedded, docs=6, length=48, per_chunk=2):
    """A few short documents of the eval stream (BOS first), in chunks of `per_chunk`."""
    tokens = next(scan.chunk_tokens(embedded, 1, seed=3))[2][:docs, :length]
    return tokens, [(i, docs // per_chunk, tokens[i * per_chunk:(i + 1) * per_chunk])
                    for i in range(docs // per_chunk)]


@pytest.mark.parametrize("site", ["blocks.1.hook_resid_post", "blocks.1.attn.hook_z"])
def test_index_top_contexts_equal_a_brute_force_scan(embedded, site):
    bridge = embedded.bridge
    tokens, chunks = small_corpus(embedded)
    d = readout.load_for(embedded, "default", site)
    found = scan.scan(embedded, d.site, d.coder, 0, top_k=5, chunks=chunks)
    w = numpy_dictionary(site)
    layer = int(site.split(".")[1])
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n == site)
    x = cache[site].reshape(tokens.shape[0], tokens.shape[1], -1).double().numpy()
    codes = numpy_codes(w, x.reshape(-1, x.shape[-1]), 16, centre=True,
                        encoding=shipped_encoding(site)).reshape(*tokens.shape, -1)
    codes[tokens.numpy() == bridge.tokenizer.bos_token_id] = 0.0  # BOS never ranked
    assert layer == 1 and found.n_tokens == int((tokens != bridge.tokenizer.bos_token_id).sum())
    np.testing.assert_array_equal(found.fires, (codes > 0).sum((0, 1)))
    contexts, neighbours = latent_index.contexts_tables(bridge, found)
    flat = codes.reshape(-1, codes.shape[-1])
    for latent in range(codes.shape[-1]):
        expected = np.sort(flat[:, latent])[::-1][:5]
        expected = expected[expected > 0]
        mine = contexts[contexts["latent"] == latent].sort_values("rank")
        np.testing.assert_allclose(mine["value"], expected, rtol=1e-4, atol=1e-5)
        for doc, pos, value in mine[["doc", "position", "value"]].itertuples(index=False):
            assert codes[doc, pos, latent] == pytest.approx(value, rel=1e-4, abs=1e-5)  # the place it names
    # each context's neighbourhood: the right tokens, and the latent's value on each
    for row in contexts.head(40).itertuples(index=False):
        around = neighbours[(neighbours["latent"] == row.latent) & (neighbours["rank"] == row.rank)]
        for offset, position, token_id, value in around[["offset", "position", "token_id", "value"]].itertuples(
                index=False):
            assert position == row.position + offset and token_id == int(tokens[row.doc, position])
            assert value == pytest.approx(codes[row.doc, position, row.latent], rel=1e-4, abs=1e-5)
    # histograms: every firing counted once, in a bin that holds its value
    counts, top = scan.histograms(found.active_latents, found.active_values, codes.shape[-1], 24)
    np.testing.assert_array_equal(counts.sum(1), found.fires)
    np.testing.assert_allclose(top, codes.max((0, 1)), rtol=1e-4, atol=1e-5)


def test_search_returns_the_latents_whose_logit_effect_is_highest(embedded, tmp_path, monkeypatch):
    site = "blocks.1.hook_resid_post"
    _, chunks = small_corpus(embedded)
    monkeypatch.setattr(latent_index, "scan", lambda *a, **k: scan.scan(*a[:4], top_k=5, chunks=chunks))
    spec = AnalysisSpec(kind="latent_index", dictionary=site, top_k=5)
    result = latent_index.run(embedded, spec)
    store = Store(tmp_path / "index.duckdb")
    key = result_key(spec)
    assert store.put(key, result, embedded.fingerprint, 1)
    scores = numpy_scores(embedded.bridge, numpy_dictionary(site), site)  # [latent, vocab]
    for token in (" Paris", " Mary", " cat"):
        token_id = embedded.bridge.tokenizer.encode(token, add_special_tokens=False)[0]
        found = latent_search.promoting(store, key, token, limit=5)
        np.testing.assert_array_equal(found["latent"], np.argsort(-scores[:, token_id], kind="stable")[:5])
        np.testing.assert_allclose(found["score"], np.sort(scores[:, token_id])[::-1][:5], rtol=1e-4, atol=1e-5)
    # by top-activating token: the latents with the most top contexts on it
    contexts = result.tables["contexts"]
    token = contexts["token_str"].value_counts().index[0]
    counted = contexts[contexts["token_str"] == token].groupby("latent").size()
    found = latent_search.firing_on(store, key, token, limit=len(counted))
    assert dict(zip(found["latent"], found["contexts"])) == counted.to_dict()
    assert found["contexts"].is_monotonic_decreasing  # the most contexts on the token first


def test_attention_latents_split_their_decoder_norm_by_head(embedded):
    d = readout.load_for(embedded, "default", "blocks.1.attn.hook_z")
    heads = latent_index.heads_table(embedded.bridge, d)
    w = numpy_dictionary("blocks.1.attn.hook_z")["W_dec"].reshape(-1, 8, 16)
    share = (w ** 2).sum(-1) / (w ** 2).sum((1, 2))[:, None]
    np.testing.assert_allclose(heads.pivot(index="latent", columns="head", values="share").to_numpy(), share,
                               rtol=1e-5, atol=1e-7)
    assert latent_index.heads_table(embedded.bridge, readout.load_for(embedded, "default", "blocks.1.mlp")).empty
    assert "heads" not in latent_index.run(embedded, AnalysisSpec(kind="latent_index", dictionary="blocks.1.mlp",
                                                                  corpus_tokens=1000, top_k=2)).tables


def test_a_dictionary_is_keyed_by_its_weights_and_bad_ones_are_named(embedded, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)  # the current directory is an allowed root
    copy = tmp_path / "mine"
    shutil.copytree(reference.resolve("default", "blocks.1.mlp"), copy)
    spec = AnalysisSpec(kind="features", prompt=PROMPT, dictionary=str(copy))
    before = result_key(spec)
    weights = load_file(str(copy / "sae.safetensors"))
    weights["b_dec"] = weights["b_dec"] + 1.0
    from safetensors.numpy import save_file

    save_file(weights, str(copy / "sae.safetensors"))
    assert result_key(spec) != before  # same name, other weights: another result
    with pytest.raises(UserError, match="dictionary"):
        result_key(AnalysisSpec(kind="features", prompt=PROMPT, dictionary="blocks.9.mlp"))
    with pytest.raises(UserError, match="dictionary"):
        result_key(AnalysisSpec(kind="features", prompt=PROMPT, dictionary="/etc"))
    from analyses.dictionaries import formats
    from analyses.dictionaries.coder import SparseCoder
    from analyses.dictionaries.config import CoderConfig

    def random_coder(d_in, site):
        return SparseCoder(CoderConfig(d_in=d_in, num_latents=32, k=4, site=site))

    narrow = formats.save(random_coder(d_in=64, site="blocks.1.hook_resid_post"), tmp_path / "narrow")
    with pytest.raises(SpecError, match="d_in 64 does not fit"):
        readout.load_for(embedded, "default", str(narrow))
    deep = formats.save(random_coder(d_in=128, site="blocks.7.hook_resid_post"), tmp_path / "deep")
    with pytest.raises(SpecError, match="layers 0..2"):
        readout.load_for(embedded, "default", str(deep))
    elsewhere = random_coder(d_in=128, site="blocks.1.hook_resid_post")
    elsewhere.cfg.model_fingerprint = "0" * 64
    with pytest.raises(SpecError, match="trained on other weights"):
        readout.load_for(embedded, "default", str(formats.save(elsewhere, tmp_path / "elsewhere")))


def test_residual_directions_go_through_W_O_for_attention_outputs(embedded):
    bridge = embedded.bridge
    d = readout.load_for(embedded, "default", "blocks.1.attn.hook_z")
    ours = readout.residual_directions(bridge, d.site, d.coder.W_dec[:7].detach()).numpy()
    W_O = bridge.blocks[1].attn.W_O.detach().numpy()  # [head, d_head, d_model]
    rows = d.coder.W_dec[:7].detach().numpy().reshape(7, 8, 16)
    expected = np.stack([sum(rows[i, h] @ W_O[h] for h in range(8)) for i in range(7)])
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    assert pd.Series(torch.tensor(ours).norm(dim=1).numpy()).gt(0).all()
