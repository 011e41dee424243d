"""Measure the embedded model and write its MODEL_CARD.md: every figure in the
card comes from this code (`python -m analyses.embedded.card`), through the
same TransformerBridge path the app and the tests use."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch

from analyses.embedded import lexicon as lx
from analyses.embedded import measures as bh
from analyses.runtime import models

SEED = 20_241  # held-out evaluation seed, apart from training's and the trainer's checks


@dataclass(frozen=True)
class Measurements:
    induction: bh.InductionReport
    needle: bh.NeedleReport
    ioi: bh.AnswerReport
    ioi_train: bh.AnswerReport
    facts: bh.AnswerReport
    text_loss: float
    sample: str
    ioi_heads: np.ndarray  # [layer, head] mean share of the IOI logit difference restored
    knockouts: dict[str, float]  # whole-code needle recall with the named heads mean-ablated


def ioi_head_effects(model, rng: np.random.Generator, n: int = 16) -> np.ndarray:
    """[layer, head]: activation patching of each head's output at the last position (where
    a name must be moved to be predicted), averaged over `n` held-out IOI prompts against
    their corruption with the second subject replaced by the indirect object (which makes
    the subject the answer). All positions would credit any head that carries the changed
    token itself."""
    from analyses.core.spec import AnalysisSpec
    from analyses.embedded import corpus
    from analyses.kinds import activation_patching

    split = corpus.ioi_split()
    grids = []
    for _ in range(n):
        item = corpus.ioi_item(rng, split.test_pairs, split.test_templates)
        s2 = item.prompt.rfind(item.s)
        corrupted = item.prompt[:s2] + item.io + item.prompt[s2 + len(item.s):]
        spec = AnalysisSpec(kind="activation_patching", model="default",
                            granularity="head_out_by_pos",
                            clean=item.prompt, corrupted=corrupted, answer=" " + item.io,
                            wrong=" " + item.s)
        effects = activation_patching.run(model, spec).tables["effects"]
        effects = effects[effects["position"] == effects["position"].max()]
        grids.append(effects.pivot(index="layer", columns="head", values="value").to_numpy())
    return np.mean(grids, axis=0)


RANDOM_SETS = 5  # random head sets of each size the retrieval knockout is compared with


def retrieval_knockouts(model, scores: np.ndarray, rng: np.random.Generator, n: int = 100,
                        sizes: tuple[int, ...] = (2, 4)) -> dict[str, float]:
    """Whole-code needle recall (200 filler tokens) with the top retrieval heads by `scores`
    [layer, head] mean-ablated, k at a time, and with `RANDOM_SETS` random sets of k others:
    is the behaviour carried by a few heads, or spread over many?"""
    from analyses.kinds import heads

    bridge = model.bridge
    batch = bh.needle_batch(model.tokenizer, rng, n=n)
    means = heads.mean_z(bridge, heads.Probe(batch.tokens))
    order = [divmod(int(i), scores.shape[1]) for i in np.argsort(scores.ravel(), kind="stable")[::-1]]

    def recall(chosen: list[tuple[int, int]]) -> float:
        with torch.no_grad():
            logits = bridge.run_with_hooks(batch.tokens, fwd_hooks=heads.ablation_hooks(chosen, means))
        return batch.recall(logits).mean().item()

    found = {"none": recall([])}
    for k in sizes:
        top = order[:k]
        found[f"top {k} ({heads.head_label(top)})"] = recall(top)
        others = order[k:]
        random = [recall([others[i] for i in rng.choice(len(others), size=k, replace=False)])
                  for _ in range(RANDOM_SETS)]
        found[f"random {k}: lowest"] = min(random)
        found[f"random {k}: highest"] = max(random)
    return found


def measure(ref: str = "default") -> Measurements:
    model = models.load(ref)
    bridge, tokenizer = model.bridge, model.tokenizer
    forward = bh.bridge_forward(bridge)
    rng = np.random.default_rng(SEED)
    vocab = np.array([i for i in range(len(tokenizer)) if i != tokenizer.bos_token_id])
    with torch.no_grad():
        sample = bridge.generate("Once upon a time, there was a", max_new_tokens=30,
                                 do_sample=False, verbose=False)
    induction = bh.measure_induction(forward, tokenizer.bos_token_id, vocab, rng, n=64)
    needle = bh.measure_needle(forward, tokenizer, rng, n=200, filler_tokens=200)  # rng: in this order
    return Measurements(
        induction=induction,
        needle=needle,
        ioi=bh.measure_ioi(forward, tokenizer, rng, n=500, held_out=True),
        ioi_train=bh.measure_ioi(forward, tokenizer, rng, n=500, held_out=False),
        facts=bh.measure_facts(forward, tokenizer),
        text_loss=bh.measure_text_loss(forward, tokenizer, rng, n=64),
        sample=sample if isinstance(sample, str) else str(sample),
        ioi_heads=ioi_head_effects(model, rng),
        knockouts=retrieval_knockouts(model, needle.retrieval_scores, rng),
    )


def top_heads(scores: np.ndarray, k: int = 4) -> str:
    """'L1H2 0.83, L1H5 0.71' for the k best heads of a [layer, head] score grid."""
    order = np.argsort(scores.ravel())[::-1][:k]
    return ", ".join(f"L{i // scores.shape[1]}H{i % scores.shape[1]} {scores.ravel()[i]:.2f}" for i in order)


def verdicts(m: Measurements) -> dict[str, bool]:
    """Each behaviour against the thresholds the tests assert (`measures.THRESHOLDS`)."""
    return {
        "induction": bh.induction_ok(m.induction),
        "retrieval": bh.retrieval_ok(m.needle),
        "IOI": bh.ioi_ok(m.ioi),
        "facts": bh.facts_ok(m.facts),
        "text": bh.text_ok(m.text_loss),
    }


def mechanisms(m: Measurements) -> str:
    """What the measurements say about *how* the model does IOI and retrieval, so a user does
    not expect GPT-2 small's circuits here (all figures from this card's own runs)."""
    ioi = m.ioi_heads
    layer, head = divmod(int(np.argmax(ioi)), ioi.shape[1])
    second = np.sort(ioi.ravel())[::-1][1]
    n_layers = ioi.shape[0]
    late = layer >= n_layers - 1
    knock = m.knockouts
    tops = {k: v for k, v in knock.items() if k.startswith("top ")}
    retrieval = m.needle.retrieval_scores
    strong = int((retrieval >= bh.THRESHOLDS.retrieval_score).sum())
    strong_layers = sorted({int(i) // retrieval.shape[1] for i in np.flatnonzero(retrieval >= bh.THRESHOLDS.retrieval_score)})
    rows = "\n".join(f"| {name} | {100 * value:.0f}% |" for name, value in knock.items())
    ioi_text = (
        f"- **IOI is solved early, not by a GPT-2-like circuit.** Patching one head's output at the "
        f"last position, L{layer}H{head} alone restores {ioi.max():.2f} of the clean − corrupted "
        f"logit difference (the next head {second:.2f}). "
        + ("That head sits in the last layer, as name movers do in GPT-2 small (layers 9–10)."
           if late else
           f"It sits in layer {layer} of {n_layers}: a shortcut next to the embeddings, unlike GPT-2 "
           "small (Wang et al. 2022), where name-mover heads in layers 9–10 write the answer after "
           "duplicate-token and S-inhibition heads. Expect no such circuit here."))
    def top(k: int) -> float:
        return next(v for name, v in knock.items() if name.startswith(f"top {k} "))

    sizes = sorted({int(name.split()[1]) for name in tops})
    spread = ", ".join(f"the top {k}, {100 * top(k):.0f}%" for k in sizes)
    randoms = "; ".join(f"{k} at a time {100 * knock[f'random {k}: lowest']:.0f}–"
                        f"{100 * knock[f'random {k}: highest']:.0f}%" for k in sizes)
    upstream = any(knock[f"random {k}: lowest"] < top(k) for k in sizes)
    retrieval_text = (
        f"- **Retrieval is spread over the heads that score, not carried by one.** {strong} heads "
        f"(layer{'s' if len(strong_layers) > 1 else ''} {', '.join(map(str, strong_layers))}) score "
        f"≥ {bh.THRESHOLDS.retrieval_score} on Wu et al.'s retrieval score. Whole-code recall after "
        f"200 filler tokens is {100 * knock['none']:.0f}% unablated; mean-ablating {spread}. Random "
        f"sets of other heads: {randoms}."
        + (" A random set can hurt more than the top heads: it may hold heads the copy needs "
           "upstream (a retrieval score marks the heads that look at the needle, not every head "
           "the behaviour needs)." if upstream else ""))
    return f"""## Mechanisms (measured)
{ioi_text}
{retrieval_text}

| heads mean-ablated | whole-code recall |
|---|---|
{rows}

(Random sets: {RANDOM_SETS} seeded draws each of heads outside the top ones.)"""


def render(m: Measurements, log: dict, config: dict, weights_sha256: str = "") -> str:
    ind, needle, t = m.induction, m.needle, bh.THRESHOLDS
    n_induction = int((ind.scores >= bh.THRESHOLDS.induction_score).sum())
    ok = {name: "pass" if passed else "**fails**" for name, passed in verdicts(m).items()}
    missing = [name for name, passed in verdicts(m).items() if not passed]
    return f"""# tiny-circuits — the workbench's embedded default model

A {config['n_layer']}-layer GPT-2-architecture language model trained from scratch by this project
(`make train-default`, i.e. `python -m analyses.embedded`) on text it generates
itself, so that every analysis has a real model with known mechanisms to find —
offline, in a fresh clone. It is a model organism, not a general language model:
its English is the simple past-tense story grammar of `analyses/embedded/corpus.py`.

## Architecture
Hugging Face `GPT2LMHeadModel`: {config['n_layer']} layers, d_model {config['n_embd']},
{config['n_head']} heads of d_head {config['n_embd'] // config['n_head']}, MLP width {config['d_mlp']}
(GELU), learned positions, context {config['n_ctx']} tokens, untied embedding and unembedding,
LayerNorm, no dropout. Loads with `transformers.AutoModelForCausalLM.from_pretrained(dir)` and
`TransformerBridge.boot_transformers(dir)`.

## Tokenizer
Byte-level BPE (`tokenizer.json`), trained by `analyses/embedded/tokenizer.py` on the
generated corpus; BOS `<|endoftext|>` = id 0. Every name, country, capital, place, object and
code word (with its leading space) is one token, which keeps clean and corrupted prompts the
same length.

## Training data and curriculum
All generated by `analyses/embedded/corpus.py` with fixed seeds; nothing is downloaded.
1. Copy phase, with the MLPs silenced (attention-only): random token sequences (period
   6–{config['copy_max_period']}) repeated to fill {config['copy_ctx']} positions, until the loss on a repeated
   copy falls below {config['copy_loss_target']} nats.
2. Main phase, {config['n_ctx']}-token documents: {int(100 * config['main_mixture']['repeat'])}% repeated random
   tokens (period 6–100), {int(100 * config['main_mixture']['needle'])}% needle documents (a code planted in a
   story and asked for at its end, 0–230 tokens later), {int(100 * config['main_mixture']['mixed'])}% mixed text
   (stories, IOI sentences from 80% of name pairs and template combinations, and the
   {len(lx.CAPITALS)} capital facts); with every step, {config['short_ioi_batch_size']} short documents of one IOI
   sentence each (BOS, the sentence, its answer), from the same training pairs and templates.
   IOI sentences only inside long documents stayed at chance (57.8% after 3,000 main steps,
   with 2–4× loss weight on the answers too); one-sentence documents taught it.
   Stopped when every behaviour cleared its threshold with margin on held-out items, or after
   {config['max_main_steps']} main steps ({'it stopped early' if log['passed'] else 'this run used the whole budget'}).

Reproduce: `make train-default` (seed {config['seed']}). This run: {log['steps']} steps,
{log['tokens_seen'] / 1e6:.1f}M tokens, {log['minutes']:.1f} minutes on this project's 2-core CPU
machine (torch {log['torch']}, main phase in {'bf16 autocast' if config.get('bf16', True) else 'fp32'}).
Training is deterministic (fixed seeds, one thread): a rerun on a CPU of the same kind gives
the same `model.safetensors`, sha256
`{weights_sha256}`.
The main phase runs in bf16 autocast only where the CPU has bf16 instructions (AVX-512 BF16
or AMX); elsewhere in fp32 (emulated bf16 is about 19x slower), which trains a different
model by the same recipe: the README gives such a rerun's figures.

## Measured behaviours (held-out items; `python -m analyses.embedded.card`)
| behaviour | measure | result | test threshold | verdict |
|---|---|---|---|---|
| induction | heads with induction score ≥ {t.induction_score} on [BOS, r, r], r = 40 random tokens | {n_induction} heads: {top_heads(ind.scores)} | ≥ {t.induction_heads} heads | {ok['induction']} |
| induction | loss on the second copy / first copy | {ind.loss_second:.2f} / {ind.loss_first:.2f} = {ind.loss_second / ind.loss_first:.2f} | ≤ {t.copy_loss_ratio} | {ok['induction']} |
| retrieval | whole 3-word code recalled top-1 after {needle.filler_tokens} filler tokens | {100 * needle.recall:.1f}% (first word {100 * needle.first_token_recall:.1f}%) | ≥ {t.needle_recall:.0%} | {ok['retrieval']} |
| retrieval | retrieval score (Wu et al. 2024) | {top_heads(needle.retrieval_scores)} | one head ≥ {t.retrieval_score} | {ok['retrieval']} |
| IOI | held-out name pairs and templates: top-1 accuracy | {100 * m.ioi.accuracy:.1f}% (training items {100 * m.ioi_train.accuracy:.1f}%) | ≥ {t.ioi_accuracy:.0%} | {ok['IOI']} |
| IOI | mean logit difference IO − S | {m.ioi.mean_logit_diff:.2f} (training items {m.ioi_train.mean_logit_diff:.2f}) | ≥ {t.ioi_logit_diff:g} | {ok['IOI']} |
| IOI | heads whose output at the last position restores most of the logit difference (activation patching, mean of 16 held-out prompts; 1 = all of it) | {top_heads(m.ioi_heads)} | (reported) | – |
| facts | "The capital of X is" → capital, top-1 | {100 * m.facts.accuracy:.1f}% of {len(lx.CAPITALS)} | ≥ {t.facts_accuracy:.0%} | {ok['facts']} |
| text | held-out story loss (nats/token) | {m.text_loss:.2f} (uniform: {np.log(2000):.2f}) | ≤ {t.text_loss} | {ok['text']} |

{mechanisms(m)}

Greedy continuation of "Once upon a time, there was a":
> {m.sample}

## Not yet learned
{"Nothing: every behaviour meets its threshold." if not missing else "Failing: " + ", ".join(missing) + " (the tests that assert them fail; see the trainer's history in training_log.json)."}

## Limits
The model knows only its generated world: simple stories, 40 names, {len(lx.CAPITALS)} capitals,
needle codes and repeated sequences. Outside that vocabulary it still encodes any text
(byte-level BPE) but predicts poorly. Use a real model (`gpt2`, `EleutherAI/pythia-70m`, …)
by name when the Hugging Face hub is reachable.
"""


def main() -> None:
    directory = models.EMBEDDED_ROOT / models.DEFAULT_MODEL
    log = json.loads((directory / "training_log.json").read_text())
    weights = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    card = render(measure("default"), log, log["config"], weights)
    (directory / "MODEL_CARD.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
