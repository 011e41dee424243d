"""The catalogue is plain data that names code: every name it gives must resolve, and the
choices and columns it declares must agree with the modules that implement them."""
import pytest

from analyses import SpecError
from analyses.core.catalogue import CATALOGUE, DETECTORS, GRANULARITIES, Kind, resolve


def test_every_kind_names_a_runner_and_a_figure_function_that_exist():
    for kind in CATALOGUE.kinds():
        assert callable(kind.run_function()), kind.name
        assert callable(kind.figures_function()), kind.name
        assert kind.runner == f"analyses.kinds.{kind.name}:run"
        assert kind.figures == f"analyses.figures.{kind.name}:figures"


def test_the_catalogue_agrees_with_the_engines_it_names():
    from analyses.kinds import activation_patching, attribution_patching, dla, heads, knockout, logit_lens
    from analyses.kinds.patching.engine import CHOICES

    assert CHOICES == GRANULARITIES
    assert tuple(heads.DETECTORS) == DETECTORS
    assert CATALOGUE["activation_patching"].tables["effects"] == activation_patching.EFFECT_COLUMNS
    assert CATALOGUE["attribution_patching"].tables == {
        "attributions": attribution_patching.ATTRIBUTION_COLUMNS, "agreement": attribution_patching.AGREEMENT_COLUMNS,
        "relp_agreement": attribution_patching.AGREEMENT_COLUMNS,  # RelP's, measured as AtP's
        "latents": attribution_patching.LATENT_COLUMNS}  # with dictionary=
    assert CATALOGUE["dla"].tables == {"contributions": dla.COLUMNS, "neurons": dla.NEURON_COLUMNS}
    assert CATALOGUE["knockout"].tables == {"knockout": knockout.COLUMNS}
    assert CATALOGUE["logit_lens"].tables == {"top": logit_lens.TOP_COLUMNS, "targets": logit_lens.TARGET_COLUMNS}
    assert CATALOGUE["heads"].tables == {"scores": heads.SCORE_COLUMNS, "ablation": heads.ABLATION_COLUMNS}
    assert set(CATALOGUE["neurons"].tables) == {"atlas", "promoters", "activations"}


def test_an_unknown_kind_is_a_spec_error_naming_the_known_ones():
    with pytest.raises(SpecError, match="kind: unknown kind 'nope'; choose one of: logit_lens, heads"):
        CATALOGUE["nope"]


def test_replacing_a_runner_makes_a_new_catalogue_and_leaves_the_shared_one_alone():
    def double(model, spec, progress):
        return "ran"

    replaced = CATALOGUE.replacing("dla", runner=double)
    assert replaced["dla"].run_function() is double
    assert CATALOGUE["dla"].runner == "analyses.kinds.dla:run"
    assert list(replaced) == list(CATALOGUE)
    assert replaced["logit_lens"] is CATALOGUE["logit_lens"]


def test_resolve_takes_a_dotted_path_or_a_callable():
    assert resolve("json:dumps")([1]) == "[1]"
    assert resolve(len) is len
    kind = Kind(name="x", summary="", version=1, runner=len, figures="json:dumps", required=(),
                optional=(), tables={})
    assert kind.run_function() is len and kind.fields == ()
