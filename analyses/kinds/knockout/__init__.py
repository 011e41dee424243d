"""Attention knockout: where information flows into the last position (kind `knockout`).

After Geva et al. 2023, "Dissecting Recall of Factual Associations in Auto-Regressive
Language Models" (§5): to learn which earlier positions the last position reads, and in
which layers, cut its attention edges to a set of positions (the subject's tokens, the other
tokens, or itself) in a window of `w` consecutive layers, renormalising what it still attends
to, and measure how the answer's probability changes. A large drop when the subject is cut
in layers ℓ..ℓ+w−1 says the subject's information reaches the last position there.

Not to be confused with the ablation sweep's component knock-outs
(`analyses/core/knockout.py`): those replace a head's or an MLP's output; this one removes
attention edges and leaves every component running.

The window: `window` layers (unset: Geva et al.'s 9 of GPT-2 XL's 48 layers scaled to the
model's depth, `default_window`), every start from 0 to n_layers − window, so each row spans
the same number of layers. Source sets and BOS: `sources.py`; the batched forward: `engine.py`.

Table `knockout`: per window start (`window_start`, `window_end` its last layer) and source
set, `answer_prob` (the answer's probability with those edges cut), `change` (minus the
intact probability), `relative` (change / intact, Geva et al.'s "% change" as a fraction) and
`n_keys` (how many key positions were cut; 0: nothing changes, exactly).
"""
from __future__ import annotations

import pandas as pd

from analyses.core.catalogue import CATALOGUE
from analyses.core.errors import SpecError
from analyses.core.progress import Progress, silent
from analyses.core.result import Result
from analyses.core.spec import AnalysisSpec
from analyses.kinds.knockout.engine import Knockout, answer_probs
from analyses.kinds.knockout.sources import chosen_sources, source_positions
from analyses.kinds.tokens import prompt_tokens, single_token, token_strings

COLUMNS = CATALOGUE["knockout"].tables["knockout"]
PAPER_WINDOW, PAPER_LAYERS = 9, 48  # Geva et al.'s window on GPT-2 XL


def default_window(n_layers: int) -> int:
    """Geva et al.'s window of 9 in 48 layers, scaled to `n_layers` (at least 1)."""
    return max(1, round(PAPER_WINDOW * n_layers / PAPER_LAYERS))


def window_of(spec_window: int | None, n_layers: int) -> int:
    window = spec_window if spec_window is not None else default_window(n_layers)
    if window > n_layers:
        raise SpecError("window", f"{window} layers; the model has {n_layers}")
    return window


def sweep(n_layers: int, window: int, positions: dict[str, list[int]], sources: tuple[str, ...]
          ) -> list[tuple[int, str, Knockout]]:
    """(window start, source, knockout) for every full window and every source set."""
    return [(start, source, Knockout(tuple(range(start, start + window)), tuple(positions[source])))
            for start in range(n_layers - window + 1) for source in sources]


def run(model, spec: AnalysisSpec, progress: Progress = silent) -> Result:
    bridge = model.bridge
    spec = spec.with_defaults()
    tokens = prompt_tokens(bridge, spec.prompt)
    n_layers, query = int(bridge.cfg.n_layers), int(tokens.shape[1] - 1)
    window = window_of(spec.window, n_layers)
    sources = chosen_sources(spec.source, spec.subject)
    answer = single_token(bridge, spec.answer, "answer") if spec.answer is not None else None
    ids = tokens[0].tolist()
    positions = source_positions(bridge, ids, query, spec.subject)
    cells = sweep(n_layers, window, positions, sources)
    progress(0.1, f"running {len(cells)} knockouts")
    found = answer_probs(bridge, tokens, query, [k for _, _, k in cells], answer)
    intact, knocked = found.intact.double(), found.knocked.double()
    change = knocked - intact
    table = pd.DataFrame({
        "window_start": [start for start, _, _ in cells],
        "window_end": [start + window - 1 for start, _, _ in cells],
        "source": [source for _, source, _ in cells],
        "answer_prob": knocked.numpy(), "change": change.numpy(),
        "relative": (change / intact.clamp_min(1e-30)).numpy(),
        "n_keys": [len(k.keys) for _, _, k in cells],
    }, columns=list(COLUMNS))
    progress(1.0, "done")
    return Result(spec=spec, tables={"knockout": table}, meta={
        "window": window, "sources": list(sources), "n_layers": n_layers,
        "positions": {s: positions[s] for s in sources}, "query_position": query,
        "tokens": token_strings(bridge, tokens[0]), "n_tokens": int(tokens.shape[1]),
        "answer_id": found.answer, "answer_token": token_strings(bridge, [found.answer])[0],
        "intact_prob": float(found.intact[0]),
    })
