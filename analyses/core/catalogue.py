"""The catalogue: the one visible list of analysis kinds, as plain data.

Each entry says what a kind needs (spec fields), what it returns (tables and their
columns), its version, and *where* the code that runs it and draws it lives — as dotted
paths (`"analyses.kinds.logit_lens:run"`), imported only when a job runs or a figure is
asked for. So building a spec, checking it, listing kinds and reading a cached result
import neither torch nor transformers nor TransformerLens.

A new kind is one module under `analyses/kinds/`, one under `analyses/figures/`, and one
entry in `KINDS` below. Tests and embedders can build their own `Catalogue` (with a kind
whose runner is a plain function) and hand it to a worker, instead of patching this one.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from .errors import SpecError

Code = str | Callable  # "package.module:attribute", or the callable itself

# Choices shared by a kind's spec check and the code that implements it (each kind's
# module asserts it agrees with these at import: one definition, checked both ways).
GRANULARITIES = (
    "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out",
    "head_out", "head_out_by_pos", "head_q", "head_k", "head_v",
    "head_q_by_pos", "head_k_by_pos", "head_v_by_pos", "head_pattern", "head_pattern_by_pos",
    "direct_path", "all",
)
DETECTORS = ("previous_token", "duplicate_token", "induction", "retrieval")
# feature: a dictionary latent's decoder row; cav: GCAV, a concept probe's direction
STEERING_METHODS = ("actadd", "mean_diff", "mean_centred", "feature", "cav")
STEERING_POSITIONS = ("all", "last", "generated")
ABLATIONS = ("zero", "mean")
CIRCUIT_METHODS = ("eap", "eap_ig")
ATTRIBUTION_METHODS = ("atp", "relp")  # relp: AtP beside relevance patching
# a prompt set's `<table>_summary` columns after its keys (`analyses/core/summary.py`);
# `interval` names each row's interval: t, wilson, paired delta or single (one measurement)
SUMMARY_COLUMNS = ("mean", "sem", "ci_low", "ci_high", "n", "interval")
# The run a gradient-based estimate takes its gradient on (unset: corrupted): corrupted
# estimates restoring clean into the corrupted run, clean estimates corrupting the clean run.
GRADIENTS = ("corrupted", "clean")
# Attention knockout's source sets (`analyses/kinds/knockout/`): the key positions
# whose edges into the query are cut. subject: the subject's tokens; other: the non-subject
# tokens before the query; last: the query position itself; all: every key but BOS.
KNOCKOUT_SOURCES = ("subject", "other", "last", "all")
# Where a probe reads each layer (`blocks.L.hook_<site>`): sites every architecture has
PROBE_SITES = ("resid_post", "resid_pre", "attn_out", "mlp_out")


@dataclass(frozen=True)
class Kind:
    """One analysis kind. `runner` is called as `runner(model, spec, progress) -> Result`;
    `figures` as `figures(result) -> {name: plotly Figure}`."""

    name: str
    summary: str
    version: int  # bump when the numbers a kind returns change: old cache entries go stale
    runner: Code
    figures: Code
    required: tuple[str, ...]
    optional: tuple[str, ...]
    tables: dict[str, tuple[str, ...]]  # table name -> its columns
    defaults: dict = field(default_factory=dict)
    # allowed values of text fields, checked when the spec is made (a comma list is
    # checked item by item for fields in `list_fields`)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    list_fields: tuple[str, ...] = ()
    # with `dataset=`: the input fields each row of the set gives (the spec gives the rest)
    row_fields: tuple[str, ...] = ()
    # with `dataset=`, optional: `examples_runner(model, specs, progress)` -> each spec's
    # Result or UserError, running several rows together; without it, rows run one by one
    examples_runner: Code | None = None
    # with `dataset=`, optional: `set_runner(model, spec, prompt_set, progress)` -> one Result
    # for the whole set (a kind whose answer pools the rows, as a circuit found on a set does)
    set_runner: Code | None = None
    # optional: `key_content(spec) -> str`, what else the result depends on (the dictionaries
    # a kind reads, by content), added to the result key; torch-free (a cache hit needs no torch)
    key_content: Code | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)

    @property
    def set_tables(self) -> dict[str, tuple[str, ...]]:
        """A run over a prompt set's tables and the columns each must have: every table with
        `example`, a summary of it, and the examples and skipped rows
        (`analyses/kinds/sets.py`); a kind that runs a set as a whole (`set_runner`) keeps its
        own tables and adds the examples and skipped rows."""
        if self.set_runner is not None:
            return {**self.tables, "examples": ("example",), "skipped": ("example", "reason", "row")}
        tables = {name: ("example", *columns) for name, columns in self.tables.items()}
        tables.update({f"{name}_summary": SUMMARY_COLUMNS for name in self.tables})
        return {**tables, "examples": ("example",), "skipped": ("example", "reason", "row")}

    def run_function(self) -> Callable:
        """The function that runs this kind (imports its module: torch and the rest)."""
        return resolve(self.runner)

    def examples_function(self) -> Callable | None:
        """The function that runs several rows of a prompt set together, if the kind has one."""
        return resolve(self.examples_runner) if self.examples_runner else None

    def set_function(self) -> Callable | None:
        """The function that runs a whole prompt set as one analysis, if the kind has one."""
        return resolve(self.set_runner) if self.set_runner else None

    def figures_function(self) -> Callable:
        """The function that draws this kind's result (imports plotly, never Streamlit)."""
        return resolve(self.figures)

    def with_runner(self, runner: Code) -> Kind:
        return replace(self, runner=runner)


def resolve(code: Code) -> Callable:
    """A callable from a `"module:attribute"` path (or the callable itself)."""
    if callable(code):
        return code
    module, _, attribute = code.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Catalogue:
    """Kinds by name, in their listed order."""

    def __init__(self, kinds: tuple[Kind, ...]):
        self._kinds = {k.name: k for k in kinds}

    def __getitem__(self, name: str) -> Kind:
        if name not in self._kinds:
            raise SpecError("kind", f"unknown kind {str(name)[:40]!r}; choose one of: "
                                    f"{', '.join(self._kinds)}")
        return self._kinds[name]

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def kinds(self) -> list[Kind]:
        return list(self._kinds.values())

    def replacing(self, name: str, **changes) -> Catalogue:
        """A copy in which kind `name` has `changes` (e.g. `runner=` a test double)."""
        return Catalogue(tuple(replace(k, **changes) if k.name == name else k
                               for k in self._kinds.values()))


KINDS: tuple[Kind, ...] = (
    Kind(
        name="logit_lens",
        summary="what each layer would predict: the residual stream read through the unembedding",
        version=2,  # 2: set summaries: exact t, the `interval` column; ablation starts after BOS
                    # only when the model has one (BOS-less models: at 0);
                    # also: targets read with the comma list's escapes (`\,` a comma in a token)
        runner="analyses.kinds.logit_lens:run",
        figures="analyses.figures.logit_lens:figures",
        examples_runner="analyses.kinds.logit_lens:run_examples",
        required=("prompt",),
        optional=("top_k", "token", "final_norm", "ablate", "ablation", "dataset", "positions"),
        row_fields=("prompt", "token"),
        tables={"top": ("layer", "layer_index", "position", "token", "rank", "token_id",
                        "token_str", "prob", "logit"),
                "targets": ("layer", "layer_index", "position", "token_id", "token_str", "rank",
                            "prob")},
        defaults={"top_k": 10, "final_norm": True},
        choices={"ablation": ABLATIONS},
    ),
    Kind(
        name="heads",
        summary="which attention heads are previous-token, duplicate-token, induction or "
                "retrieval heads",
        # 2: induction `score` on the standard 0-1 scale; TransformerLens's in `tl_score`.
        # 3: retrieval needles the model can copy; `events`; 4 heads and 5 random sets ablated
        version=3,
        runner="analyses.kinds.heads:run",
        figures="analyses.figures.heads:figures",
        required=(),
        optional=("detector", "prompt", "seed", "ablate", "top_k"),
        tables={"scores": ("detector", "layer", "head", "score", "tl_score", "events"),
                "ablation": ("detector", "heads", "ablated", "metric", "baseline", "after",
                             "drop")},
        defaults={"detector": ",".join(DETECTORS), "seed": 0, "ablate": False},
        choices={"detector": DETECTORS},
        list_fields=("detector",),
    ),
    Kind(
        name="activation_patching",
        summary="which activations carry the answer: patch clean activations into the "
                "corrupted run",
        # 2: direct_path; the effects table gained the sender/receiver_input columns.
        # 3: a set's normalised means get the paired (delta-method) interval; exact t; `interval`
        version=3,
        runner="analyses.kinds.activation_patching:run",
        examples_runner="analyses.kinds.activation_patching:run_examples",
        figures="analyses.figures.activation_patching:figures",
        required=("clean", "corrupted", "answer", "wrong"),
        optional=("granularity", "layer", "dataset"),
        row_fields=("clean", "corrupted", "answer", "wrong"),
        tables={"effects": ("granularity", "layer", "position", "head", "value", "raw",
                            "sender_layer", "sender_head", "receiver_input")},
        defaults={"granularity": "resid_pre"},
        choices={"granularity": GRANULARITIES},
    ),
    Kind(
        name="neurons",
        summary="neuron atlas: the tokens each MLP neuron promotes and suppresses, read through "
                "the unembedding; which neurons promote a token; top neurons on a prompt",
        version=2,  # 2: activations ranked after BOS (BOS is shown, never ranked);
                    # also: targets read with the comma list's escapes (`\,` a comma in a token)
        runner="analyses.kinds.neurons:run",
        figures="analyses.figures.neurons:figures",
        required=(),
        optional=("top_k", "final_norm", "token", "prompt", "layer", "neuron"),
        tables={"atlas": ("layer", "neuron", "rank", "token_id", "token_str", "score",
                          "direction"),
                "promoters": ("token_id", "token_str", "layer", "neuron", "score", "rank"),
                "activations": ("layer", "neuron", "position", "token", "activation")},
        defaults={"top_k": 10, "final_norm": True},
    ),
    Kind(
        name="dla",
        summary="direct logit attribution: each layer's and head's direct share of the logit "
                "difference answer − wrong at the prompt's last position",
        version=4,  # 2: set summaries: exact t, the `interval` column. 3: meta n_tokens (a set's
                    # examples table showed None). 4: the `neurons` table (each MLP split by neuron)
        runner="analyses.kinds.dla:run",
        examples_runner="analyses.kinds.dla:run_examples",
        figures="analyses.figures.dla:figures",
        required=("prompt", "answer"),
        optional=("wrong", "top_k", "dataset"),
        row_fields=("prompt", "answer", "wrong"),
        tables={"contributions": ("component", "layer", "head", "value"),
                "neurons": ("layer", "part", "neuron", "rank", "activation", "value")},
        defaults={"top_k": 10},
    ),
    Kind(
        name="attribution_patching",
        summary="every node's patching effect at once, estimated from one forward and backward "
                "pass",
        # 2: agreement ties |values| < 1e-4 at zero; n_nodes, n_signal. 3: RelP (`relp`).
        # 4: set summaries: exact t, the `interval` column
        version=4,
        runner="analyses.kinds.attribution_patching:run",
        examples_runner="analyses.kinds.attribution_patching:run_examples",
        figures="analyses.figures.attribution_patching:figures",
        required=("clean", "corrupted", "answer", "wrong"),
        optional=("layer", "exact", "qk_fix", "graddrop", "method", "gradient", "dataset", "dictionary"),
        row_fields=("clean", "corrupted", "answer", "wrong"),
        tables={"attributions": ("node", "layer", "position", "head", "atp", "relp", "exact"),
                "agreement": ("node", "pearson", "spearman", "top10_overlap", "n_nodes", "n_signal"),
                "relp_agreement": ("node", "pearson", "spearman", "top10_overlap", "n_nodes", "n_signal"),
                # with dictionary=: its latents and error node at each position (no `attributions`)
                "latents": ("node", "layer", "position", "latent", "token", "clean_act", "corrupted_act",
                            "atp", "exact")},
        defaults={"qk_fix": False, "graddrop": False, "method": "atp"},
        choices={"method": ATTRIBUTION_METHODS, "gradient": GRADIENTS},
    ),
    Kind(
        name="attention",
        summary="attention patterns: how much each head's query at each position attends to each "
                "earlier key",
        version=2,  # 2: `last` and `answers` (the patterns' numbers are unchanged); prompt sets
        runner="analyses.kinds.attention:run",
        examples_runner="analyses.kinds.attention:run_examples",
        figures="analyses.figures.attention:figures",
        required=("prompt",),
        optional=("layer", "head", "answer", "wrong", "dataset"),
        row_fields=("prompt", "answer", "wrong"),
        tables={"patterns": ("layer", "head", "query_pos", "key_pos", "weight"),
                "last": ("layer", "head", "position", "weight"),
                "answers": ("layer", "head", "target", "weight", "n_positions")},
    ),
    Kind(
        name="steering",
        summary="intervene and read what the model then says: add a steering vector built from "
                "contrast texts, knock out heads or layers, and generate",
        version=3,  # 2: set summaries: exact t, Wilson for top1, kl one measurement (n = 1);
                    # the vector is never added at BOS (positions=all, and the KL's neutral text);
                    # samples drawn from the job's own generator (Gumbel-max), not the global one
                    # 3: method=cav and `p_target` (GCAV): the `p_target` column, the `cav` table
        runner="analyses.kinds.steering:run",
        examples_runner="analyses.kinds.steering:run_examples",
        figures="analyses.figures.steering:figures",
        required=("prompt",),
        optional=("positive", "negative", "method", "layer", "coeff", "positions", "ablate",
                  "ablation", "max_new_tokens", "temperature", "seed", "answer", "wrong", "top_k",
                  "dataset", "dictionary", "latent", "clamp", "p_target"),
        row_fields=("prompt", "answer", "wrong"),
        # generations and effects also carry `p_target` (`analyses.kinds.steering.EXTRA_COLUMNS`:
        # a GCAV cell's target, its coeff then NaN; NaN elsewhere), left out of the declared
        # columns so that tables written before it (stored, or built by hand) still read
        tables={"generations": ("layer", "coeff", "ablated", "sample", "text", "tokens", "logprobs"),
                "effects": ("layer", "coeff", "ablated", "metric", "top1", "top_token", "kl"),
                "vector": ("layer", "norm", "rank", "token_id", "token_str", "score", "direction"),
                "cav": ("layer", "p_target", "ablated", "p_before", "strength", "coeff", "p_after",
                        "probe_accuracy")},
        defaults={"method": "mean_diff", "coeff": "0,0.5,1,2", "positions": "all",
                  "ablation": "mean", "max_new_tokens": 20, "temperature": "0", "seed": 0,
                  "top_k": 10},
        choices={"method": STEERING_METHODS, "positions": STEERING_POSITIONS, "ablation": ABLATIONS},
    ),
    Kind(
        name="ablation_sweep",
        summary="knock out every head and every MLP in turn: the effect of each on the logit "
                "difference and on top-1, as one grid",
        version=1,
        runner="analyses.kinds.ablation_sweep:run",
        examples_runner="analyses.kinds.ablation_sweep:run_examples",
        figures="analyses.figures.ablation_sweep:figures",
        required=("prompt", "answer"),
        optional=("wrong", "ablation", "dataset"),
        row_fields=("prompt", "answer", "wrong"),
        tables={"effects": ("component", "site", "layer", "head", "metric", "delta", "top1",
                            "top_token")},
        defaults={"ablation": "mean"},
        choices={"ablation": ABLATIONS},
    ),
    Kind(
        name="circuit",
        summary="which edges between components carry the behaviour: edge attribution (EAP, "
                "EAP-IG), checked by running the circuit alone",
        # 2: exact runs on a seeded random sample of the set (was: its first 16 rows) and the
        # correlations read the scores over that sample (`sample_score`)
        # 3: ten random edge sets per k for the faithfulness baseline (was three)
        version=3,
        runner="analyses.kinds.circuit:run",
        set_runner="analyses.kinds.circuit:run_set",
        figures="analyses.figures.circuit:figures",
        required=("clean", "corrupted", "answer", "wrong"),
        optional=("method", "gradient", "steps", "seed", "exact", "dataset"),
        row_fields=("clean", "corrupted", "answer", "wrong"),
        tables={"edges": ("rank", "sender", "receiver", "receiver_input", "score", "exact", "sample_score"),
                "faithfulness": ("k", "share_of_edges", "metric", "random_mean", "random_min",
                                 "random_max"),
                "nodes": ("node", "layer", "head", "score")},
        defaults={"method": "eap_ig", "steps": 5, "seed": 0, "exact": False},
        choices={"method": CIRCUIT_METHODS, "gradient": GRADIENTS},
    ),
    Kind(
        name="knockout",
        summary="attention knockout (Geva et al. 2023): cut the last position's attention to the "
                "subject, the other tokens or itself in a window of layers, and read the change in "
                "the answer's probability",
        version=1,
        runner="analyses.kinds.knockout:run",
        figures="analyses.figures.knockout:figures",
        required=("prompt",),
        optional=("answer", "subject", "source", "window", "dataset"),
        row_fields=("prompt", "answer", "subject"),
        tables={"knockout": ("window_start", "window_end", "source", "answer_prob", "change",
                             "relative", "n_keys")},
        choices={"source": KNOCKOUT_SOURCES},
        list_fields=("source",),
    ),
    Kind(
        name="features",
        summary="a prompt read through a sparse dictionary: the top latents at each position, "
                "what each writes toward (logit effects), and the reconstruction error it leaves",
        version=1,
        runner="analyses.kinds.features:run",
        set_runner="analyses.kinds.features:run_set",
        figures="analyses.figures.features:figures",
        required=("prompt", "dictionary"),
        optional=("top_k", "dataset"),
        row_fields=("prompt",),
        tables={"activations": ("position", "token", "rank", "latent", "value"),
                "latents": ("latent", "density", "max_value", "direction", "rank", "token_id",
                            "token_str", "score"),
                "errors": ("position", "token", "error_norm", "norm", "relative"),
                # over a prompt set (`analyses/kinds/features_set.py`): one row per latent
                "set_latents": ("latent", "n_examples", "share_of_examples", "n_positions",
                                "share_of_positions", "mean_value", "max_value", "max_example",
                                "max_position", "max_token", "share_x_mean", "density", "promotes",
                                "suppresses", "top_promote_score", "dashboard")},
        defaults={"top_k": 10},
    ),
    Kind(
        name="latent_index",
        summary="every latent's dashboard, built once per dictionary over held-out corpus text: "
                "top-activating contexts, activation histogram, density, logit effects, head shares",
        version=1,
        runner="analyses.kinds.latent_index:run",
        figures="analyses.figures.latent_index:figures",
        required=("dictionary",),
        optional=("top_k", "corpus_tokens", "seed"),
        tables={"latents": ("latent", "density", "fires", "max_value", "mean_value"),
                "contexts": ("latent", "rank", "doc", "position", "value", "token_id", "token_str"),
                "context_tokens": ("latent", "rank", "offset", "position", "token_id", "token_str",
                                   "value"),
                "histogram": ("latent", "bin", "low", "high", "count"),
                "logit_effects": ("latent", "direction", "rank", "token_id", "token_str", "score"),
                "promoters": ("token_id", "token_str", "rank", "latent", "score"),
                "heads": ("latent", "head", "share")},
        defaults={"top_k": 12, "corpus_tokens": 100_000, "seed": 0},
    ),
    Kind(
        name="sparsity",
        summary="activation sparsity: how much of each MLP could be skipped for a p% rise in "
                "perplexity (PPL-p% sparsity, CETT thresholds; Luo et al. 2025)",
        version=1,
        runner="analyses.kinds.sparsity:run",
        set_runner="analyses.kinds.sparsity:run_set",
        figures="analyses.figures.sparsity:figures",
        required=(),
        optional=("p", "prompt", "seed", "dataset"),
        row_fields=("prompt",),
        tables={"summary": ("p", "cett", "cett_upper", "ppl_increase", "activation_ratio", "sparsity",
                            "steps"),
                "layers": ("p", "layer", "cett", "layer_cett", "threshold", "activation_ratio",
                           "sparsity", "ppl_increase"),
                "curve": ("cett", "ppl_increase", "activation_ratio", "sparsity", "mean_threshold",
                          "source"),
                "neurons": ("p", "layer", "neuron", "frequency", "dead", "always_on"),
                "tokens": ("p", "document", "position", "token", "layer", "activation_ratio")},
        defaults={"p": "1,5,10", "seed": 0},
    ),
    Kind(
        name="graph",
        summary="attribution graph: which transcoder latents, at which positions, write the answer, "
                "on a local replacement model (frozen attention and norms, error nodes)",
        version=1,
        runner="analyses.kinds.graph:run",
        set_runner="analyses.kinds.graph:run_set",
        key_content="analyses.runtime.dictionary_keys:transcoders_content",
        figures="analyses.figures.graph:figures",
        required=("prompt",),
        optional=("transcoders", "node_threshold", "edge_threshold", "max_features", "intervene",
                  "dataset"),
        row_fields=("prompt",),
        tables={"nodes": ("node", "type", "layer", "position", "latent", "token_id", "token", "value",
                          "bias", "influence", "cumulative", "kept"),
                "edges": ("source", "target", "weight"),
                "logits": ("token_id", "token", "prob", "logit", "value", "bias"),
                "scores": ("graph", "replacement", "completeness", "n_latents", "n_nodes", "n_edges"),
                "interventions": ("node", "op", "old_value", "new_value", "token_id", "token",
                                  "predicted", "actual", "gap"),
                # over a prompt set
                "scores_summary": ("graph", "quantity", *SUMMARY_COLUMNS),
                "recurring": ("layer", "latent", "n_examples", "mean_influence", "share_of_examples",
                              "mean_influence_all")},
        defaults={"node_threshold": "0.8", "edge_threshold": "0.98", "max_features": 1000},
    ),
    Kind(
        name="probe",
        summary="linear probes: how well each layer's activations tell texts with a concept from "
                "texts without, and the concept's direction (its CAV) beside the mean difference",
        version=1,
        runner="analyses.kinds.probe:run",
        set_runner="analyses.kinds.probe:run_set",
        figures="analyses.figures.probe:figures",
        required=(),
        optional=("dataset", "site", "seed"),
        row_fields=("prompt", "label"),
        tables={"layers": ("layer", "site", "accuracy", "ci_low", "ci_high", "n_test", "n_train",
                           "train_accuracy", "cosine_mean_diff", "agrees", "mean_diff_accuracy",
                           "bias", "norm"),
                "directions": ("layer", "component", "probe", "mean_diff")},
        defaults={"site": "resid_post", "seed": 0},
        choices={"site": PROBE_SITES},
    ),
)

CATALOGUE = Catalogue(KINDS)


def kind(name: str) -> Kind:
    """The default catalogue's entry for `name` (a SpecError naming `kind` if unknown)."""
    return CATALOGUE[name]
