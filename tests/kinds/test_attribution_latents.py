"""Attribution patching over a dictionary's latents (`dictionary=`), on the embedded model and
its shipped dictionaries, held to independent re-derivations: the AtP estimates to plain torch
autograd through a hand-spliced model (the code from numpy, the error term a leaf of its own),
the exact effects to a hand-computed splice of one node, and per position the latents and the
error to the site's own AtP node from the model's basis (Δx = Δz @ W_dec + Δerr)."""
import numpy as np
import pytest
import torch
from latent_helpers import numpy_code, numpy_decode, site_value

from analyses import AnalysisSpec
from analyses.core.errors import SpecError
from analyses.dictionaries import lookup
from analyses.kinds import attribution_patching
from analyses.kinds.tokens import prompt_tokens, single_token

pytestmark = pytest.mark.usefixtures("private_cache")

FRANCE, GERMANY = "The capital of France is", "The capital of Germany is"
SITES = ["blocks.1.hook_resid_post", "blocks.1.attn.hook_z", "blocks.1.mlp"]


def run(model, **fields):
    spec = AnalysisSpec(kind="attribution_patching", clean=GERMANY, corrupted=FRANCE, answer=" Berlin",
                        wrong=" Paris", **fields)
    return attribution_patching.run(model, spec)


def metric(bridge, logits) -> torch.Tensor:
    berlin, paris = (single_token(bridge, t, "answer") for t in (" Berlin", " Paris"))
    return logits[0, -1, berlin] - logits[0, -1, paris]


def site_parts(bridge, dictionary, text):
    """Numpy: the code of the site's input and the error of its output, [pos, latent], [pos, d_in]."""
    site, tokens = dictionary.site, prompt_tokens(bridge, text)
    code = numpy_code(dictionary.coder, site_value(bridge, site, tokens, site.input_hook))
    error = site_value(bridge, site, tokens, site.output_hook) - numpy_decode(dictionary.coder, code)
    return code, error


@pytest.mark.parametrize("site_name", SITES)
def test_latent_atp_equals_autograd_through_a_hand_spliced_model(embedded, site_name):
    bridge = embedded.bridge
    dictionary = lookup.load(embedded, site_name)
    coder, site = dictionary.coder, dictionary.site
    code_clean, error_clean = site_parts(bridge, dictionary, GERMANY)
    code_corr, error_corr = site_parts(bridge, dictionary, FRANCE)
    z = torch.tensor(code_corr, dtype=torch.float32, requires_grad=True)
    err = torch.tensor(error_corr, dtype=torch.float32, requires_grad=True)

    def splice(value, hook):  # the site's output rebuilt from leaves: the same value, a path to z
        rebuilt = z @ coder.W_dec.detach() + coder.b_dec.detach() + err
        return rebuilt.reshape(value.shape[1:])[None]

    logits = bridge.run_with_hooks(prompt_tokens(bridge, FRANCE), fwd_hooks=[(site.output_hook, splice)])
    metric(bridge, logits).backward()
    want_latent = (code_clean - code_corr) * z.grad.double().numpy()  # [pos, latent]
    want_error = ((error_clean - error_corr) * err.grad.double().numpy()).sum(-1)  # [pos]

    table = run(embedded, dictionary=site_name, exact=False).tables["latents"]
    latents = table[table.node == "latent"]
    got = np.zeros_like(want_latent)
    got[latents.position, latents.latent] = latents.atp
    scale = np.abs(want_latent).max()
    assert np.abs(got - want_latent).max() < 1e-4 * scale + 1e-6  # inactive latents: 0 on both sides
    errors = table[table.node == "error"].sort_values("position")
    assert np.allclose(errors.atp, want_error, atol=1e-4 * np.abs(want_error).max() + 1e-6)
    active = (code_clean != 0) | (code_corr != 0)
    assert len(latents) == int(active.sum())  # one row per latent active in either run
    assert np.allclose(latents.clean_act, code_clean[latents.position, latents.latent], atol=1e-5)


@pytest.mark.parametrize("gradient", [None, "clean"])
@pytest.mark.parametrize("site_name", SITES)
def test_exact_patching_of_a_latent_equals_a_hand_splice(embedded, site_name, gradient):
    """The largest |atp| latent and the last position's error node: one latent (or the error)
    at one position set to its other run's value, by a plain hook."""
    bridge = embedded.bridge
    dictionary = lookup.load(embedded, site_name)
    coder, site = dictionary.coder, dictionary.site
    result = run(embedded, dictionary=site_name, gradient=gradient)
    table = result.tables["latents"]
    assert table.exact.notna().all()
    # gradient=clean: the effect of corrupting the node in the clean run (clean − that run)
    source, target = (FRANCE, GERMANY) if gradient == "clean" else (GERMANY, FRANCE)
    code_src, error_src = site_parts(bridge, dictionary, source)
    code_tgt, error_tgt = site_parts(bridge, dictionary, target)
    w_dec = coder.W_dec.detach().double().numpy()
    tokens = prompt_tokens(bridge, target)
    base = float(metric(bridge, bridge(tokens)))
    latents = table[table.node == "latent"]
    top = latents.loc[latents.atp.abs().idxmax()]
    last_error = table[(table.node == "error") & (table.position == table.position.max())].iloc[0]
    for node in (top, last_error):
        p = int(node.position)
        if node.node == "latent":
            j = int(node.latent)
            shift = (code_src[p, j] - code_tgt[p, j]) * w_dec[j]
        else:
            shift = error_src[p] - error_tgt[p]
        shift_t = torch.tensor(shift, dtype=torch.float32)

        def patch(value, hook, p=p, shift_t=shift_t):
            value = value.clone()
            value[0, p] += shift_t.reshape(value.shape[2:])
            return value

        patched = float(metric(bridge, bridge.run_with_hooks(tokens, fwd_hooks=[(site.output_hook, patch)])))
        expected = base - patched if gradient == "clean" else patched - base
        assert node.exact == pytest.approx(expected, abs=1e-4)
    agreement = result.tables["agreement"].set_index("node")
    assert set(agreement.index) == {"latent", "error", "all"}


@pytest.mark.parametrize("site_name", SITES)
def test_latents_and_error_sum_to_the_sites_own_atp_node(embedded, site_name):
    dictionary = lookup.load(embedded, site_name)
    site = dictionary.site
    table = run(embedded, dictionary=site_name, exact=False).tables["latents"]
    per_position = table.groupby("position")["atp"].sum()
    nodes = run(embedded, exact=False).tables["attributions"]
    if site.kind == "resid":  # resid_post of block L is the residual entering block L + 1
        own = nodes[(nodes.node == "resid") & (nodes.layer == site.layer + 1)].set_index("position")["atp"]
    elif site.kind == "mlp":
        own = nodes[(nodes.node == "mlp") & (nodes.layer == site.layer)].set_index("position")["atp"]
    else:  # the heads' outputs together
        own = nodes[(nodes.node == "head") & (nodes.layer == site.layer)].groupby("position")["atp"].sum()
    assert np.allclose(per_position.sort_index(), own.sort_index(), atol=1e-4)


def test_a_latent_run_refuses_the_model_basis_options(embedded):
    for fields in (dict(layer=1), dict(qk_fix=True), dict(graddrop=True), dict(method="relp")):
        with pytest.raises(SpecError, match=next(iter(fields))):
            run(embedded, dictionary=SITES[0], **fields)
    with pytest.raises(SpecError, match="dictionary"):
        run(embedded, dictionary="/nonexistent/folder")


def test_over_a_prompt_set_each_rows_latents_are_its_own_run_and_the_summary_means_them(embedded):
    from analyses.core.datasets import PromptSet
    from analyses.kinds import sets

    rows = ({"clean": GERMANY, "corrupted": FRANCE, "answer": " Berlin", "wrong": " Paris"},
            {"clean": FRANCE, "corrupted": GERMANY, "answer": " Paris", "wrong": " Berlin"})
    prompt_set = PromptSet(name="two capitals", rows=rows)
    spec = AnalysisSpec(kind="attribution_patching", dataset=prompt_set.reference, dictionary=SITES[0], exact=False)
    result = sets.run(attribution_patching.run, embedded, spec, prompt_set)
    per_example = result.tables["latents"]
    for i, row in enumerate(rows):
        alone = attribution_patching.run(embedded, spec.for_row(row)).tables["latents"]
        mine = per_example[per_example.example == i]
        assert np.allclose(mine.atp.to_numpy(), alone.atp.to_numpy(), atol=1e-6)
    summary = result.tables["latents_summary"].set_index(["node", "position", "latent"])
    both = per_example.groupby(["node", "position", "latent"])["atp"].agg(["mean", "count"])
    both = both[both["count"] == 2]  # a latent active in both examples: the mean of its two values
    assert len(both) and np.allclose(summary.loc[both.index, "mean"], both["mean"], atol=1e-9)
