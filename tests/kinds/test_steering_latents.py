"""Steering with dictionary latents, held to independent re-derivations on the embedded model
and its shipped dictionaries: clamping a latent to its own value changes nothing; zeroing it
equals a numpy re-encoding and decoding spliced in by a plain hook; `method=feature` equals
adding the decoder row as a plain vector (for hook_z: through W_O at the attention output)."""
import numpy as np
import pytest
import torch
from latent_helpers import numpy_code, numpy_decode, site_value

from analyses import AnalysisSpec
from analyses.core.errors import SpecError
from analyses.dictionaries import lookup
from analyses.kinds import steering
from analyses.kinds.bos import first_after_bos
from analyses.kinds.interventions import latents
from analyses.kinds.tokens import prompt_tokens, single_token

pytestmark = pytest.mark.usefixtures("private_cache")

FRANCE = "The capital of France is"
PAIR = dict(prompt=FRANCE, answer=" Berlin", wrong=" Paris", max_new_tokens=4)
SITES = ["blocks.1.hook_resid_post", "blocks.1.attn.hook_z", "blocks.1.mlp"]


def site_input(bridge, site, tokens) -> np.ndarray:
    return site_value(bridge, site, tokens, site.input_hook)


def metric_with(bridge, tokens, hooks) -> float:
    logits = bridge.run_with_hooks(tokens, fwd_hooks=hooks)[0, -1].detach()
    berlin, paris = (single_token(bridge, t, "answer") for t in (" Berlin", " Paris"))
    return float(logits[berlin] - logits[paris])


def busiest_latent(dictionary, x: np.ndarray) -> int:
    """The latent with the largest activation at the last position."""
    return int(numpy_code(dictionary.coder, x)[-1].argmax())


@pytest.mark.parametrize("site_name", SITES)
def test_clamping_a_latent_to_its_own_value_changes_nothing(embedded, site_name):
    bridge = embedded.bridge
    dictionary = lookup.load(embedded, site_name)
    tokens = prompt_tokens(bridge, FRANCE)
    x = site_input(bridge, dictionary.site, tokens)
    latent = busiest_latent(dictionary, x)
    own = float(latents.latent_value(dictionary, torch.tensor(x[-1], dtype=torch.float32), latent))
    assert own > 0
    result = steering.run(embedded, AnalysisSpec(kind="steering", **PAIR, dictionary=site_name, latent=latent,
                                                 clamp=repr(own), positions="last"))
    effects = result.tables["effects"]
    intact, clamped = effects[~effects.ablated].iloc[0], effects[effects.ablated].iloc[0]
    assert clamped.metric == pytest.approx(intact.metric, abs=1e-5)
    texts = result.tables["generations"]["text"]
    assert texts.nunique() == 1
    # at every position at once, each with its own value: the shift is exactly zero
    xs = torch.tensor(x, dtype=torch.float32)
    values = latents.latent_value(dictionary, xs, latent)
    shift = latents.clamp_shift(dictionary, xs, latent, values)  # [pos, d_in]
    assert torch.equal(shift, torch.zeros_like(shift))


@pytest.mark.parametrize("site_name", SITES)
def test_zeroing_a_latent_equals_a_numpy_splice(embedded, site_name):
    """x' = x + decode(code with the latent zeroed) − decode(code), by numpy, at every
    position after BOS, spliced in by a plain hook: the kind's metric and KL-free forward agree."""
    bridge = embedded.bridge
    dictionary = lookup.load(embedded, site_name)
    site = dictionary.site
    tokens = prompt_tokens(bridge, FRANCE)
    x = site_input(bridge, site, tokens)
    latent = busiest_latent(dictionary, x)
    code = numpy_code(dictionary.coder, x)
    zeroed = code.copy()
    zeroed[:, latent] = 0.0
    shift = numpy_decode(dictionary.coder, zeroed) - numpy_decode(dictionary.coder, code)  # [pos, d_in]
    shift[: first_after_bos(bridge)] = 0.0
    shift_t = torch.tensor(shift, dtype=torch.float32)

    def splice(value, hook):
        return value + shift_t.reshape(value.shape[1:])[None]

    expected = metric_with(bridge, tokens, [(site.output_hook, splice)])
    baseline = metric_with(bridge, tokens, [])
    assert abs(expected - baseline) > 1e-3  # the latent matters here: the test can fail
    result = steering.run(embedded, AnalysisSpec(kind="steering", **PAIR, dictionary=site_name, latent=latent,
                                                 clamp="0"))
    effects = result.tables["effects"]
    assert effects[effects.ablated].metric.iloc[0] == pytest.approx(expected, abs=1e-4)
    assert result.meta["clamped"] == f"latent {latent} of {site_name} zeroed"


@pytest.mark.parametrize("site_name", SITES)
def test_feature_addition_equals_adding_the_decoder_row_as_a_vector(embedded, site_name):
    """resid_post L: the row added to resid_pre L+1 (where actadd adds its vectors); mlp: to
    hook_mlp_out; hook_z: the row through W_O, added to the attention output."""
    bridge = embedded.bridge
    dictionary = lookup.load(embedded, site_name)
    site, latent, coeff = dictionary.site, 7, 6.0
    row = dictionary.coder.W_dec[latent].detach().float()
    if site.kind == "resid":
        hook_name, vector = f"blocks.{site.layer + 1}.hook_resid_pre", row
    elif site.kind == "mlp":
        hook_name, vector = f"blocks.{site.layer}.hook_mlp_out", row
    else:
        w_o = bridge.W_O[site.layer].detach().float()  # [head, d_head, d_model]
        hook_name = f"blocks.{site.layer}.hook_attn_out"
        vector = sum(row.reshape(w_o.shape[:2])[h] @ w_o[h] for h in range(w_o.shape[0]))
    first = first_after_bos(bridge)

    def add(value, hook):
        return torch.cat([value[:, :first], value[:, first:] + coeff * vector], 1)

    tokens = prompt_tokens(bridge, FRANCE)
    expected = metric_with(bridge, tokens, [(hook_name, add)])
    result = steering.run(embedded, AnalysisSpec(kind="steering", **PAIR, method="feature", dictionary=site_name,
                                                 latent=latent, coeff=f"0,{coeff}"))
    effects = result.tables["effects"]
    assert effects.query("coeff == @coeff").metric.iloc[0] == pytest.approx(expected, abs=1e-4)
    assert (effects.layer == site.layer).all()
    vector_table = result.tables["vector"]
    assert vector_table.norm.iloc[0] == pytest.approx(float(vector.norm()), rel=1e-5)


def test_feature_and_clamp_refuse_what_they_do_not_take(embedded):
    def spec(**fields):
        return AnalysisSpec(kind="steering", prompt=FRANCE, **fields)

    with pytest.raises(SpecError, match="latent"):
        steering.check_fields(spec(method="feature", dictionary=SITES[0]))
    with pytest.raises(SpecError, match="positive"):
        steering.check_fields(spec(method="feature", dictionary=SITES[0], latent=1, positive="x", negative="y"))
    with pytest.raises(SpecError, match="layer"):
        steering.check_fields(spec(method="feature", dictionary=SITES[0], latent=1, layer="1"))
    with pytest.raises(SpecError, match="dictionary"):
        steering.check_fields(spec(dictionary=SITES[0], latent=1))
    with pytest.raises(SpecError, match="dictionary"):
        steering.check_fields(spec(clamp="0", latent=1))
    with pytest.raises(SpecError, match="out of range"):
        steering.run(embedded, spec(dictionary=SITES[0], latent=5000, clamp="0"))
    with pytest.raises(SpecError, match="no dictionary"):
        steering.run(embedded, spec(dictionary="blocks.9.hook_resid_post", latent=1, clamp="0"))
    with pytest.raises(SpecError, match="clamp"):
        AnalysisSpec(kind="steering", prompt=FRANCE, clamp="zero")


def test_the_cosine_rule_picks_numpys_most_aligned_decoder_row(embedded):
    from analyses.embedded import latent_steering

    dictionary = lookup.load(embedded, latent_steering.SITE)
    vector = latent_steering.contrast_vector(embedded.bridge)
    w_dec, v = dictionary.coder.W_dec.detach().double().numpy(), vector.double().numpy()
    cosines = w_dec @ v / (np.linalg.norm(w_dec, axis=1) * np.linalg.norm(v))
    latent, cosine = latent_steering.cosine_latent(dictionary, vector)
    assert latent == int(cosines.argmax()) and cosine == pytest.approx(cosines.max(), abs=1e-6)
