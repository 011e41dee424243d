"""Speed rows: ours against TransformerLens's own functions (or a plain forward pass, or
torch.mm) on the same model and inputs, in the same run."""
from __future__ import annotations

import numpy as np
import torch

from analyses import AnalysisSpec, compute
from analyses.kinds import activation_patching, attribution_patching, heads, logit_lens, neurons
from bench.common import row, timed, timed_alternating

# granularity -> (TransformerLens sweep, the columns of our table that index its output)
TL_SWEEPS = {"resid_pre": ("get_act_patch_resid_pre", ["layer", "position"]),
             "head_out": ("get_act_patch_attn_head_out_all_pos", ["layer", "head"]),
             "head_out_by_pos": ("get_act_patch_attn_head_out_by_pos", ["layer", "position", "head"])}
TL_INDEX = {"layer": "layer", "position": "pos", "head": "head_index"}


def _metric(pair):
    return lambda logits: logits[0, -1, pair.answer] - logits[0, -1, pair.wrong]


def patching_row(label, model, ref, pair, granularity, target_ratio, sample=None, warmup=1):
    """Ours vs TransformerLens's one-forward-per-cell sweep, compared as in
    tests/test_activation_patching.py (the raw logit difference, atol 1e-5).

    Without `sample` (a few milliseconds ours), the two are timed in turn, 5 each after a
    warm-up. With `sample`, the reference runs once on that many random cells (TransformerLens's own
    `index_df`) and its time is scaled to all cells: a full sweep of a large model would take
    most of the benchmark's budget, and a sweep's cells all cost one forward pass each. Our
    side then runs once too, after `warmup` runs (none where earlier rows ran the same
    granularity on this model: a 64-token sweep of the GPT-2-small shape takes over a minute)."""
    from transformer_lens import patching as tl_patching

    bridge = model.bridge
    spec = AnalysisSpec(kind="activation_patching", model=ref, granularity=granularity, **pair)
    def run():
        return activation_patching.run(model, spec)
    if sample is None:  # its cells now; timed below, in turn with the reference
        result = run()
    else:
        t_ours, result = timed(run, 1, warmup)
    tl_pair = activation_patching.prompt_pair(bridge, spec)
    sweep_name, axes = TL_SWEEPS[granularity]
    sweep = getattr(tl_patching, sweep_name)
    ours = result.tables["effects"]
    cells = ours[axes].reset_index(drop=True)
    index_df = None
    if sample is not None and sample < len(cells):
        cells = cells.sample(sample, random_state=0).sort_values(axes).reset_index(drop=True)
        index_df = cells.rename(columns=TL_INDEX)

    def reference():
        with torch.no_grad():
            _, clean_cache = bridge.run_with_cache(tl_pair.clean)
            if index_df is None:
                return sweep(bridge, tl_pair.corrupted, clean_cache, _metric(tl_pair))
            fixed = {k: v for k, v in sweep.keywords.items() if k != "index_axis_names"}
            return tl_patching.generic_activation_patch(
                bridge, tl_pair.corrupted, clean_cache, _metric(tl_pair), index_df=index_df, **fixed)

    if sample is None:  # a few milliseconds ours: taken in turn with the reference (5 each)
        t_ours, t_ref, _, expected = timed_alternating(run, reference, 5)
    else:
        t_ref, expected = timed(reference, 1, 0)
    got = cells.merge(ours, on=axes, how="left")["raw"].to_numpy()
    if index_df is None:
        got = ours.set_index(axes).raw.sort_index().to_numpy()
        expected = expected.reshape(-1)
    else:
        t_ref *= len(ours) / len(cells)
    diff = float(np.abs(got - expected.numpy().reshape(-1)).max())
    ratio = t_ref / t_ours
    note = f"{int(tl_pair.clean.shape[1])} tokens, {len(ours)} cells"
    if index_df is None:  # what a forward's fixed cost is here: the floor of any sweep
        with torch.no_grad():
            t_row = timed(lambda: bridge(tl_pair.corrupted), repeats=5)[0]
        note += f"; one forward of one row takes {t_row * 1e3:.1f} ms"
    else:
        note += f"; reference timed on {len(cells)} random cells and scaled to all, one run each"
    return row(f"patching {granularity}, {label}", t_ours, t_ref, ratio, diff,
               f">= {target_ratio}x, abs diff <= 1e-5", ratio >= target_ratio and diff <= 1e-5, note)


def forward_with_cache(bridge, tokens):
    def forward():
        with torch.no_grad():
            return bridge.run_with_cache(tokens)
    return timed(forward)[0]


def attribution_rows(label, model, ref, pair):
    """All nodes, plain AtP: time over one forward pass with cache; and ours against
    TransformerLens's `attribution_patch` (node scores compared, atol 1e-5)."""
    from transformer_lens.tools.analysis.attribution_patching import attribution_patch

    bridge = model.bridge
    spec = AnalysisSpec(kind="attribution_patching", model=ref, exact=False, **pair)
    t_ours, result = timed(lambda: attribution_patching.run(model, spec))
    tl_pair = activation_patching.prompt_pair(bridge, spec)
    t_fwd = forward_with_cache(bridge, tl_pair.corrupted)
    t_tl, reference = timed(lambda: attribution_patch(bridge, tl_pair.clean, tl_pair.corrupted,
                                                      _metric(tl_pair)))
    table = result.tables["attributions"].set_index(["node", "layer", "position", "head"]).atp
    kinds = {"attn_head_out": "head", "mlp_out": "mlp"}
    diffs = [abs(table[(kinds[n.kind], n.layer, n.position, n.head if n.kind == "attn_head_out"
                        else -1)] - score)
             for n, score in reference.node_scores.items() if n.kind in kinds]
    n_tokens = int(tl_pair.clean.shape[1])
    ratio = t_ours / t_fwd
    return [
        row(f"attribution patching (AtP, all nodes) / forward, {label}", t_ours, t_fwd, ratio,
            None, "<= 4x a forward with cache", ratio <= 4,
            f"{n_tokens} tokens, {len(table)} nodes; reference = one run_with_cache"),
        row(f"attribution patching vs TransformerLens attribution_patch, {label}", t_ours, t_tl,
            t_tl / t_ours, float(max(diffs)), "abs diff <= 1e-5", float(max(diffs)) <= 1e-5,
            "ratio = reference / ours; head and MLP node scores compared"),
    ]


def logit_lens_floor(bridge, tokens, n_positions: int, top_k: int = 10) -> tuple[float, float]:
    """The least any exact logit lens can do, timed in two parts: one forward with the
    residual stream cached, and the unembedding of every stack entry at `n_positions`
    positions with their top-k."""
    cfg = bridge.cfg
    stack = torch.randn((int(cfg.n_layers) + 1) * n_positions, int(cfg.d_model))
    w_u = bridge.W_U.detach()
    return forward_with_cache(bridge, tokens), timed(lambda: (stack @ w_u).topk(top_k, dim=-1))[0]


def logit_lens_row(label, model, ref, prompt, window: int | None = None):
    """Against its own floor (`logit_lens_floor`): with `window`, only the last `window`
    positions are read out (the `positions` field) and the floor unembeds only those."""
    bridge = model.bridge
    tokens = bridge.to_tokens(prompt)
    n_tokens = int(tokens.shape[1])
    fields = dict(positions=f"{n_tokens - window}-{n_tokens - 1}") if window else {}
    spec = AnalysisSpec(kind="logit_lens", model=ref, prompt=prompt, top_k=10, **fields)
    t_ours, _ = timed(lambda: logit_lens.run(model, spec))
    shown = window or n_tokens
    t_fwd, t_readout = logit_lens_floor(bridge, tokens, shown)
    t_floor = t_fwd + t_readout
    ratio = t_ours / t_floor
    what = f"window of the last {window} positions" if window else "all layers x positions"
    return row(f"logit lens ({what}, top-10), {label}", t_ours, t_floor, ratio,
               None, "<= 1.3x its floor", ratio <= 1.3,
               f"{n_tokens} tokens, {shown} read out; reference = its floor: one run_with_cache "
               f"({t_fwd * 1e3:.1f} ms) + unembedding {int(bridge.cfg.n_layers) + 1} streams x {shown} "
               f"positions and their top-10 ({t_readout * 1e3:.1f} ms); ours / a forward "
               f"{t_ours / t_fwd:.2f}x")


def heads_row(label, model, ref, detectors: str | None = None):
    """The detectors (all four unless `detectors` names some): time over one forward pass
    with cache on the induction probe. Named detectors are timed once, without a warm-up:
    on the GPT-2-small shape retrieval's 32 needle prompts alone take over a minute here."""
    bridge = model.bridge
    spec = AnalysisSpec(kind="heads", model=ref, detector=detectors)
    t_ours, _ = timed(lambda: heads.run(model, spec), *((1, 0) if detectors else ()))
    probe = heads.repeated_probe(bridge, np.random.default_rng(0))
    tokens = torch.as_tensor(probe.tokens)
    t_fwd = forward_with_cache(bridge, tokens)
    ratio = t_ours / t_fwd
    which = "all four" if detectors is None else detectors.replace("_", "-").replace(",", ", ")
    return row(f"head detectors ({which}) / forward, {label}", t_ours, t_fwd, ratio, None,
               "report", None, f"reference = one run_with_cache on the induction probe "
               f"{tuple(tokens.shape)}; the detectors run one probe each")


def neurons_row(label, model, ref, layer=None):
    """Achieved GFLOP/s of the atlas (2 * neurons * d_model * d_vocab / time) against
    torch.mm on the same shapes, in the atlas's own chunks, in the same run; peak memory."""
    from bench.common import peak_memory

    bridge = model.bridge
    spec = AnalysisSpec(kind="neurons", model=ref, layer=layer)
    long = layer is not None  # seconds a call: no warm-up, one call (the embedded atlas: 3)
    t_ours, result = timed(lambda: neurons.run(model, spec), *((1, 0) if long else ()))
    _, peak_mib, _ = peak_memory(lambda: neurons.run(model, spec))
    n = int(result.meta["neurons"])
    d_model, d_vocab = bridge.W_U.shape
    chunk = neurons.chunk_size(d_vocab)
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(n, d_model, generator=gen)
    w_u = torch.randn(d_model, d_vocab, generator=gen)

    def mm():
        out = None
        for start in range(0, n, chunk):
            out = torch.mm(rows[start:start + chunk], w_u)
        return out

    t_mm, scores = timed(mm, *((1, 0) if long else ()))
    k = int(spec.with_defaults().top_k)
    t_topk = timed(lambda: (scores.topk(k, dim=-1), scores.topk(k, dim=-1, largest=False)))[0]
    t_topk *= -(-n // chunk)  # one chunk's top and bottom k, times the chunks
    flops = 2.0 * n * d_model * d_vocab
    ours_rate, mm_rate = flops / t_ours / 1e9, flops / t_mm / 1e9
    ratio = ours_rate / mm_rate
    return row(f"neuron atlas, {label}", t_ours, t_mm, ratio, None, ">= 50% of torch.mm GFLOP/s",
               ratio >= 0.5,
               f"{n} neurons ({'all' if layer is None else f'layer {layer}'}), {d_model}x{d_vocab}: "
               f"{ours_rate:.1f} vs {mm_rate:.1f} GFLOP/s "
               f"(ratio = ours/mm rate); the top and bottom {k} of each row alone take "
               f"{t_topk * 1e3:.1f} ms against the matmul's {t_mm * 1e3:.1f} ms; "
               f"peak memory +{peak_mib:.0f} MiB")


def prompt_set_row(name: str = "ioi", granularity: str = "head_out"):
    """Activation patching over a whole shipped set (the pairs of one token length patched
    together, up to 64 per engine) against looping `compute()` over its rows."""
    return set_kind_row("activation_patching", name, repeats=3, label=f" {granularity}",
                        how="patched together (up to 64 per engine)", granularity=granularity)


# what a batched set run is held to, per kind: a per-example table and its value column
SET_TABLES = {"activation_patching": ("effects", "raw"), "attribution_patching": ("attributions", "atp"),
              "dla": ("contributions", "value"), "logit_lens": ("targets", "prob"),
              "features": ("errors", "error_norm")}  # features: its set run also pools set_latents


def set_kind_row(kind: str, name: str = "ioi", repeats: int = 1, label: str | None = None,
                 how: str = "run together", **fields):
    """A kind's run over a whole shipped set (rows of one token length share passes) against
    looping `compute()` over its rows (each a single-prompt spec, uncached), both with the
    embedded model loaded; max_diff is the largest difference of the set's per-example
    values from the looped runs'."""
    from analyses.core import datasets as ds

    rows = ds.shipped(name).rows
    spec = AnalysisSpec(kind=kind, dataset=name, **fields)
    table, column = SET_TABLES[kind]
    t_set, result = timed(lambda: compute(spec, cache=False), repeats=repeats)  # its warm-up loads the model
    singles = [spec.for_row(r) for r in rows]
    t_loop, looped = timed(lambda: [compute(s, cache=False) for s in singles], repeats=1, warmup=0)
    mine = result.tables[table].groupby("example")[column].apply(list)
    diff = max(float(np.nanmax(np.abs(np.array(mine[i]) - looped[i].tables[table][column].to_numpy())))
               for i in range(len(rows)) if i in mine.index)
    ratio = t_loop / t_set
    lengths = result.tables["examples"]["n_tokens"].nunique()
    what = label if label is not None else f", {kind}"
    return row(f"prompt set: {name} ({len(rows)} rows){what} vs looping compute(), embedded",
               t_set, t_loop, ratio, diff, ">= 3x", ratio >= 3,
               f"{result.meta['n_examples']} examples run, {result.meta['n_skipped']} skipped; the rows "
               f"of each of {lengths} token lengths {how}")


def ablation_sweep_row(name: str = "ioi"):
    """Every head and MLP knocked out over a whole shipped set, as one analysis, against the
    same set's head patching (activation_patching granularity=head_out), both uncached with
    the embedded model loaded. The issue's target: at most 3x the patching's time."""
    sweep = AnalysisSpec(kind="ablation_sweep", dataset=name)
    patching = AnalysisSpec(kind="activation_patching", dataset=name, granularity="head_out")
    t_sweep, result = timed(lambda: compute(sweep, cache=False))  # its warm-up loads the model
    t_patch, _ = timed(lambda: compute(patching, cache=False))
    ratio = t_sweep / t_patch
    deltas = result.tables["effects_summary"].query("quantity == 'delta'").set_index("component")
    l0h0 = deltas.loc["L0H0"]
    cells = len(deltas) - 1
    return row(f"ablation sweep: {name} set, every head and MLP vs head patching, embedded", t_sweep, t_patch,
               ratio, None, "<= 3x", ratio <= 3,
               f"{cells} components × {result.meta['n_examples']} examples; L0H0's change "
               f"{l0h0['mean']:.2f} [{l0h0['ci_low']:.2f}, {l0h0['ci_high']:.2f}]")


def forward_backward(bridge, tokens, metric) -> float:
    """Seconds of one forward and one backward pass of `metric` (a plain training step's cost)."""
    def step():
        with torch.enable_grad():
            logits = bridge(tokens)
            value = metric(logits).sum()
            torch.autograd.grad(value, [p for p in bridge.parameters() if p.requires_grad][:1])
    return timed(step)[0]


def circuit_rows(label, model, ref, pair):
    """The circuit kind's costs: EAP and EAP-IG edge scores in forward(-and-backward)
    equivalents, ours against TransformerLens's edge `attribution_patch` (scores compared),
    one faithfulness point, and RelP's pass against AtP's."""
    from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

    from analyses.kinds.circuits import activations, runs, scores
    from analyses.kinds.circuits.graph import edge_hooks, graph_of
    from analyses.kinds.patching.engine import logit_diff, prompt_pair
    from analyses.kinds.relp import relp_hooks

    bridge = model.bridge
    tl_pair = prompt_pair(bridge, AnalysisSpec(kind="circuit", model=ref, **pair))
    metric = lambda logits: logit_diff(logits, tl_pair.answer, tl_pair.wrong)  # noqa: E731
    graph = graph_of(bridge)
    t_fwd = timed(lambda: bridge(tl_pair.corrupted))[0]
    t_fb = forward_backward(bridge, tl_pair.corrupted, metric)
    steps = 5
    with edge_hooks(bridge):
        t_eap, ours = timed(lambda: scores.eap(bridge, graph, tl_pair.clean, tl_pair.corrupted, metric))
        ig_metric = lambda logits: logit_diff(logits, tl_pair.answer, tl_pair.wrong)  # noqa: E731
        t_ig, _ = timed(lambda: scores.eap_ig(bridge, graph, tl_pair.clean, tl_pair.corrupted, ig_metric,
                                              steps))
        target = activations.writer_outputs(bridge, graph, tl_pair.corrupted)
        keep = torch.zeros((1, *graph.valid.shape), dtype=torch.bool)
        t_point, _ = timed(lambda: runs.mixed_run(bridge, graph, tl_pair.clean, target, ~keep, metric))
    tl_metric = lambda logits: logits[0, -1, tl_pair.answer] - logits[0, -1, tl_pair.wrong]  # noqa: E731
    t_tl, reference = timed(lambda: attribution_patch(bridge, tl_pair.clean, tl_pair.corrupted, tl_metric,
                                                      EdgeAttributionConfig(granularity="edge")))
    summed: dict = {}
    for (writer, reader), value in reference.edge_scores.items():
        w = 0 if writer.kind == "embed" else (graph.head_writer(writer.layer, writer.head)
                                              if writer.kind == "attn_head_out" else graph.mlp_writer(writer.layer))
        r = (graph.logits_reader if reader.kind == "logits" else graph.mlp_reader(reader.layer)
             if reader.kind == "mlp_in" else graph.qkv_reader(reader.layer, reader.kind[0], reader.head))
        summed[(w, r)] = summed.get((w, r), 0.0) + value
    diff = max(abs(v - float(ours[0, w, r])) for (w, r), v in summed.items())
    hooks = [f"blocks.{layer}.attn.hook_z" for layer in range(int(bridge.cfg.n_layers))]
    t_atp = timed(lambda: attribution_patching.gradients(bridge, tl_pair, hooks, False, metric))[0]
    t_relp = timed(lambda: attribution_patching.gradients(bridge, tl_pair, hooks, False, metric,
                                                          extra_hooks=relp_hooks(bridge)))[0]
    n = f"{int(tl_pair.clean.shape[1])} tokens, {graph.n_edges} edges"
    return [
        row(f"circuit: EAP edge scores / forward, {label}", t_eap, t_fwd, t_eap / t_fwd, None,
            "<= 4 forwards", t_eap / t_fwd <= 4,
            f"{n}; a forward on the clean prompt, a forward and backward on the corrupted"),
        row(f"circuit: EAP vs TransformerLens edge attribution_patch, {label}", t_eap, t_tl, t_tl / t_eap,
            diff, "abs diff <= 1e-5", diff <= 1e-5, "ratio = reference / ours; its position-resolved "
            "scores summed over positions"),
        row(f"circuit: EAP-IG ({steps} steps) / forward and backward, {label}", t_ig, t_fb, t_ig / t_fb, None,
            f"<= {steps + 2} forward-and-backward pairs", t_ig / t_fb <= steps + 2,
            f"{n}; the {steps} path points in one batch"),
        row(f"circuit: one faithfulness point / forward, {label}", t_point, t_fwd, t_point / t_fwd, None,
            "report", None, "the circuit run at one k (every edge swapped: the heaviest case)"),
        row(f"RelP pass vs AtP pass, {label}", t_relp, t_atp, t_relp / t_atp, None, "<= 1.2x",
            t_relp / t_atp <= 1.2, "one forward and backward each; RelP's rules as forward hooks"),
    ]


def steering_row(label, model, ref, prompt, n_new: int = 32, rounds: int = 7):
    """Generation under a steering vector (coefficient 1 at the middle layer, every position,
    the KV cache on) against Hugging Face's plain greedy `generate` of as many tokens, on the
    same model, in the same run."""
    from analyses.kinds import steering
    from analyses.kinds.interventions import generation, vectors
    from analyses.kinds.tokens import prompt_tokens

    bridge = model.bridge
    layer = int(bridge.cfg.n_layers) // 2
    spec = AnalysisSpec(kind="steering", model=ref, prompt=prompt, positive="I love it",
                        negative="I hate it", layer=str(layer), coeff="1")
    plan = steering.prepare(bridge, spec)
    tokens = prompt_tokens(bridge, prompt)  # [1, pos]
    hooks = steering.hooks_for(plan, steering.Cell(layer, 1.0, False),
                               vectors.where_added("all", int(tokens.shape[1])))
    hf = bridge.original_model

    def ours():
        return generation.generate(bridge, tokens, hooks, n_new)

    def plain():  # exactly as many tokens (no early end of text)
        with torch.no_grad():
            return hf.generate(tokens, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                               use_cache=True, pad_token_id=0)
    t_ours, t_hf, out, _ = timed_alternating(ours, plain, rounds)
    n = len(out.tokens)  # fewer than n_new only where the steered text ended
    ratio = t_ours / t_hf
    return row(f"steering: generation under a vector / plain greedy generate, {label}", t_ours, t_hf,
               ratio, None, "<= 1.2x", ratio <= 1.2,
               f"{int(tokens.shape[1])}-token prompt, {n} new tokens, median of {rounds} turns each; "
               "reference = Hugging Face's "
               "greedy generate with its cache; ours: TransformerLens's generate under the hooks, "
               "log-probabilities from its step logits")


def attention_row(label, model, ref, prompt):
    """Every head's pattern as a table, against one forward with cache (which holds them)."""
    from analyses.kinds import attention

    bridge = model.bridge
    spec = AnalysisSpec(kind="attention", model=ref, prompt=prompt)
    t_ours, result = timed(lambda: attention.run(model, spec))
    tokens = bridge.to_tokens(prompt)
    t_fwd = forward_with_cache(bridge, tokens)
    return row(f"attention patterns (every head) / forward, {label}", t_ours, t_fwd, t_ours / t_fwd,
               None, "report", None, f"{int(tokens.shape[1])} tokens, "
               f"{len(result.tables['patterns'])} rows; reference = one run_with_cache")


def knockout_row(label, model, ref, prompt, subject):
    """An attention-knockout sweep (every window start × subject, other and last, at the
    default window) against one plain forward on the same prompt. The sweep runs its
    knockouts as one batch (up to 32 a forward), so it should cost a few forwards, not one
    per knockout; the note says how many knockouts ran."""
    from analyses.kinds import knockout as attention_knockout

    bridge = model.bridge
    spec = AnalysisSpec(kind="knockout", model=ref, prompt=prompt, subject=subject)
    tokens = bridge.to_tokens(prompt)

    def forward():
        with torch.no_grad():
            return bridge(tokens)

    t_ours, t_fwd, result, _ = timed_alternating(lambda: attention_knockout.run(model, spec), forward, rounds=5)
    n = len(result.tables["knockout"])
    ratio = t_ours / t_fwd
    return row(f"attention knockout sweep / forward, {label}", t_ours, t_fwd, ratio, None,
               f"< {n} (one forward a knockout)", ratio < n,
               f"{int(tokens.shape[1])} tokens, {n} knockouts (window {result.meta['window']}, "
               f"{', '.join(result.meta['sources'])}) in one batched run; reference = one forward")
