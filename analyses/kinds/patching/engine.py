"""The patching engine: batched, resumed activation patching of one prompt pair, or of
several pairs of one token length together (the examples of a prompt set).

Shared by activation patching (every granularity), direct-path patching (`paths.py`) and
attribution patching (its `exact` column). It gives the same numbers as
`transformer_lens.patching.get_act_patch_*` (one full forward per patched cell), much faster.

Contract (what callers give, what the engine may skip, when it falls back):

- **Direction**: denoising. The corrupted prompt runs; a patch writes the clean activation
  into one cell (layer, and position and/or head, by the `Site`). Both prompts have the
  same token length (`prompt_pair` refuses others).
- **The metric** is the logit difference `answer - wrong` at the *last position*, per batch
  row (`logit_diff`); the engine asks the model for the last position's logits only
  (`logits_to_keep=1`), so a metric that reads other positions is not supported.
- **Batched**: B copies of the corrupted run go through the model as one batch, each row
  patched at a different cell (`Patcher.batches` says how many per forward). With several
  pairs (`PairBatch`), a row is an (example, cell): the examples share forward passes, and
  each row reads its own example's clean activations, corrupted residual and answers.
- **No-ops**: a cell before its pair's first difference, or whose clean activation equals
  the corrupted one bit for bit (on pairs that differ in one token: the first layer's
  per-position q, k, v and residual after it), or in the last block below the last position
  at a site whose patch stays at its own position (`Site.within_position`: the metric reads
  the last position only), reads as the corrupted run, with no forward.
- **Resumed**: nothing below a row's patched layer is recomputed (the corrupted residual
  entering each block is cached once; blocks below a batch's lowest layer are passed
  through, and a row patched higher joins the pass at its own layer, so block L runs only
  the rows patched at or below L: `resume.joining_rows`), and
  nothing before the prompts' first differing token (those cells are exact no-ops, and
  every patched run reuses the corrupted prefix's keys and values; with several pairs, the
  earliest first difference among them), nor before a batch's lowest patched position (a
  patch at position p leaves every earlier position as it was: causal attention): cells
  are batched in (layer, position) order, so the many rows of one position that a prompt
  set brings share forwards that compute only the positions from there.
- **Fallback**: the first batch carries one extra, unpatched row that must reproduce the
  corrupted run's metric (to 1e-4 relative); on an architecture where resuming does not,
  the engine switches to batched full forwards from layer 0 for the rest of its life.
- **Hooks live on shared modules**: call the engine with the model's lock held.

`effects` cells are int [n, 3] of (layer, position, head), -1 where an axis does not
apply: `position` -1 where a cell spans every position (the `head_*` sites without
`_by_pos`); `head` -1 where a cell is not per head (residual, `attn_out`, `mlp_out`). For
`head_k` / `head_v` on grouped-query models `head` counts key/value heads;
`head_pattern_by_pos`'s `position` is the destination (query) position.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformers import DynamicCache

from analyses.core.errors import SpecError
from analyses.core.progress import Progress, counted, silent
from analyses.core.restored import has_gap, share_restored
from analyses.core.spec import AnalysisSpec
from analyses.kinds import ranges
from analyses.kinds.resume import joining_rows, skipping_blocks_below
from analyses.kinds.tokens import prompt_tokens, single_token

POSITION, HEAD = "position", "head"


@dataclass(frozen=True)
class Site:
    """Where one granularity patches: a hook per layer, and how a cell indexes its tensor.

    `dims` names what each activation axis after the batch axis is indexed by: a cell's
    position, its head, or nothing (the axis is patched whole). A cell's position is -1 when
    the site is not `by_position`: that cell covers every position.
    """

    hook: str  # hook name with a {layer} field, as TransformerLens names it
    dims: tuple[str | None, ...]
    by_position: bool
    per_head: bool
    # a patch here changes its block's output at its own position only (not k, v, resid_pre,
    # which later positions attend to): in the last block, below the last position, a no-op
    within_position: bool = False

    def name(self, layer: int) -> str:
        return self.hook.format(layer=layer)


_RESID = (POSITION, None)  # [batch, pos, d_model]
_HEAD_VECTOR = (POSITION, HEAD, None)  # [batch, pos, head, d_head]
_PATTERN = (HEAD, POSITION, None)  # [batch, head, dest_pos, src_pos]

GRANULARITIES: dict[str, Site] = {
    "resid_pre": Site("blocks.{layer}.hook_resid_pre", _RESID, True, False),
    "resid_mid": Site("blocks.{layer}.hook_resid_mid", _RESID, True, False, within_position=True),
    "resid_post": Site("blocks.{layer}.hook_resid_post", _RESID, True, False, within_position=True),
    "attn_out": Site("blocks.{layer}.hook_attn_out", _RESID, True, False, within_position=True),
    "mlp_out": Site("blocks.{layer}.hook_mlp_out", _RESID, True, False, within_position=True),
    "head_out": Site("blocks.{layer}.attn.hook_z", _HEAD_VECTOR, False, True),
    "head_out_by_pos": Site("blocks.{layer}.attn.hook_z", _HEAD_VECTOR, True, True, within_position=True),
    "head_q": Site("blocks.{layer}.attn.hook_q", _HEAD_VECTOR, False, True),
    "head_k": Site("blocks.{layer}.attn.hook_k", _HEAD_VECTOR, False, True),
    "head_v": Site("blocks.{layer}.attn.hook_v", _HEAD_VECTOR, False, True),
    "head_q_by_pos": Site("blocks.{layer}.attn.hook_q", _HEAD_VECTOR, True, True, within_position=True),
    "head_k_by_pos": Site("blocks.{layer}.attn.hook_k", _HEAD_VECTOR, True, True),
    "head_v_by_pos": Site("blocks.{layer}.attn.hook_v", _HEAD_VECTOR, True, True),
    "head_pattern": Site("blocks.{layer}.attn.hook_pattern", _PATTERN, False, True),
    "head_pattern_by_pos": Site("blocks.{layer}.attn.hook_pattern", _PATTERN, True, True, within_position=True),
}
BLOCK_GRANULARITIES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
ALL = "all"  # every layer x position granularity the model has
DIRECT_PATH = "direct_path"  # sender head -> receiver head q/k/v input: see paths.py
CHOICES = (*GRANULARITIES, DIRECT_PATH, ALL)  # the catalogue lists the same (a test checks)

MAX_ROWS = 256  # patched runs per forward pass computing every position from the first difference
# (a batch resuming at a later position takes more runs of fewer positions: the same work)
PER_LAYER_WORK = 16_384  # computed positions x d_model from which batches start at their layer
ROW_BUDGET_BYTES = 512 * 2**20  # activation memory one batch may take, roughly


# --------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class PromptPair:
    clean: Int[Tensor, "1 pos"]
    corrupted: Int[Tensor, "1 pos"]
    answer: int  # token id
    wrong: int  # token id


@dataclass(frozen=True)
class PairBatch:
    """Prompt pairs of one token length, stacked: row e of each tensor is example e."""

    clean: Int[Tensor, "example pos"]
    corrupted: Int[Tensor, "example pos"]
    answer: Int[Tensor, "example"]  # noqa: F821 - a jaxtyping shape
    wrong: Int[Tensor, "example"]  # noqa: F821 - a jaxtyping shape

    @classmethod
    def of(cls, pairs: list[PromptPair]) -> PairBatch:
        lengths = sorted({int(p.clean.shape[1]) for p in pairs})
        if len(lengths) != 1:
            raise ValueError(f"a PairBatch holds pairs of one token length, not {lengths}")
        return cls(torch.cat([p.clean for p in pairs]), torch.cat([p.corrupted for p in pairs]),
                   torch.tensor([p.answer for p in pairs]), torch.tensor([p.wrong for p in pairs]))

    @property
    def n_examples(self) -> int:
        return int(self.clean.shape[0])


def prompt_pair(bridge, spec: AnalysisSpec) -> PromptPair:
    """Tokenize and check a spec's clean/corrupted prompts and its two one-token answers."""
    clean = prompt_tokens(bridge, spec.clean, "clean")
    corrupted = prompt_tokens(bridge, spec.corrupted, "corrupted")
    if clean.shape[1] != corrupted.shape[1]:
        raise SpecError("corrupted", f"the clean prompt is {clean.shape[1]} tokens and the "
                                     f"corrupted prompt is {corrupted.shape[1]} tokens (with BOS); "
                                     "patching pairs them position by position, so they must be "
                                     "the same length")
    answer = single_token(bridge, spec.answer, "answer")
    wrong = single_token(bridge, spec.wrong, "wrong")
    if answer == wrong:
        raise SpecError("wrong", f"is the same token as answer ({spec.answer!r}); the logit "
                                 "difference would always be 0")
    return PromptPair(clean, corrupted, answer, wrong)


def check_layer(bridge, layer: int | None) -> list[int]:
    """The layers to patch: all of them, or the one `layer` names."""
    n_layers = int(bridge.cfg.n_layers)
    if layer is None:
        return list(range(n_layers))
    return [ranges.check_layer(bridge, layer)]


def logit_diff(logits: Float[Tensor, "batch pos d_vocab"], answer: int | Tensor,
               wrong: int | Tensor) -> Float[Tensor, "batch"]:  # noqa: F821 - a jaxtyping shape
    """The metric: logit(answer) - logit(wrong) at the last position, per batch row
    (`answer`, `wrong`: one token id, or one per row)."""
    last = logits[:, -1].float()
    if isinstance(answer, int):
        return last[:, answer] - last[:, wrong]
    rows = torch.arange(len(last), device=last.device)
    return last[rows, answer.to(last.device)] - last[rows, wrong.to(last.device)]


# --------------------------------------------------------------------------- the engine

class Patcher:
    """Batched, resumed activation patching for one prompt pair, or for several pairs of one
    token length (a `PairBatch`) patched together.

    Caches the corrupted residual stream entering every block and, per site, the clean
    activations (one clean forward for all the `sites` named up front, one more for each
    site asked for later); `patch(site, cells)` then measures the metric with each cell
    patched (`patch_examples` for every example at once). Call it with the model's lock
    held: hooks live on shared modules.
    """

    def __init__(self, bridge, pairs: PromptPair | PairBatch, sites: tuple[Site, ...] = ()):
        self.bridge = bridge
        self.pairs = pairs if isinstance(pairs, PairBatch) else PairBatch.of([pairs])
        k = self.n_examples
        self.n_layers = int(bridge.cfg.n_layers)
        self.n_forwards = 0
        self.resumes = True  # until the first batch shows that resuming is not exact here
        self._verified = False
        self._prefix = None  # the corrupted prompts' key/value cache, every position
        self._clean: dict[str, Tensor] = {}  # hook name -> [example, ...] clean activation
        self._corrupted: dict[str, Tensor] = {}  # hook name -> [example, ...] corrupted activation
        starts = [f"blocks.{layer}.hook_resid_pre" for layer in range(self.n_layers)]
        site_names = [site.name(layer) for site in sites if self.available(site)
                      for layer in range(self.n_layers)]
        tuple_outputs: list[bool] = []
        probe = bridge.blocks[0].register_forward_hook(
            lambda module, args, output: tuple_outputs.append(isinstance(output, tuple)))
        kv = DynamicCache()  # filled by this forward where the bridge passes it through
        try:  # clean and corrupted as one batch: one forward instead of two; the metric
            # reads the last position only, so only its logits are computed
            with torch.no_grad():
                logits, cache = bridge.run_with_cache(
                    torch.cat([self.pairs.clean, self.pairs.corrupted]),
                    names_filter=sorted({*starts, *site_names}), past_key_values=kv, logits_to_keep=1)
        finally:
            probe.remove()
        self.n_forwards += 1
        self._block_returns_tuple = bool(tuple_outputs and tuple_outputs[0])
        self._starts = [cache[name][k:] for name in starts]  # corrupted, [example, pos, d_model]
        self._clean.update({name: cache[name][:k] for name in site_names})
        self._corrupted.update({name: cache[name][k:] for name in site_names})
        both = torch.arange(2 * k) % k  # each row's example: clean rows, then corrupted rows
        metric = self._metric(logits, both)
        self.clean_baselines, self.corrupted_baselines = metric[:k], metric[k:]
        # A pair agrees before its first difference, so (causal attention) every activation
        # there is the same in both runs and patching it changes nothing: no forward needed.
        # Patched runs resume from the earliest first difference among the examples.
        differs = self.pairs.clean != self.pairs.corrupted  # [example, pos]
        self.first_differences = np.where(differs.any(1), differs.int().argmax(1),
                                          self.n_tokens).astype(np.int64)
        self.first_difference = int(self.first_differences.min())
        if kv.get_seq_length() == self.n_tokens:  # a pass resuming at position p keeps [:p]
            kv.batch_select_indices(torch.arange(k, 2 * k))  # of the corrupted rows
            self._prefix = kv

    # --- public -----------------------------------------------------------------
    @property
    def n_examples(self) -> int:
        return self.pairs.n_examples

    @property
    def n_tokens(self) -> int:
        return int(self.pairs.corrupted.shape[1])

    @property
    def clean_baseline(self) -> float:
        """The clean run's metric (a single-pair patcher's; see `clean_baselines`)."""
        return float(self._single(self.clean_baselines))

    @property
    def corrupted_baseline(self) -> float:
        """The corrupted run's metric (a single-pair patcher's; see `corrupted_baselines`)."""
        return float(self._single(self.corrupted_baselines))

    def available(self, site: Site) -> bool:
        return site.name(0) in self.bridge.hook_dict

    def cells(self, site: Site, layers: list[int]) -> np.ndarray:
        """Every cell of `site` in `layers`: int [n, 3] of (layer, position, head), -1 = n/a,
        in TransformerLens's order (layer, then position, then head)."""
        positions = range(self.n_tokens) if site.by_position else [-1]
        rows = []
        for layer in layers:
            heads = range(self.n_heads(site, layer)) if site.per_head else [-1]
            rows += [(layer, p, h) for p in positions for h in heads]
        return np.array(rows, dtype=np.int64).reshape(-1, 3)

    def n_heads(self, site: Site, layer: int) -> int:
        return int(self.clean_activation(site, layer).shape[1 + site.dims.index(HEAD)])

    def clean_activation(self, site: Site, layer: int) -> Tensor:
        """[example, ...] at `site` in `layer` on the clean prompts."""
        if site.name(layer) not in self._clean:
            self._cache_clean([site])
        return self._clean[site.name(layer)]

    def corrupted_activation(self, site: Site, layer: int) -> Tensor:
        """[example, ...] at `site` in `layer` on the corrupted prompts."""
        if site.name(layer) not in self._corrupted:
            names = [site.name(layer) for layer in range(self.n_layers)]
            with torch.no_grad():
                _, cache = self.bridge.run_with_cache(self.pairs.corrupted, names_filter=names)
            self.n_forwards += 1
            self._corrupted.update({name: cache[name] for name in names})
        return self._corrupted[site.name(layer)]

    def patch(self, site: Site, cells: np.ndarray, progress: Progress = silent,
              span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
        """A single-pair patcher's metric with each cell of `cells` (int [n, 3]) patched
        alone: float [n]."""
        self._single(self.clean_baselines)
        return self.patch_examples(site, cells, progress, span)[0]

    def patch_examples(self, site: Site, cells: np.ndarray, progress: Progress = silent,
                       span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
        """The metric of every example with each cell of `cells` (int [n, 3]) patched alone:
        float [example, n]."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 3)
        n, k = len(cells), self.n_examples
        examples = np.repeat(np.arange(k), n)  # row r patches example r // n at cell r % n
        rows = np.tile(cells, (k, 1))
        out = self.corrupted_baselines[examples].copy()
        no_op = site.by_position & (rows[:, 1] >= 0) & (rows[:, 1] < self.first_differences[examples])
        no_op |= self.unchanged(site, rows, examples)
        if site.within_position:  # the metric reads the last position's logits only
            no_op |= (rows[:, 0] == self.n_layers - 1) & (rows[:, 1] >= 0) & (rows[:, 1] < self.n_tokens - 1)
        finished = int(no_op.sum())
        lo, hi = span
        for batch in self.batches(rows, np.flatnonzero(~no_op)):
            out[batch] = self._run_batch(site, rows[batch], examples[batch])
            finished += len(batch)
            what = counted(len(rows), "cell") + ("" if k == 1 else f" of {k} examples")
            progress(lo + (hi - lo) * finished / len(rows), f"patched {finished} of {what}")
        return out.reshape(k, n)

    def unchanged(self, site: Site, cells: np.ndarray, examples: np.ndarray) -> np.ndarray:
        """bool [n]: whether each cell's clean activation equals its corrupted one, bit for
        bit, in its example (`examples` [n]) — patching it writes what is there, an exact no-op
        (with pairs that differ in one token: the first layer's q, k, v and residual at every
        later position). Only sites whose corrupted activations are cached (those named up
        front) are checked; elsewhere [False]."""
        out = np.zeros(len(cells), dtype=bool)
        for layer in np.unique(cells[:, 0]):
            name = site.name(int(layer))
            if name not in self._corrupted or name not in self._clean:
                continue
            same = self._clean[name] == self._corrupted[name]  # [example, ...]
            indexed = list(site.dims)
            for axis in reversed(range(len(indexed))):  # all() over the axes a cell spans
                if indexed[axis] is None or (indexed[axis] == POSITION and not site.by_position) or (
                        indexed[axis] == HEAD and not site.per_head):
                    same = same.all(1 + axis)
                    del indexed[axis]
            at = cells[:, 0] == layer
            for dim in indexed:  # a cell spanning an axis the site indexes (-1): not checked
                at &= (cells[:, 1] if dim == POSITION else cells[:, 2]) >= 0
            at = np.flatnonzero(at)
            index = [torch.from_numpy(examples[at])]
            index += [torch.from_numpy(cells[at, 1] if dim == POSITION else cells[at, 2]) for dim in indexed]
            out[at] = same.cpu()[tuple(index)].numpy()
        return out

    def batches(self, cells: np.ndarray, which: np.ndarray | None = None) -> list[np.ndarray]:
        """Indices of `cells` (those in `which`, default all), one array per forward pass,
        in (layer, position) order.

        A batch starts at its lowest layer, so its higher-layer cells recompute the blocks in
        between. Where a row's work is small (few positions after the prompts' first
        difference, a narrow model) a forward's fixed cost dominates, and batches hold as many
        cells as fit: fewer, larger forwards (the embedded model: one forward for a whole
        sweep). Where it is large, each layer's cells get batches of their own that start at
        that layer: the least arithmetic (GPT-2-small shape, 64 tokens, head_out: 1.7x fewer
        block evaluations than one batch from layer 0). A batch also starts at its lowest
        position (`resume_position`), and holds rows up to a budget of computed positions
        (`rows_per_batch()` rows of every position from the first difference): where many rows
        share a late position (the examples of a prompt set), its batches are as many rows of
        fewer positions each."""
        which = np.arange(len(cells)) if which is None else np.asarray(which)
        order = which[np.lexsort((cells[which, 1], cells[which, 0]))]
        if self.computed_positions * int(self.bridge.cfg.d_model) < PER_LAYER_WORK:
            return self._cut(cells, order)
        batches = []
        for layer in dict.fromkeys(cells[order, 0].tolist()):
            batches += self._cut(cells, order[cells[order, 0] == layer])
        return batches

    def _cut(self, cells: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
        """`order` (indices of `cells`, in (layer, position) order) cut into consecutive
        batches of at most `rows_per_batch()` rows x `computed_positions` positions, each
        batch computing the positions from its own `resume_position`."""
        budget = self.rows_per_batch() * self.computed_positions
        if not len(order):
            return []
        starts = self._resume_positions(cells[order])  # [row] the position row r resumes at
        if len(order) * (self.n_tokens - starts.min()) <= budget:  # one forward (a single pair's site, often)
            return [order]
        batches, first, lowest = [], 0, starts[0]
        for r in range(1, len(order)):
            lowest_with_r = min(lowest, starts[r])
            if (r + 1 - first) * (self.n_tokens - lowest_with_r) > budget:  # r starts the next batch
                batches.append(order[first:r])
                first, lowest_with_r = r, starts[r]
            lowest = lowest_with_r
        return [*batches, order[first:]]

    @property
    def computed_positions(self) -> int:
        """Positions a patched forward computes: those from the first difference on."""
        return self.n_tokens - (self.first_difference if self.resumes else 0)

    def resume_position(self, cells: np.ndarray) -> int:
        """The position a batch of `cells` (int [n, 3]) resumes at: its lowest cell position,
        or the first difference where that is later or a cell spans every position (-1)."""
        return int(self._resume_positions(cells).min()) if len(cells) else self.first_difference

    def _resume_positions(self, cells: np.ndarray) -> np.ndarray:
        """int [n]: each cell's own resume position (its position, at least the first difference)."""
        position = cells[:, 1]
        return np.where(position < 0, self.first_difference, np.maximum(position, self.first_difference))

    def rows_per_batch(self, split_qkv_inputs: bool = False) -> int:
        cfg = self.bridge.cfg
        pos, d_model, n_heads = self.n_tokens, int(cfg.d_model), int(cfg.n_heads)
        d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * d_model)
        item = self._starts[0].element_size()
        split = 6 * n_heads * d_model if split_qkv_inputs else 0  # per-head q/k/v inputs + norms
        queries = self.computed_positions  # each attends to all `pos` keys
        per_row = item * queries * (8 * d_model + 2 * d_mlp + 4 * n_heads * pos + split)
        return int(max(1, min(MAX_ROWS, ROW_BUDGET_BYTES // max(per_row, 1))))

    def measure(self, cells: np.ndarray, start: int, hooks_for,
                examples: np.ndarray | None = None, entries: np.ndarray | None = None,
                from_position: int | None = None) -> np.ndarray:
        """The metric of one batched forward pass: row r runs example `examples[r]` (default
        0) patched by the hooks that `hooks_for(cells, offset, examples)` builds for
        `cells[r]` (a row of -1s must stay unpatched) at positions `offset` onwards (the hooks
        see only those); nothing below layer `start` and before position `first_difference`
        changes, so where resuming is exact the pass starts at that layer and computes only
        the positions from there, the earlier ones' keys and values coming from the corrupted
        run's cache. `from_position` (at least `first_difference`) resumes later: every cell
        of the batch must leave the positions before it unchanged.

        `entries[r]` (default: `start` for every row) is the layer below which row r is the
        corrupted run: where resuming, the row joins the pass there (`resume.joining_rows`).
        `hooks_for` then gets the rows ordered by entry, and a hook at layer L sees only the
        rows that entered at or below L: the first ones of that order."""
        examples = np.zeros(len(cells), np.int64) if examples is None else np.asarray(examples)
        entries = np.full(len(cells), start) if entries is None else np.maximum(entries, start)
        check = not self._verified and self.resumes
        if check:  # one extra, unpatched row: resuming (and joining) must reproduce the corrupted run
            cells = np.vstack([cells, np.full((1, cells.shape[1]), -1)])
            examples = np.append(examples, 0)
            entries = np.append(entries, entries.max())
        if not self.resumes:
            entries = np.zeros(len(cells), np.int64)
        order = np.argsort(entries, kind="stable")  # rows in the order they enter the pass
        offset = (self.first_difference if from_position is None else from_position) if self.resumes else 0
        with torch.no_grad():
            try:
                logits = self._forward(examples[order], start if self.resumes else 0,
                                       hooks_for(cells[order], offset, examples[order]),
                                       entries[order], offset)
                metric = np.empty(len(cells))
                metric[order] = self._metric(logits, torch.from_numpy(examples[order]))
            except (NotImplementedError, ValueError, TypeError, RuntimeError):
                if not check:
                    raise
                metric = None
        self.n_forwards += 1
        if check:
            self._verified = True
            expected = self.corrupted_baselines[0]
            if metric is None or abs(metric[-1] - expected) > 1e-4 * max(1.0, abs(expected)):
                self.resumes = False  # this architecture cannot resume: full forwards
                return self.measure(cells[:-1], start, hooks_for, examples[:-1], from_position=from_position)
            metric = metric[:-1]
        return metric

    # --- internals --------------------------------------------------------------
    def _single(self, values: np.ndarray) -> np.ndarray:
        if self.n_examples != 1:
            raise ValueError(f"this patcher holds {self.n_examples} examples: use the per-example "
                             "values (patch_examples, clean_baselines, corrupted_baselines)")
        return values[0]

    def _metric(self, logits: Tensor, examples: Tensor) -> np.ndarray:
        """logits [row, pos, d_vocab] of rows running `examples` [row] -> float64 [row]."""
        pairs = self.pairs
        if self.n_examples == 1:
            metric = logit_diff(logits, int(pairs.answer[0]), int(pairs.wrong[0]))
        else:
            metric = logit_diff(logits, pairs.answer[examples], pairs.wrong[examples])
        return metric.cpu().numpy().astype(np.float64)

    def _rows(self, tensor: Tensor, examples: np.ndarray) -> Tensor:
        """`tensor` [example, ...] -> [row, ...]: each row's example (one example: a view)."""
        if self.n_examples == 1:
            return tensor.expand(len(examples), *tensor.shape[1:])
        return tensor[torch.from_numpy(examples).to(tensor.device)]

    def _cache_clean(self, sites) -> Tensor:
        """One clean forward caching every layer's activation at `sites`; its logits."""
        names = sorted({site.name(layer) for site in sites for layer in range(self.n_layers)})
        with torch.no_grad():
            logits, cache = self.bridge.run_with_cache(self.pairs.clean, names_filter=names)
        self.n_forwards += 1
        self._clean.update({name: cache[name] for name in names})
        return logits

    def _run_batch(self, site: Site, cells: np.ndarray, examples: np.ndarray) -> np.ndarray:
        def hooks_for(cells, offset: int, examples: np.ndarray):
            hooks = []
            for layer in sorted({int(layer) for layer in cells[:, 0] if layer >= 0}):
                clean = _from_position(self.clean_activation(site, layer), site, offset)
                if self.n_examples > 1:  # each row its own example's clean activation
                    clean = self._rows(clean, examples)
                mask = _cell_mask(site, cells, layer, clean.shape, offset).to(clean.device)
                hooks.append((site.name(layer), partial(_write_clean, mask=mask, clean=clean)))
            return hooks

        return self.measure(cells, int(cells[:, 0].min()), hooks_for, examples, entries=cells[:, 0],
                            from_position=self.resume_position(cells) if site.by_position else None)

    def _forward(self, examples: np.ndarray, start: int, hooks, entries: np.ndarray, offset: int) -> Tensor:
        """Logits [row, 1, d_vocab] of one pass: rows running `examples` [row] with `hooks`,
        from layer `start` and position `offset` (resuming; `entries` [row] ascending: each
        row's layer of entry), or whole (not)."""
        if not self.resumes:
            return self.bridge.run_with_hooks(self._rows(self.pairs.corrupted, examples),
                                              fwd_hooks=hooks)
        # present[L]: the rows in the pass at block L (the first ones: rows go in entry order)
        present = np.searchsorted(entries, np.arange(self.n_layers), side="right")
        residual = self._rows(self._starts[start][:, offset:], examples[: present[start]])
        arrivals = {layer: self._rows(self._starts[layer][:, offset:],
                                      examples[present[layer - 1]:present[layer]])
                    for layer in range(start + 1, self.n_layers) if present[layer] > present[layer - 1]}
        past = {}
        if offset:  # each block's corrupted keys and values before `offset`, for the rows present there
            cache = copy.deepcopy(self._prefix_cache())
            cache.crop(offset - cache.get_seq_length())
            for layer, kv in enumerate(cache.layers):
                kv.batch_select_indices(torch.from_numpy(examples[: present[max(layer, start)]]))
            past["past_key_values"] = cache
        with skipping_blocks_below(self.bridge, start, self._block_returns_tuple), \
                joining_rows(self.bridge, len(residual), arrivals):
            return self.bridge.run_with_hooks(residual, fwd_hooks=hooks, start_at_layer=start,
                                              logits_to_keep=1, **past)

    def _prefix_cache(self):
        """The corrupted runs' keys and values at every position (Hugging Face's cache
        object; a pass resuming at position p crops a copy to [:p]), computed once."""
        if self._prefix is None:
            with torch.no_grad():
                _, self._prefix = self.bridge(self.pairs.corrupted, return_type="logits_and_cache")
            self.n_forwards += 1
        return self._prefix


def _from_position(activation: Tensor, site: Site, offset: int) -> Tensor:
    """`activation` [1, ...] from position `offset` on (its position axis, if any, sliced)."""
    if not offset or POSITION not in site.dims:
        return activation
    index = [slice(None)] * activation.dim()
    index[1 + site.dims.index(POSITION)] = slice(offset, None)
    return activation[tuple(index)]


def _cell_mask(site: Site, cells: np.ndarray, layer: int, shape: torch.Size,
               offset: int = 0) -> Tensor:
    """Bool [rows, ...] (size 1 on axes the site patches whole): True where row r's cell
    lies, for the rows whose cell is at `layer`; other rows stay all False (unpatched).
    `shape` starts at position `offset`: a cell's position p is index p - offset."""
    mask_shape = [len(cells)] + [size if dim else 1 for dim, size in zip(site.dims, shape[1:])]
    mask = torch.zeros(mask_shape, dtype=torch.bool)
    values = {POSITION: cells[:, 1] - offset, HEAD: cells[:, 2]}
    spans = {POSITION: cells[:, 1] < 0, HEAD: cells[:, 2] < 0}  # -1: the cell spans the axis
    at_layer = cells[:, 0] == layer
    # one assignment per pattern of spanned axes (a site's cells share one)
    for pattern in {(bool(p), bool(h)) for p, h in zip(spans[POSITION][at_layer], spans[HEAD][at_layer])}:
        spanned = dict(zip((POSITION, HEAD), pattern))
        rows = np.flatnonzero(at_layer & (spans[POSITION] == pattern[0]) & (spans[HEAD] == pattern[1]))
        index = [torch.from_numpy(rows)]
        for dim in site.dims:
            if dim is None:
                index.append(0)
            else:
                index.append(slice(None) if spanned[dim] else torch.from_numpy(values[dim][rows]))
        mask[tuple(index)] = True
    return mask


def _write_clean(activation: Tensor, hook, mask: Tensor, clean: Tensor) -> Tensor:
    """Each batch row gets the clean activation in its own cell (mask), corrupted elsewhere.

    In place, as TransformerLens's patch setters do: at a hook whose tensor is also the
    residual stream (`hook_resid_mid` is the second norm's input, the very tensor the block
    adds the MLP output to) the patch must reach the residual, not only the norm's input."""
    rows = activation.shape[0]  # where rows join the pass at their own layer, only the first ones
    clean = clean if clean.shape[0] == 1 else clean[:rows]
    patched = torch.where(mask[:rows], clean.to(activation.dtype), activation)
    return activation.copy_(patched)


def normaliser(clean: float, corrupted: float):
    """raw metric -> share of the clean-corrupted gap restored (`core.restored`); refuses a pair with no gap."""
    if not has_gap(clean, corrupted):
        raise SpecError("corrupted", f"the clean and corrupted prompts give the same logit "
                                     f"difference ({clean:.6g} vs {corrupted:.6g}), so they do not "
                                     "separate the answers and there is no effect to restore; "
                                     "choose prompts on which the model prefers the answer "
                                     "differently")
    return lambda raw: share_restored(raw, clean, corrupted)
