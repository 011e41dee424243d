"""A dictionary's metrics on held-out text (SAELens `evals.py` measures the same things):

- l0: latents active per token (mean); explained_variance: 1 - FVU over the eval tokens,
  FVU = sum |y - y_hat|^2 / sum |y - mean(y)|^2 (y: the site's value; a transcoder's MLP output);
- ce_clean / ce_zero / ce_spliced: next-token cross-entropy with the site as it is, zeroed, and
  replaced by the dictionary's output (every position but BOS); ce_recovered =
  (ce_zero - ce_spliced) / (ce_zero - ce_clean), ce_recovered_se its standard error (documents
  as clusters), ce_by_doc_kind the same per document type (stories, needles, repeated random
  tokens); kl: KL(clean || spliced) per token; explained_variance_by_doc_kind: each document
  type's share of the eval tokens' variance and the explained variance within it (both about
  the whole eval set's mean, so the shares' weighted FVUs add up to the overall FVU);
- dead_share: latents that never fire on the eval tokens; dense_share: those firing on > 10%;
  density_histogram: counts of log10(firing rate) per bin;
- lexicon: per category of the embedded corpus's lexicon, the best single latent's F1 at telling
  that category's tokens from the rest (best threshold), and the best MLP neuron's (any layer
  up to the site's) beside it: where a latent beats every neuron, the dictionary found a
  feature the neuron basis hides.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from analyses.dictionaries import sites as st
from analyses.dictionaries.activations import ActivationChunks
from analyses.dictionaries.coder import SparseCoder
from analyses.dictionaries.tokens import TokenStream

DENSE_ABOVE = 0.1  # a latent firing on more than 10% of tokens is "dense"
HISTOGRAM_EDGES = tuple(float(e) for e in np.arange(-6.0, 0.5, 0.5))  # log10 firing rate
# eval tokens the lexicon probe reads: the first 25k, among the documents the CE splice runs
# (--ce-tokens 100k by default), so their clean pass gives the neurons at no extra forward
LEXICON_TOKENS = 25_000


class SparsityStats:
    """Running sums over eval batches: reconstruction error, variance, firing counts."""

    def __init__(self, num_latents: int, d: int):
        self.n = 0
        self.sse = 0.0
        self.sum_y = torch.zeros(d, dtype=torch.float64)
        self.sum_y2 = 0.0
        self.active = 0
        self.fires = torch.zeros(num_latents, dtype=torch.long)

    def add(self, y: Float[Tensor, "n d"], y_hat: Float[Tensor, "n d"], top_acts: Float[Tensor, "n k"],
            top_indices: Int[Tensor, "n k"]) -> None:
        y64 = y.double()
        self.n += y.shape[0]
        self.sse += (y64 - y_hat.double()).pow(2).sum().item()
        self.sum_y += y64.sum(0)
        self.sum_y2 += y64.pow(2).sum().item()
        fired = top_acts > 0  # TopK may pick zeros where fewer than k are positive
        self.active += int(fired.sum())
        self.fires += torch.bincount(top_indices[fired], minlength=len(self.fires))

    def result(self) -> dict:
        total_variance = self.sum_y2 - (self.sum_y.pow(2).sum().item() / self.n)
        density = (self.fires.double() / self.n).numpy()
        return {"tokens": self.n, "l0": self.active / self.n,
                "explained_variance": 1.0 - self.sse / total_variance, "fvu": self.sse / total_variance,
                "dead_share": float((self.fires == 0).double().mean()),
                "dense_share": float((density > DENSE_ABOVE).mean()),
                "density_histogram": density_histogram(density)}


def explained_variance_by_kind(stats: dict[str, SparsityStats]) -> dict:
    """Per document type: its tokens, its share of the total variance and the explained variance
    on it, the variance taken about the mean of all types together (so an FVU per type,
    weighted by its share, sums to the overall FVU: where the unexplained variance is)."""
    n = sum(s.n for s in stats.values())
    mean = sum(s.sum_y for s in stats.values()) / n  # [d]
    # sum |y - mean|^2 = sum |y|^2 - 2 mean . sum y + n |mean|^2, per type
    spread = {k: s.sum_y2 - 2 * float(mean @ s.sum_y) + s.n * float(mean @ mean) for k, s in stats.items()}
    total = sum(spread.values())
    return {k: {"tokens": s.n, "variance_share": spread[k] / total,
                "explained_variance": 1.0 - s.sse / spread[k] if spread[k] > 0 else None}
            for k, s in sorted(stats.items())}


def density_histogram(density: np.ndarray) -> dict:
    """Counts of latents per log10(firing rate) bin; dead latents (rate 0) counted apart."""
    alive = density[density > 0]
    counts, _ = np.histogram(np.log10(alive), bins=np.array(HISTOGRAM_EDGES))
    below = int((np.log10(alive) < HISTOGRAM_EDGES[0]).sum()) if len(alive) else 0
    return {"log10_edges": list(HISTOGRAM_EDGES), "counts": counts.tolist(), "below_first_edge": below,
            "dead": int((density == 0).sum())}


def next_token_ce(logits: Float[Tensor, "batch pos vocab"],
                  tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos-1"]:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(),
                           reduction="none").reshape(tokens.shape[0], -1)


def kl_per_token(clean: Float[Tensor, "batch pos vocab"],
                 other: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, "batch pos"]:
    """KL(clean || other) at each position, in nats."""
    p_log = clean.float().log_softmax(-1)
    return (p_log.exp() * (p_log - other.float().log_softmax(-1))).sum(-1)


def ce_recovered(ce_clean: float, ce_zero: float, ce_spliced: float) -> float:
    return (ce_zero - ce_spliced) / (ce_zero - ce_clean)


def ce_recovered_se(clean: np.ndarray, zero: np.ndarray, spliced: np.ndarray) -> float | None:
    """The standard error of CE recovered from per-document CE sums ([docs] each): a ratio of
    sums, R = sum(zero - spliced) / sum(zero - clean), with documents as independent clusters
    (tokens within a document are not independent). Delta method for a ratio estimator:
    SE = sqrt(n / (n - 1) * sum((a_i - R b_i)^2)) / sum(b_i). Where zero-ablating a site costs
    little (the denominator is small), this is what says whether a miss is a real one. None
    (metrics.json is strict JSON: no NaN) for fewer than two documents or a zero denominator."""
    a, b = zero - spliced, zero - clean
    n = len(a)
    if n < 2 or b.sum() == 0:
        return None
    ratio = a.sum() / b.sum()
    return float(np.sqrt(n / (n - 1) * ((a - ratio * b) ** 2).sum()) / abs(b.sum()))


def ce_by_kind(per_doc: dict[str, np.ndarray], kinds: np.ndarray, tokens_per_doc: int) -> dict:
    """CE clean / zero / spliced (per token) and CE recovered with its SE, per document type:
    where the reconstruction costs the model, by kind of text (a miss confined to the
    random-token induction documents is a different finding from one on stories)."""
    out = {}
    for kind in sorted(set(kinds.tolist())):
        mine = kinds == kind
        clean, zero, spliced = (per_doc[k][mine] for k in ("clean", "zero", "spliced"))
        out[kind] = {"docs": int(mine.sum()), "ce_clean": float(clean.sum() / (mine.sum() * tokens_per_doc)),
                     "ce_zero": float(zero.sum() / (mine.sum() * tokens_per_doc)),
                     "ce_spliced": float(spliced.sum() / (mine.sum() * tokens_per_doc)),
                     "ce_recovered": (float((zero.sum() - spliced.sum()) / (zero.sum() - clean.sum()))
                                      if zero.sum() != clean.sum() else None),
                     "ce_recovered_se": ce_recovered_se(clean, zero, spliced)}
    return out


@torch.no_grad()
def best_f1(acts: Float[Tensor, "n unit"], labels: Bool[Tensor, "n category"]) -> Float[Tensor, "unit category"]:
    """Each unit's best F1 over thresholds at predicting each category (predict "in" when
    act >= threshold). Exact, and cheap: the best threshold is always some positive token's own
    value a (a lower one between two positives only adds false positives), where
    F1 = 2 * #{positives >= a} / (#{tokens >= a} + #positives); both counts come from binary
    searches in sorted copies, so the work is one sort per unit plus a search per positive."""
    n = acts.shape[0]
    ranked = acts.T.contiguous().sort(dim=1).values  # [unit, n] ascending; sorting rows is ~10x a column sort
    out = torch.full((acts.shape[1], labels.shape[1]), float("nan"), dtype=torch.float64)
    for c in range(labels.shape[1]):
        values = acts[labels[:, c]].T.contiguous()  # [unit, positives]
        positives = values.shape[1]
        if positives == 0:
            continue
        predicted = n - torch.searchsorted(ranked, values, side="left")  # [unit, positives]: tokens >= a
        hits = positives - torch.searchsorted(values.sort(dim=1).values, values, side="left")  # positives >= a
        out[:, c] = (2 * hits.double() / (predicted.double() + positives)).max(dim=1).values
    return out


def lexicon_labels(tokenizer, tokens: Int[Tensor, " n"]) -> tuple[list[str], Bool[Tensor, "n category"], dict]:
    """Which eval tokens belong to each lexicon category: the single-token form of each word
    with its leading space (how the corpus writes them mid-sentence)."""
    from analyses.embedded import lexicon as lx

    categories = {"names": lx.NAMES, "capitals": tuple(c for _, c in lx.CAPITALS), "code_words": lx.CODE_WORDS,
                  "places": lx.PLACES, "objects": lx.OBJECTS, "adjectives": lx.ADJECTIVES,
                  "animals": lx.ANIMALS, "feelings": lx.FEELINGS, "activities": lx.ACTIVITIES,
                  "weather": lx.WEATHER}
    names, columns, sizes = [], [], {}
    for name, words in categories.items():
        ids = [tokenizer.encode(" " + w, add_special_tokens=False) for w in words]
        ids = sorted({i[0] for i in ids if len(i) == 1})
        sizes[name] = len(ids)
        names.append(name)
        columns.append(torch.isin(tokens, torch.tensor(ids or [-1], dtype=tokens.dtype)))
    return names, torch.stack(columns, dim=1), sizes


@torch.no_grad()
def evaluate(loaded, site: st.Site, coder: SparseCoder, eval_tokens: int, ce_tokens: int, seed: int = 0,
             n_ctx: int = 256, cache=None, batch_docs: int = 8) -> dict:
    """Every metric of the module docstring for `coder` at `site`, on the eval split."""
    stream = TokenStream(n_ctx=n_ctx, seed=seed)
    bridge = loaded.bridge
    neuron_layers = list(range(site.layer + 1))
    neuron_sites = [st.Site(f"blocks.{layer}.mlp.hook_post", layer, "neurons") for layer in neuron_layers]
    chunks = ActivationChunks(loaded, [site], stream, "eval", cache)
    n_chunks = math.ceil(eval_tokens / stream.tokens_per_chunk())
    chunks.ensure(n_chunks)
    stats = SparsityStats(coder.num_latents, coder.cfg.d_in)
    by_kind = {}  # document type -> SparsityStats of its tokens
    lexicon_tokens, latent_acts = [], []
    for i in range(n_chunks):
        x, y = chunks.load(i, site)
        top_acts, top_indices = coder.encode(x)
        y_hat = coder.decode(top_acts, top_indices) + coder.skip(x)
        stats.add(y, y_hat, top_acts, top_indices)
        row_kinds = np.repeat(stream.doc_kinds("eval", i), stream.n_ctx - 1)  # [tokens]: each document's rows
        for kind in np.unique(row_kinds):
            mine = torch.from_numpy(row_kinds == kind)
            by_kind.setdefault(str(kind), SparsityStats(coder.num_latents, coder.cfg.d_in)).add(
                y[mine], y_hat[mine], top_acts[mine], top_indices[mine])
        if sum(len(t) for t in lexicon_tokens) < LEXICON_TOKENS:
            lexicon_tokens.append(torch.from_numpy(chunks.tokens(i))[:, 1:].reshape(-1).long())
            latent_acts.append(coder.dense(top_acts, top_indices))
    result = stats.result()
    result["explained_variance_by_doc_kind"] = explained_variance_by_kind(by_kind)

    ce = {"clean": [], "zero": [], "spliced": [], "kl": []}
    neuron_acts = []
    ce_docs = max(1, math.ceil(ce_tokens / (n_ctx - 1)))
    lexicon_docs = math.ceil(min(LEXICON_TOKENS, sum(len(t) for t in lexicon_tokens)) / (n_ctx - 1))
    docs = torch.cat([torch.from_numpy(chunks.tokens(i)).long() for i in range(n_chunks)])
    for start in range(0, max(ce_docs, lexicon_docs), batch_docs):
        tokens = docs[start:start + batch_docs]
        keep = tokens != bridge.tokenizer.bos_token_id  # [batch, pos]: BOS stays clean
        names = [s.name for s in neuron_sites]
        if start < lexicon_docs:  # the lexicon probe's documents: their neurons too
            clean, cache_ = bridge.run_with_cache(tokens, names_filter=lambda n, names=names: n in names)
            neuron_acts.append(torch.cat([cache_[n][:, 1:].reshape(-1, cache_[n].shape[-1]) for n in names], dim=1))
        else:
            clean = bridge(tokens)
        if start >= ce_docs:
            continue
        with st.spliced(bridge, site, lambda x: torch.zeros_like(coder(x)), keep):
            zero = bridge(tokens)
        with st.spliced(bridge, site, coder, keep):
            spliced = bridge(tokens)
        ce["clean"].append(next_token_ce(clean, tokens))  # [batch, pos - 1] each
        ce["zero"].append(next_token_ce(zero, tokens))
        ce["spliced"].append(next_token_ce(spliced, tokens))
        ce["kl"].append(kl_per_token(clean, spliced)[:, 1:])
    means = {k: torch.cat(v).double().mean().item() for k, v in ce.items()}
    per_doc = {k: torch.cat(v).double().sum(1).numpy() for k, v in ce.items()}  # [docs]
    kinds = np.array([k for i in range(n_chunks) for k in stream.doc_kinds("eval", i)])[:len(per_doc["clean"])]
    result["ce_by_doc_kind"] = ce_by_kind(per_doc, kinds, n_ctx - 1)
    result.update(ce_tokens=int(sum(v.numel() for v in ce["clean"])), ce_clean=means["clean"],
                  ce_zero=means["zero"], ce_spliced=means["spliced"], kl=means["kl"],
                  ce_recovered=ce_recovered(means["clean"], means["zero"], means["spliced"]),
                  ce_recovered_se=ce_recovered_se(per_doc["clean"], per_doc["zero"], per_doc["spliced"]),
                  ce_docs=len(per_doc["clean"]))
    lexicon_tokens = torch.cat(lexicon_tokens)[:LEXICON_TOKENS]
    result["lexicon"] = lexicon_probe(bridge.tokenizer, lexicon_tokens, torch.cat(latent_acts)[:LEXICON_TOKENS],
                                      torch.cat(neuron_acts)[:LEXICON_TOKENS], bridge.cfg.d_mlp)
    result["lexicon_tokens"] = len(lexicon_tokens)
    return result


def lexicon_probe(tokenizer, tokens: Int[Tensor, " n"], latent_acts: Float[Tensor, "n latent"],
                  neuron_acts: Float[Tensor, "n neuron"], d_mlp: int) -> dict:
    """Per category: the best latent and its F1, the best neuron ("L<layer>.N<index>"; the
    neurons are layers 0.. side by side, d_mlp each) and its F1."""
    n = min(len(tokens), len(latent_acts), len(neuron_acts))
    names, labels, sizes = lexicon_labels(tokenizer, tokens[:n])
    latent_f1 = best_f1(latent_acts[:n], labels)
    neuron_f1 = best_f1(neuron_acts[:n], labels)
    out = {}
    for c, name in enumerate(names):
        if not bool(labels[:, c].any()):
            out[name] = {"tokens": 0, "words": sizes[name]}
            continue
        lat, neu = latent_f1[:, c], neuron_f1[:, c]
        out[name] = {"tokens": int(labels[:, c].sum()), "words": sizes[name],
                     "latent": int(lat.argmax()), "latent_f1": float(lat.max()),
                     "neuron": f"L{int(neu.argmax()) // d_mlp}.N{int(neu.argmax()) % d_mlp}",
                     "neuron_f1": float(neu.max())}
    return out
