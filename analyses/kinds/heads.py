"""Attention-head detectors: score every head for a known attention behaviour.

One engine, small plug-ins (`DETECTORS`), each reading one kind of generated
input (`PROBES`) built from token ids — never from re-tokenized text, so random
tokens survive exactly:

Two columns per head: `score`, on the scale the literature and the model card use, and
`tl_score`, TransformerLens's `head_detector` value for the same pattern (held equal to
`detect_head` in the tests; NaN for retrieval, which TransformerLens lacks).

- previous_token, duplicate_token, induction (Olsson et al. 2022, "In-context
  learning and induction heads"). `tl_score` is `detect_head`'s score — the
  share of a head's attention that falls where the behaviour's detection
  pattern says it should (`error_measure="mul"`), with `exclude_bos=True` — the
  mean over sequences, as `detect_head` gives for a list of prompts. Read on
  [BOS, r, r] with r random tokens (previous_token: on the user's prompt, else on
  [BOS, r]). For previous- and duplicate-token heads `score` is that same value.
  For induction it averages over every query position, first copy included,
  where an induction head has nothing to attend to, so a perfect head tops out
  near 0.5; `score` is instead the standard induction score
  (`embedded.measures.induction_scores`, the one the model card reports): the mean
  attention from each second-copy token to the token after its first occurrence,
  1 for a perfect induction head.
- retrieval (Wu et al. 2024, "Retrieval Head Mechanistically Explains
  Long-Context Factuality"): a needle the model can copy — a statement "The <key> code:
  w1 w2 w3." right after BOS, in the embedded model's own retrieval format
  (`embedded.measures.needle_row`) — then stories from `embedded.corpus` as the
  haystack, and the question "The <key> code:" at the end, so the model copies the code.
  Teacher-forced, which is greedy decoding for as long as the copy is right: each code
  token counts as copied while every prediction up to it is correct. A head scores a hit
  on a copied token when its most-attended key is that same token inside the planted
  statement; score = hits / tokens copied: `embedded.measures.retrieval_scores`, the
  model card's definition. A score resting on fewer than `MIN_COPY_EVENTS` copied tokens
  says nothing (one copied token makes a head 1.00), so then no head is scored (NaN) and
  the result says how little was copied.

Every score row carries `events`: how many observations it averages — query positions
over the generated sequences for the pattern detectors, copied tokens for retrieval.

With `ablate=1`, the top k heads of each detector (`ablation_k`, or `top_k`) are
mean-ablated — their `hook_z` replaced, after BOS, by its mean over the behaviour's own
inputs — and so are `RANDOM_SETS` seeded sets of k random other heads, and the change in the
detector's behaviour (`BEHAVIOURS`) is reported for each: is the behaviour carried by the
top heads, or would any k heads do as much?
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.head_detector import (
    get_duplicate_token_head_detection_pattern,
    get_induction_head_detection_pattern,
    get_previous_token_head_detection_pattern,
)

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.embedded import measures
from analyses.kinds.tokens import device_of, prompt_tokens, text_tokens

SCORE_COLUMNS = CATALOGUE["heads"].tables["scores"]
ABLATION_COLUMNS = CATALOGUE["heads"].tables["ablation"]

N_SEQUENCES = 8  # generated sequences per pattern probe; a score is their mean
COPY_LENGTH = 40  # random tokens per copy in [BOS, r, r] (less when the context is short)
NEEDLE_SEQUENCES = 32  # needle prompts: 3 code tokens each, so up to 96 copy events
HAYSTACK_LENGTH = 256  # tokens of a needle prompt (the model's context, if shorter)
MIN_COPY_EVENTS = 20  # fewer copied tokens than this: no retrieval score is shown
RANDOM_SETS = 5  # random head sets the top heads' ablation is compared with
LOGIT_BUDGET = 1 << 28  # bytes of logits per forward chunk (256 MiB): bounds memory on big vocabularies


# --------------------------------------------------------------------------- probes

@dataclass(frozen=True)
class Probe:
    """Token sequences a detector reads; every row has the same length."""

    tokens: Int[Tensor, "batch pos"]
    copy_length: int = 0  # repeated: len(r) in [BOS, r, r]
    needle: measures.NeedleBatch | None = None  # needle: where each row's code was planted and is asked for

    def rows(self, start: int, stop: int) -> Probe:
        needle = self.needle.rows(start, stop) if self.needle is not None else None
        return replace(self, tokens=self.tokens[start:stop], needle=needle)

    def to(self, device) -> Probe:
        needle = self.needle.to(device) if self.needle is not None else None
        return replace(self, tokens=self.tokens.to(device), needle=needle)


def sample_vocab(bridge) -> np.ndarray:
    """Token ids random sequences are drawn from: the tokenizer's, minus special tokens."""
    size = min(bridge.cfg.d_vocab, len(bridge.tokenizer))
    special = set(bridge.tokenizer.all_special_ids or ())
    return np.array([i for i in range(size) if i not in special])


def _random_rows(rng: np.random.Generator, vocab: np.ndarray, n: int, length: int) -> np.ndarray:
    """[n, length] random tokens, distinct within a row when the vocabulary allows."""
    distinct = len(vocab) >= length
    return np.stack([rng.choice(vocab, size=length, replace=not distinct) for _ in range(n)])


def _with_bos(bridge, rows: np.ndarray) -> Int[Tensor, "batch pos"]:
    bos = np.full((len(rows), 1), bos_id(bridge))
    return torch.tensor(np.concatenate([bos, rows], axis=1), dtype=torch.long)


def copy_length(bridge) -> int:
    """len(r) in [BOS, r, r]: COPY_LENGTH, or what fits strictly inside the context
    (TransformerLens's `detect_head` wants fewer than n_ctx tokens)."""
    return max(1, min(COPY_LENGTH, (bridge.cfg.n_ctx - 2) // 2))


def repeated_probe(bridge, rng: np.random.Generator, prompt: str | None = None) -> Probe:
    """[BOS, r, r]: induction and duplicate-token heads show themselves on the second copy."""
    length = copy_length(bridge)
    r = _random_rows(rng, sample_vocab(bridge), N_SEQUENCES, length)
    return Probe(_with_bos(bridge, np.concatenate([r, r], axis=1)), copy_length=length)


def plain_probe(bridge, rng: np.random.Generator, prompt: str | None = None) -> Probe:
    """The user's prompt (BOS first), else [BOS, r] with no repeats to distract."""
    if prompt is not None:
        return Probe(prompt_tokens(bridge, prompt))
    length = 2 * copy_length(bridge)
    return Probe(_with_bos(bridge, _random_rows(rng, sample_vocab(bridge), N_SEQUENCES, length)))


def bos_id(bridge) -> int:
    tokenizer = bridge.tokenizer  # some tokenizers (GPT-NeoX) name only an end-of-text token
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def needle_probe(bridge, rng: np.random.Generator, prompt: str | None = None) -> Probe:
    """NEEDLE_SEQUENCES needle prompts of HAYSTACK_LENGTH tokens (the context, if shorter)
    in the model's own tokenizer: [BOS, "The <key> code: w1 w2 w3.", stories…, "The <key>
    code:", w1 w2 w3]."""
    total = min(HAYSTACK_LENGTH, bridge.cfg.n_ctx)

    def encode(text: str) -> list[int]:
        return text_tokens(bridge, text, prepend_bos=False)[0].tolist()

    try:
        rows = [measures.needle_row(encode, bos_id(bridge), rng, total=total) for _ in range(NEEDLE_SEQUENCES)]
    except ValueError:
        raise SpecError("detector", f"retrieval needs room for a needle, a haystack and its question; "
                                    f"this model's context holds only {bridge.cfg.n_ctx} tokens") from None
    batch = measures.NeedleBatch.of(rows)
    return Probe(batch.tokens, needle=batch)


# name -> builder(bridge, rng, prompt); the position in this list seeds the probe's own
# random stream, so a probe's tokens do not depend on which detectors were asked for
PROBES: dict[str, Callable[..., Probe]] = {
    "plain": plain_probe,
    "repeated": repeated_probe,
    "needle": needle_probe,
}


def build_probe(name: str, bridge, seed: int, prompt: str | None = None) -> Probe:
    rng = np.random.default_rng([seed, list(PROBES).index(name)])
    return PROBES[name](bridge, rng, prompt).to(device_of(bridge))


# --------------------------------------------------------------------------- behaviours

@dataclass(frozen=True)
class Behaviour:
    """What mean-ablating a detector's heads should hurt, measured per sequence."""

    metric: str
    probe: str
    higher_is_better: bool
    measure: Callable[[Probe, Tensor], Tensor]  # (probe, logits [batch pos d_vocab]) -> [batch]


def second_copy_loss(probe: Probe, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
    """[batch] mean loss (nats) on the second copy's tokens after its first, the ones an
    induction circuit can predict."""
    length = probe.copy_length
    logp = logits[:, length + 1:-1].float().log_softmax(-1)  # predicts positions length+2 ..
    target = probe.tokens[:, length + 2:]
    return -logp.gather(-1, target[..., None])[..., 0].mean(-1)


def needle_recall(probe: Probe, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
    """[batch] 1 where the whole code is recalled top-1 (teacher forced): the model card's
    needle recall."""
    return probe.needle.recall(logits)


BEHAVIOURS: dict[str, Behaviour] = {
    "second_copy_loss": Behaviour("second_copy_loss", "repeated", False, second_copy_loss),
    "needle_recall": Behaviour("needle_recall", "needle", True, needle_recall),
}


# --------------------------------------------------------------------------- detectors

COLUMNS = ("score", "tl_score")  # what a detector's score() gives per head, in this order


@dataclass(frozen=True)
class Scored:
    """A detector's scores on a chunk of sequences, and what pools them over sequences."""

    values: Float[Tensor, "layer batch head 2"]  # COLUMNS per sequence
    weights: Float[Tensor, "batch"]  # noqa: F821 - each sequence's weight in the pooled mean
    events: Float[Tensor, "batch"]  # noqa: F821 - observations each sequence's score averages


class PatternDetector:
    """TransformerLens's `detect_head` score ("mul", exclude_bos) for a detection pattern,
    vectorised over heads and sequences: per sequence, the head's attention on the
    pattern's (query, key) cells over its attention to every key but BOS. With `standard`,
    `score` is that function of the pattern instead (`tl_score` stays TransformerLens's)."""

    def __init__(self, summary: str, probe: str, behaviour: str,
                 detection_pattern: Callable[[Tensor], Tensor],
                 standard: Callable[[Probe, Tensor], Tensor] | None = None):
        self.summary, self.probe, self.behaviour = summary, probe, behaviour
        self.detection_pattern = detection_pattern  # tokens [1, pos] -> [pos, pos] of 0/1
        self.standard = standard  # (probe, pattern [batch head q k]) -> [batch head]

    def prepare(self, probe: Probe) -> Float[Tensor, "batch pos pos"]:
        rows = probe.tokens.cpu()
        return torch.stack([self.detection_pattern(rows[i:i + 1]) for i in range(len(rows))]
                           ).to(probe.tokens.device)

    def layer_stat(self, probe: Probe, target: Tensor,
                   pattern: Float[Tensor, "batch head pos pos"]) -> Float[Tensor, "batch head 3"]:
        attention = pattern.float()[..., 1:]  # keys after BOS
        matched = torch.einsum("bhqk,bqk->bh", attention, target[..., 1:].float())
        total = attention.sum((-1, -2))
        standard = self.standard(probe, pattern) if self.standard else torch.full_like(total, torch.nan)
        return torch.stack([matched, total, standard], dim=-1)

    def score(self, probe: Probe, target: Tensor, stats: Float[Tensor, "layer batch head 3"],
              logits: Tensor) -> Scored:
        matched, total = stats[..., 0], stats[..., 1]
        tl = torch.where(total > 0, matched / total.clamp_min(1e-30), 0.0)
        score = stats[..., 2] if self.standard else tl
        ones = torch.ones(stats.shape[1], device=stats.device)
        # the queries each sequence's score averages: the second copy, or every one after BOS
        queries = probe.copy_length if self.standard else probe.tokens.shape[1] - 1
        return Scored(torch.stack([score, tl], dim=-1), ones, ones * queries)


def induction_score(probe: Probe, pattern: Float[Tensor, "batch head pos pos"]) -> Float[Tensor, "batch head"]:
    """The model card's induction score of each head on each [BOS, r, r] sequence."""
    return measures.induction_scores(pattern, probe.copy_length)


class RetrievalDetector:
    """Wu et al. 2024: on each copied code token, is the head's top key that token in the needle?"""

    summary = "copies from a needle planted far back in the context (Wu et al. 2024)"
    probe = "needle"
    behaviour = "needle_recall"
    min_events = MIN_COPY_EVENTS

    def prepare(self, probe: Probe) -> None:
        return None

    def too_few(self, events: int, n_sequences: int) -> str:
        tokens = "token" if events == 1 else "tokens"
        return (f"the model copied {events} code {tokens} over {n_sequences} needle prompts, fewer than "
                f"{MIN_COPY_EVENTS}: too few copy events to score retrieval heads (one copied token "
                f"would make a head 1.00)")

    def layer_stat(self, probe: Probe, _, pattern: Float[Tensor, "batch head pos pos"]
                   ) -> Int[Tensor, "batch head code"]:
        return measures.most_attended_keys(pattern, probe.needle.asked)  # from each asking query

    def score(self, probe: Probe, _, stats: Int[Tensor, "layer batch head code"], logits: Tensor) -> Scored:
        copied = probe.needle.copied(logits)  # [batch, code]
        scores, n_copied = measures.retrieval_scores(stats, probe.needle.planted.to(stats.device), copied)
        no_tl = torch.full_like(scores, torch.nan)  # TransformerLens has no retrieval detector
        # weights = tokens copied: the pooled score is all hits over all tokens copied
        return Scored(torch.stack([scores, no_tl], dim=-1), n_copied, n_copied)


# The one visible list of detectors: name -> plug-in.
DETECTORS = {
    "previous_token": PatternDetector("attends to the previous token", "plain",
                                      "second_copy_loss", get_previous_token_head_detection_pattern),
    "duplicate_token": PatternDetector("attends to earlier copies of the current token",
                                       "repeated", "second_copy_loss",
                                       get_duplicate_token_head_detection_pattern),
    "induction": PatternDetector("attends to the token after an earlier copy of the current one",
                                 "repeated", "second_copy_loss", get_induction_head_detection_pattern,
                                 standard=induction_score),
    "retrieval": RetrievalDetector(),
}


# --------------------------------------------------------------------------- the engine

def _chunk_rows(bridge, probe: Probe) -> int:
    """Rows per forward pass so that one chunk's logits stay within LOGIT_BUDGET."""
    per_row = probe.tokens.shape[1] * bridge.cfg.d_vocab * 4
    return max(1, LOGIT_BUDGET // per_row)


def _pattern_hook(layer: int, store: dict, detector, probe: Probe, prepared):
    def hook(pattern, hook):  # hook.name is canonical, not ours: the layer comes from here
        store[layer] = detector.layer_stat(probe, prepared, pattern)
    return hook


@dataclass(frozen=True)
class Detected:
    """One detector's result: scores pooled over sequences, and how many events they rest on."""

    scores: Float[Tensor, "layer head 2"]  # COLUMNS; NaN when too few events to score
    events: int
    refused: str | None = None  # why no head is scored, when none is


@torch.no_grad()
def detect(bridge, names: list[str], probe: Probe, progress: Progress = silent) -> dict[str, Detected]:
    """Scores [layer, head, COLUMNS] (score, tl_score) of detectors `names`, which all read
    `probe`: each sequence's score weighted as its detector says, pooled over sequences."""
    detectors = [DETECTORS[n] for n in names]
    n_layers = bridge.cfg.n_layers
    totals: dict[str, list[Scored]] = {n: [] for n in names}  # per chunk of sequences
    step = _chunk_rows(bridge, probe)
    for start in range(0, len(probe.tokens), step):
        part = probe.rows(start, start + step)
        prepared = [d.prepare(part) for d in detectors]
        stats: list[dict[int, Tensor]] = [{} for _ in detectors]
        hooks = [(f"blocks.{layer}.attn.hook_pattern", _pattern_hook(layer, store, d, part, t))
                 for layer in range(n_layers) for d, t, store in zip(detectors, prepared, stats)]
        logits = bridge.run_with_hooks(part.tokens, fwd_hooks=hooks)
        for name, detector, target, layer_stats in zip(names, detectors, prepared, stats):
            stacked = torch.stack([layer_stats[layer] for layer in range(n_layers)])
            totals[name].append(detector.score(part, target, stacked, logits))
        progress(min(1.0, (start + step) / len(probe.tokens)), f"{', '.join(names)}: rows {start}+")
    return {name: pool(DETECTORS[name], parts, len(probe.tokens)) for name, parts in totals.items()}


def pool(detector, parts: list[Scored], n_sequences: int) -> Detected:
    """The weighted mean over every chunk's sequences; NaN (and the reason) when the scores
    rest on fewer events than the detector needs."""
    weighted = sum((p.values * p.weights[None, :, None, None]).sum(1) for p in parts)  # [layer, head, 2]
    weight = sum(p.weights.sum() for p in parts)
    events = int(sum(p.events.sum() for p in parts))
    scores = (weighted / weight if weight > 0 else weighted * 0).float().cpu()
    needed = getattr(detector, "min_events", 1)
    if events >= needed:
        return Detected(scores, events)
    return Detected(torch.full_like(scores, torch.nan), events, detector.too_few(events, n_sequences))


# --------------------------------------------------------------------------- ablation

def ablation_k(n_layers: int, n_heads: int) -> int:
    """Heads ablated per detector unless `top_k` says: 4, or 2% of all heads in big models
    (GPT-2 medium: 8), never more than half of them (the random sets draw from the rest).
    Four, because the behaviours are spread: the embedded model's needle recall survives
    its top two retrieval heads ablated (96%) but not its top four (17%)."""
    total = n_layers * n_heads
    return max(1, min(max(4, round(0.02 * total)), total // 2))


def heads_to_ablate(spec: AnalysisSpec, n_layers: int, n_heads: int) -> int:
    """k: the spec's `top_k`, refused when the random sets would have too few heads to draw from."""
    total = n_layers * n_heads
    if spec.top_k is None:
        return ablation_k(n_layers, n_heads)
    if spec.top_k > total // 2:
        raise SpecError("top_k", f"{spec.top_k} heads is more than half of this model's {total}: "
                                 f"the random sets of as many other heads need the rest "
                                 f"(at most {total // 2})")
    return spec.top_k


@torch.no_grad()
def mean_z(bridge, probe: Probe) -> dict[int, Float[Tensor, "head d_head"]]:
    """Each layer's `hook_z` averaged over the probe's sequences and positions after BOS."""
    sums: dict[int, Tensor] = {}

    def keep(layer):
        def hook(z, hook):
            sums[layer] = sums.get(layer, 0) + z[:, 1:].float().sum((0, 1))
        return hook

    step = _chunk_rows(bridge, probe)
    for start in range(0, len(probe.tokens), step):
        hooks = [(f"blocks.{layer}.attn.hook_z", keep(layer)) for layer in range(bridge.cfg.n_layers)]
        bridge.run_with_hooks(probe.rows(start, start + step).tokens, fwd_hooks=hooks)
    count = probe.tokens.shape[0] * (probe.tokens.shape[1] - 1)
    return {layer: s / count for layer, s in sums.items()}


def ablation_hooks(heads: list[tuple[int, int]], means: dict[int, Tensor]) -> list[tuple]:
    """Forward hooks that set each (layer, head)'s `hook_z` to its mean, after BOS."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def ablate(layer, chosen):
        def hook(z, hook):  # [batch, pos, head, d_head]
            z = z.clone()
            z[:, 1:, chosen] = means[layer][chosen].to(z.dtype)
            return z
        return hook

    return [(f"blocks.{layer}.attn.hook_z", ablate(layer, chosen)) for layer, chosen in by_layer.items()]


@torch.no_grad()
def measure(bridge, behaviour: Behaviour, probe: Probe, heads: list[tuple[int, int]] = (),
            means: dict[int, Tensor] | None = None) -> float:
    """The behaviour's mean over the probe, with `heads` mean-ablated."""
    hooks = ablation_hooks(heads, means) if heads else []
    values = []
    step = _chunk_rows(bridge, probe)
    for start in range(0, len(probe.tokens), step):
        part = probe.rows(start, start + step)
        logits = bridge.run_with_hooks(part.tokens, fwd_hooks=hooks)
        values.append(behaviour.measure(part, logits))
    return torch.cat(values).float().mean().item()


def head_label(heads: list[tuple[int, int]]) -> str:
    return ",".join(f"L{layer}H{head}" for layer, head in heads)


def ablation_rows(bridge, names: list[str], found: dict[str, Detected], probes: dict[str, Probe],
                  k: int, seed: int, progress: Progress = silent) -> list[dict]:
    """Per scored detector: its behaviour with its top k heads ablated, then with each of
    RANDOM_SETS sets of k random other heads."""
    means: dict[str, dict] = {}  # behaviour probe -> mean z; shared by detectors of one behaviour
    baselines: dict[str, float] = {}
    scored = [n for n in names if found[n].refused is None]
    rows = []
    for i, name in enumerate(scored):
        progress(i / len(scored), f"ablating the top {name} heads and {RANDOM_SETS} random sets")
        behaviour = BEHAVIOURS[DETECTORS[name].behaviour]
        probe = probes[behaviour.probe]
        if behaviour.metric not in baselines:
            means[behaviour.probe] = means.get(behaviour.probe) or mean_z(bridge, probe)
            baselines[behaviour.metric] = measure(bridge, behaviour, probe)
        baseline = baselines[behaviour.metric]
        top, random_sets = ablated_heads(name, found[name].scores[..., COLUMNS.index("score")], k, seed)
        for label, heads in [("top", top)] + [("random", r) for r in random_sets]:
            after = measure(bridge, behaviour, probe, heads, means[behaviour.probe])
            drop = baseline - after if behaviour.higher_is_better else after - baseline
            rows.append(dict(detector=name, heads=head_label(heads), ablated=label,
                             metric=behaviour.metric, baseline=baseline, after=after, drop=drop))
    return rows


def ablated_heads(name: str, scores: Float[Tensor, "layer head"], k: int, seed: int
                  ) -> tuple[list[tuple[int, int]], list[list[tuple[int, int]]]]:
    """The detector's top k heads (ties: the earlier head first) and RANDOM_SETS seeded sets
    of k other heads."""
    n_heads = scores.shape[1]
    order = torch.argsort(scores.flatten(), descending=True, stable=True).tolist()
    rng = np.random.default_rng([seed, 100 + list(DETECTORS).index(name)])
    others = order[k:]
    random_sets = [sorted(int(i) for i in rng.choice(others, size=k, replace=False))
                   for _ in range(RANDOM_SETS)]
    return ([divmod(i, n_heads) for i in order[:k]],
            [[divmod(i, n_heads) for i in chosen] for chosen in random_sets])


# --------------------------------------------------------------------------- the analysis

def _within(progress: Progress, start: float, width: float) -> Progress:
    """A progress callback for one stage, spanning [start, start + width] of the whole."""
    return lambda fraction, message: progress(start + width * fraction, message)


def selected(spec: AnalysisSpec) -> list[str]:
    """The spec's detectors in the order asked, without repeats (all when none is given)."""
    names = [n.strip() for n in (spec.detector or ",".join(DETECTORS)).split(",")]
    return list(dict.fromkeys(n for n in names if n))


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec = spec.with_defaults()
    names = selected(spec)
    if not names:
        raise SpecError("detector", "names no detector")
    if spec.prompt is not None and "previous_token" not in names:
        raise SpecError("prompt", "only the previous_token detector reads a prompt; the others "
                                  "read generated token sequences")
    probe_names = list(dict.fromkeys(DETECTORS[n].probe for n in names))
    if spec.ablate:
        probe_names += [BEHAVIOURS[DETECTORS[n].behaviour].probe for n in names]
    k = heads_to_ablate(spec, bridge.cfg.n_layers, bridge.cfg.n_heads) if spec.ablate else None
    probes = {p: build_probe(p, bridge, spec.seed, spec.prompt) for p in dict.fromkeys(probe_names)}
    detecting = 1.0 if not spec.ablate else 0.5  # share of the progress bar; ablation gets the rest
    found: dict[str, Detected] = {}
    for probe_name, probe in probes.items():
        group = [n for n in names if DETECTORS[n].probe == probe_name]
        if group:
            stage = _within(progress, detecting * len(found) / len(names),
                            detecting * len(group) / len(names))
            found.update(detect(bridge, group, probe, stage))
    tables = {"scores": score_table(names, found)}
    if spec.ablate:
        rows = ablation_rows(bridge, names, found, probes, k, spec.seed,
                             _within(progress, detecting, 1 - detecting))
        tables["ablation"] = pd.DataFrame(rows, columns=ABLATION_COLUMNS)
    progress(1.0, "done")
    meta = {"probe_tokens": {p: list(probe.tokens.shape) for p, probe in probes.items()},
            "exclude_bos": True, "events": {n: d.events for n, d in found.items()}}
    refused = {n: d.refused for n, d in found.items() if d.refused}
    if refused:
        meta["not_scored"] = refused
    if "retrieval" in names:
        meta["needle_recall"] = measure(bridge, BEHAVIOURS["needle_recall"], probes["needle"])
    if spec.ablate:
        meta["ablation_k"] = k
        meta["random_sets"] = RANDOM_SETS
    return Result(spec=spec, tables=tables, meta=meta)


def score_table(names: list[str], found: dict[str, Detected]) -> pd.DataFrame:
    """One row per (detector, layer, head): COLUMNS, and the events the scores rest on."""
    frames = []
    for name in names:
        values = found[name].scores.numpy().astype(float)
        layer, head = np.meshgrid(np.arange(values.shape[0]), np.arange(values.shape[1]), indexing="ij")
        frames.append(pd.DataFrame({"detector": name, "layer": layer.ravel(), "head": head.ravel(),
                                    **{column: values[..., i].ravel() for i, column in enumerate(COLUMNS)},
                                    "events": found[name].events}))
    return pd.concat(frames, ignore_index=True)
