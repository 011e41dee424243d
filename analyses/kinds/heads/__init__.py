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

The package, along its seams: `probes` (the generated inputs), `behaviours` (what ablation
should hurt), `detectors` (the plug-ins), `detection` (the engine), `ablation` (top heads
against random ones) and `analysis` (`run`); every public name is importable from here.
"""
from analyses.kinds.heads.ablation import (  # noqa: F401 - the package's public names
    RANDOM_SETS,
    ablated_heads,
    ablation_hooks,
    ablation_k,
    ablation_rows,
    head_label,
    heads_to_ablate,
    mean_z,
    measure,
)
from analyses.kinds.heads.analysis import ABLATION_COLUMNS, SCORE_COLUMNS, run, score_table, selected  # noqa: F401
from analyses.kinds.heads.behaviours import BEHAVIOURS, Behaviour, needle_recall, second_copy_loss  # noqa: F401
from analyses.kinds.heads.detection import Detected, detect, pool  # noqa: F401
from analyses.kinds.heads.detectors import (  # noqa: F401
    COLUMNS,
    DETECTORS,
    MIN_COPY_EVENTS,
    PatternDetector,
    RetrievalDetector,
    Scored,
    induction_score,
)
from analyses.kinds.heads.probes import (  # noqa: F401
    COPY_LENGTH,
    HAYSTACK_LENGTH,
    LOGIT_BUDGET,
    N_SEQUENCES,
    NEEDLE_SEQUENCES,
    PROBES,
    Probe,
    bos_id,
    build_probe,
    copy_length,
    needle_probe,
    plain_probe,
    repeated_probe,
    sample_vocab,
)
