"""Ablation sweep: knock out every head and every MLP, one at a time, and measure what each
knock-out does to the answer, on a prompt or over a prompt set, as one analysis.

It is the steering kind's knock-out (`ablate=L0H0`, `analyses.kinds.steering`) run for each
component of the model in turn, without generating: the same hooks (`interventions.ablation`:
the output replaced by zero or by its mean over the neutral text, never at BOS,
`analyses.kinds.bos`), the same metric at the prompt's last position, so each cell equals its
knock-out link's number (a test holds them to 1e-5). A sweep over components of this kind is
the first step of circuit discovery by ablation (Wang et al. 2022, "Interpretability in the
Wild", §3; Olsson et al. 2022 knock out every head the same way).

Per example, `effects` has one row for the intact model (component `intact`, layer and head
-1) and one per component (`L1H3`, `L0.mlp`; MLP rows have head -1):
- `metric`: logit(answer) − logit(wrong) at the last position (only `answer`: its
  log-probability), under the knock-out;
- `delta`: metric − the intact model's metric on the same prompt (0 for `intact`);
- `top1`: 1 when the answer is the top next token, else 0; `top_token`: that token.
Over a set (`analyses.kinds.sets`) each row's delta is paired with its own intact run, so the
summary's interval for `delta` is Student's t on the per-example deltas; `top1` gets Wilson's.

Speed: the rows of a set that share a token length run together, `MAX_BATCH` to a forward
pass: one intact pass and one pass per component for each batch, whatever the set's size.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import UserError
from analyses.core.listtext import Component
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds import resume
from analyses.kinds.bos import after_bos, first_after_bos
from analyses.kinds.interventions import ablation as ablating
from analyses.kinds.tokens import prompt_tokens, single_token, token_strings, token_texts

COLUMNS = CATALOGUE["ablation_sweep"].tables["effects"]
INTACT = "intact"  # the component name of the model with nothing knocked out
MAX_BATCH = 64  # rows of one token length per forward pass


def components(bridge) -> list[Component]:
    """Every head of every layer, then that layer's MLP: the cells of the sweep, layer by layer."""
    n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
    return [c for layer in range(n_layers)
            for c in (*(Component(layer, "head", h) for h in range(n_heads)), Component(layer, "mlp"))]


@dataclass(frozen=True)
class Example:
    """One prompt, read: its tokens and its answer (and wrong) token ids."""

    tokens: Int[Tensor, "pos"]  # noqa: F821 - BOS first
    answer: int
    wrong: int | None


def read_example(bridge, spec: AnalysisSpec) -> Example:
    """The prompt's tokens and answer ids, or a SpecError naming the bad field."""
    tokens = prompt_tokens(bridge, spec.prompt)[0]
    answer = single_token(bridge, spec.answer, "answer")
    wrong = single_token(bridge, spec.wrong, "wrong") if spec.wrong else None
    return Example(tokens, answer, wrong)


def metrics(logits: Float[Tensor, "batch d_vocab"], answers: Int[Tensor, "batch"],  # noqa: F821
            wrongs: Int[Tensor, "batch"]) -> Float[Tensor, "batch"]:  # noqa: F821
    """Each row's metric at its last position: logit(answer) − logit(wrong), or log p(answer)
    where the row has no wrong token (id -1). The steering kind's `metric`, for a batch."""
    logits = logits.float()
    answer_logit = logits.gather(-1, answers[:, None])[:, 0]
    wrong_logit = logits.gather(-1, wrongs.clamp(min=0)[:, None])[:, 0]
    log_prob = logits.log_softmax(-1).gather(-1, answers[:, None])[:, 0]
    return torch.where(wrongs >= 0, answer_logit - wrong_logit, log_prob)


class WholeSequence:
    """The positions of a pass that reads the whole sequence from position 0 (no KV cache),
    as the ablation hooks ask for them (`interventions.positions.Positions`): a resumed pass
    starts above the first block, where that counter's own hook sits."""

    def __init__(self, n_tokens: int, first: int):
        self.n_tokens, self.first = n_tokens, first

    def changeable(self, device) -> Bool[Tensor, "pos"]:  # noqa: F821
        return after_bos(torch.arange(self.n_tokens, device=device), self.first)


def one_component(values: ablating.Ablation, component: Component) -> ablating.Ablation:
    """The ablation of `component` alone, with the values prepared for every component."""
    name = ablating.hook_name(component)
    return ablating.Ablation((component,), values.how, {name: values.values[name]})


class Sweeper:
    """Runs the sweep's passes for one model: resumed at each component's layer from the
    intact pass's residual (`analyses.kinds.resume`) once a resumed pass is seen to
    reproduce the full one, full passes from layer 0 otherwise."""

    def __init__(self, bridge, cells: list[Component], values: ablating.Ablation):
        self.bridge, self.cells, self.values = bridge, cells, values
        self.first = first_after_bos(bridge)
        self.resumes: bool | None = None  # unknown until the first batch checks it

    @torch.no_grad()
    def batch(self, examples: list[Example], step=lambda: None) -> dict[str, tuple[Tensor, Tensor]]:
        """Examples of one token length -> {component label (and INTACT): (metric [batch], top
        token id [batch])}: one pass for the intact model and one per component."""
        device = next(self.bridge.parameters()).device
        tokens = torch.stack([e.tokens for e in examples]).to(device)  # [batch, pos]
        answers = torch.tensor([e.answer for e in examples], device=device)  # [batch]
        wrongs = torch.tensor([-1 if e.wrong is None else e.wrong for e in examples], device=device)
        logits, starts, returns_tuple = resume.full_pass(self.bridge, tokens)  # [batch, pos, d_vocab]
        intact = logits[:, -1]  # [batch, d_vocab]
        if self.resumes is None:  # the top block alone, from its cached input, must give the same
            top = int(self.bridge.cfg.n_layers) - 1
            again = resume.last_logits_from(self.bridge, starts[resume.resid_name(top)], top, [], returns_tuple)
            self.resumes = resume.reproduces(again, intact)
        found = {INTACT: (metrics(intact, answers, wrongs).cpu(), intact.argmax(-1).cpu())}
        step()
        positions = WholeSequence(int(tokens.shape[1]), self.first)
        for c in self.cells:
            hooks = ablating.ablation_hooks(one_component(self.values, c), positions)
            start = c.layer if self.resumes else 0
            out = resume.last_logits_from(self.bridge, starts[resume.resid_name(start)], start, hooks,
                                          returns_tuple)  # [batch, d_vocab]
            found[c.label] = (metrics(out, answers, wrongs).cpu(), out.argmax(-1).cpu())
            step()
        return found


def effects_table(bridge, example: Example, cells: list[Component],
                  found: dict[str, tuple[Tensor, Tensor]], row: int) -> pd.DataFrame:
    """Row `row` of a batch's sweep as the `effects` table (module docstring)."""
    intact = float(found[INTACT][0][row])
    described = [(INTACT, "none", -1, -1), *((c.label, c.site, c.layer, -1 if c.head is None else c.head)
                                             for c in cells)]
    tops = [int(found[label][1][row]) for label, *_ in described]
    texts = token_texts(bridge, tops)
    rows = []
    for (label, site, layer, head), top, text in zip(described, tops, texts):
        value = float(found[label][0][row])
        rows.append({"component": label, "site": site, "layer": layer, "head": head, "metric": value,
                     "delta": value - intact, "top1": float(top == example.answer),
                     "top_token": str(text)})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def metric_name(spec: AnalysisSpec) -> str:
    if spec.wrong:
        return f"logit({spec.answer!r}) − logit({spec.wrong!r})"
    return f"log p({spec.answer!r})"


def batches(examples: dict[int, Example]) -> list[list[int]]:
    """The examples' indices grouped by token length, at most MAX_BATCH a group."""
    by_length: dict[int, list[int]] = {}
    for i, example in examples.items():
        by_length.setdefault(int(example.tokens.shape[0]), []).append(i)
    return [group[start:start + MAX_BATCH] for group in by_length.values()
            for start in range(0, len(group), MAX_BATCH)]


@torch.no_grad()
def run_examples(model, specs: list[AnalysisSpec], progress: Progress = silent) -> list:
    """Each spec's sweep (a Result), or its UserError when its row cannot run; the rows of one
    token length share their forward passes."""
    if not specs:
        return []
    bridge = model.bridge
    how = specs[0].with_defaults().ablation
    cells = components(bridge)
    progress(0.01, f"preparing the {how} ablation of {len(cells)} components")
    sweeper = Sweeper(bridge, cells, ablating.prepare(bridge, cells, how))
    outcomes: list = [None] * len(specs)
    examples: dict[int, Example] = {}
    for i, spec in enumerate(specs):
        try:
            examples[i] = read_example(bridge, spec)
        except UserError as err:
            outcomes[i] = err
    groups = batches(examples)
    total, done = max(1, len(groups) * (len(cells) + 1)), [0]

    def step():
        done[0] += 1
        progress(0.05 + 0.9 * done[0] / total, f"knocking out each component: pass {done[0]} of {total}")

    for group in groups:
        found = sweeper.batch([examples[i] for i in group], step)
        for row, i in enumerate(group):
            example = examples[i]
            outcomes[i] = Result(spec=specs[i].with_defaults(),
                                 tables={"effects": effects_table(bridge, example, cells, found, row)},
                                 meta={"n_tokens": int(example.tokens.shape[0]),
                                       "prompt_tokens": token_strings(bridge, example.tokens),
                                       "metric": metric_name(specs[i]), "ablation": how,
                                       "n_layers": int(bridge.cfg.n_layers),
                                       "n_heads": int(bridge.cfg.n_heads)})
    progress(1.0, "done")
    return outcomes


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    outcome = run_examples(model, [spec], progress)[0]
    if isinstance(outcome, UserError):
        raise outcome
    return outcome
