"""Set kinds that run their rows together (`examples_runner`): every example equals its row's
single-prompt run, rows of one token length share forward passes, and a row that cannot run
is skipped without taking the others with it."""
import json

import numpy as np
import pandas as pd
import pytest

from analyses import AnalysisSpec, compute
from analyses.core import datasets as ds
from analyses.kinds.attribution_patching.agreement import agreement as agreement_of
from analyses.runtime import datasets
from analyses.runtime.models import EMBEDDED_ROOT

pytestmark = [pytest.mark.usefixtures("private_cache"),
              pytest.mark.skipif(not (EMBEDDED_ROOT / "tiny-circuits" / "config.json").is_file(),
                                 reason="the embedded model data/models/tiny-circuits is missing")]


def added(rows) -> str:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return datasets.add_bytes(data, "test.jsonl").reference


def mixed_lengths(n: int = 8) -> list[dict]:
    """`n` ioi rows of at least two token lengths, and a row whose answer is two tokens."""
    rows = list(ds.shipped("ioi").rows)
    lengths = {}
    for row in rows:
        lengths.setdefault(len(row["clean"].split()), []).append(row)
    picked = [r for group in lengths.values() for r in group[:3]][:n]
    assert len({len(r["clean"].split()) for r in picked}) >= 2
    return picked + [dict(picked[0], answer=" Paris and London")]


def each_example(result, table: str, example: int) -> pd.DataFrame:
    frame = result.tables[table]
    mine = frame[frame.example == example].drop(columns=["example"])
    return mine.drop(columns=[c for c in ("n_tokens", "target") if c in mine]).reset_index(drop=True)


def forwards_counted(monkeypatch, module, name: str) -> list:
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, counted)
    return calls


def test_the_logit_lens_over_a_set_reads_rows_of_one_length_together_and_equals_each_single_run(monkeypatch):
    from analyses.kinds import logit_lens

    rows = mixed_lengths()
    calls = forwards_counted(monkeypatch, logit_lens, "_residual_cache")
    result = compute(AnalysisSpec(kind="logit_lens", dataset=added(rows), top_k=3), cache=False)
    lengths = result.tables["examples"]["n_tokens"].nunique()
    assert len(calls) == lengths < len(rows) - 1  # one forward per token length
    assert list(result.tables["skipped"].example) == [len(rows) - 1]
    for i, row in enumerate(rows[:-1]):
        single = compute(AnalysisSpec(kind="logit_lens", prompt=row["clean"], top_k=3,
                                      token=f"{row['answer']},{row['wrong']}"), cache=False)
        for table in ("top", "targets"):
            pd.testing.assert_frame_equal(each_example(result, table, i), single.tables[table],
                                          check_dtype=False, atol=1e-5)


def test_dla_over_a_set_decomposes_rows_of_one_length_together_and_equals_each_single_run(monkeypatch):
    from analyses.kinds import dla

    rows = mixed_lengths()
    calls = forwards_counted(monkeypatch, dla, "forward")
    result = compute(AnalysisSpec(kind="dla", dataset=added(rows)), cache=False)
    lengths = result.tables["examples"]["n_tokens"].nunique()
    assert len(calls) == lengths < len(rows) - 1
    assert list(result.tables["skipped"].example) == [len(rows) - 1]
    for i, row in enumerate(rows[:-1]):
        single = compute(AnalysisSpec(kind="dla", prompt=row["clean"], answer=row["answer"],
                                      wrong=row["wrong"]), cache=False)
        for table in ("contributions", "neurons"):
            pd.testing.assert_frame_equal(each_example(result, table, i), single.tables[table],
                                          check_dtype=False, atol=1e-5)


@pytest.mark.parametrize("gradient", ["corrupted", "clean"])
def test_attribution_patching_over_a_set_shares_its_passes_and_equals_each_single_run(monkeypatch, gradient):
    from analyses.kinds.attribution_patching import analysis

    rows = mixed_lengths(4)
    calls = forwards_counted(monkeypatch, analysis, "batch_estimates")
    result = compute(AnalysisSpec(kind="attribution_patching", dataset=added(rows), gradient=gradient),
                     cache=False)
    lengths = result.tables["examples"]["n_tokens"].nunique()
    assert len(calls) == lengths < len(rows) - 1  # one gradient pass per token length
    assert list(result.tables["skipped"].example) == [len(rows) - 1]
    examples = result.tables["examples"].set_index("example")
    for i, row in enumerate(rows[:-1]):
        single = compute(AnalysisSpec(kind="attribution_patching", gradient=gradient, **row), cache=False)
        mine = each_example(result, "attributions", i)
        assert mine.exact.notna().all()  # exact patching ran beside the estimates
        pd.testing.assert_frame_equal(mine, single.tables["attributions"], check_dtype=False, atol=1e-5)
        # the batch's agreement (every example's at once) is that of the example's own numbers;
        # Pearson's r, continuous in them, is the single run's (ranks, top 10 and the signal
        # count may flip where two nodes, or a node and the noise floor, are 1e-7 apart)
        agreement = each_example(result, "agreement", i)
        pd.testing.assert_frame_equal(agreement, agreement_of(mine, magnitude=False), check_dtype=False, atol=1e-12)
        # (1e-3: a batch rounds exact patching differently, up to 7e-6, and on a node kind whose
        # exact values span only 1e-2 (k on ioi) that moves r by about 1e-4)
        np.testing.assert_allclose(agreement.pearson, single.tables["agreement"].pearson, atol=1e-3)
        for baseline in ("clean_baseline", "corrupted_baseline"):
            if baseline in examples:
                assert examples.loc[i, baseline] == pytest.approx(single.meta[baseline], abs=1e-5)


def test_a_logit_lens_window_reads_only_its_positions_and_equals_the_full_readout_there():
    prompt = "When Mary and John went to the store, John gave a drink to"
    full = compute(AnalysisSpec(kind="logit_lens", prompt=prompt, token=" Mary", top_k=3), cache=False)
    window = compute(AnalysisSpec(kind="logit_lens", prompt=prompt, token=" Mary", top_k=3,
                                  positions="1, 5-7, 12"), cache=False)
    assert window.meta["positions_read"] == 5 and window.meta["n_tokens"] == full.meta["n_tokens"]
    for table in ("top", "targets"):
        theirs = full.tables[table]
        theirs = theirs[theirs.position.isin([1, 5, 6, 7, 12])].reset_index(drop=True)
        pd.testing.assert_frame_equal(window.tables[table], theirs, atol=1e-5)
    heatmap = window.figures()["heatmap"]
    assert len(heatmap.data[0].x if heatmap.data[0].x is not None else heatmap.data[0].z[0]) == 5
    with pytest.raises(Exception, match="positions: position 99 is past the prompt's end"):
        compute(AnalysisSpec(kind="logit_lens", prompt=prompt, positions="3, 99"), cache=False)


def test_dla_rows_with_and_without_a_wrong_token_read_together_equal_their_single_runs(embedded):
    """One batch whose rows differ in answer, and one of which has no wrong token (its answer's
    logit itself is split): each row's tables are its own single run's."""
    from analyses.kinds import dla

    prompt = "When Mary and John went to the store, John gave a drink to"
    specs = [AnalysisSpec(kind="dla", prompt=prompt, answer=" Mary", wrong=" John"),
             AnalysisSpec(kind="dla", prompt=prompt, answer=" John"),
             AnalysisSpec(kind="dla", prompt=prompt.replace("Mary", "Anna"), answer=" Anna", wrong=" John")]
    together = dla.run_examples(embedded, specs)
    for spec, found in zip(specs, together):
        alone = dla.run(embedded, spec)
        for table in ("contributions", "neurons"):
            pd.testing.assert_frame_equal(found.tables[table], alone.tables[table], atol=1e-5)
        assert found.meta["logit_diff"] == pytest.approx(alone.meta["logit_diff"], abs=1e-5)


def test_a_logit_lens_batch_read_in_chunks_that_split_rows_equals_it_read_whole(embedded, monkeypatch):
    """Readout chunks of 7 (row, position) pairs cut across rows; the tables equal one chunk
    holding the whole batch."""
    from analyses.kinds import logit_lens
    from analyses.kinds.tokens import prompt_tokens

    def length(row) -> int:
        return prompt_tokens(embedded.bridge, row["clean"]).shape[1]

    rows = ds.shipped("ioi").rows
    rows = [r for r in rows if length(r) == length(rows[0])][:5]  # one batch
    specs = [AnalysisSpec(kind="logit_lens", prompt=r["clean"], token=f"{r['answer']},{r['wrong']}", top_k=3)
             for r in rows]
    monkeypatch.setattr(logit_lens, "CACHE_BYTES", logit_lens.READOUT_BYTES)  # 2,110 pairs a chunk
    whole = logit_lens.run_examples(embedded, specs)
    per_position = 4 * (embedded.bridge.cfg.n_layers + 1) * embedded.bridge.cfg.d_vocab
    monkeypatch.setattr(logit_lens, "CACHE_BYTES", 7 * per_position)
    monkeypatch.setattr(logit_lens, "MIN_ROWS", 1)
    assert logit_lens.chunk_positions(embedded.bridge.cfg.n_layers + 1, embedded.bridge.cfg.d_vocab) == 7
    chunked = logit_lens.run_examples(embedded, specs)
    for ours, theirs in zip(chunked, whole):
        for table in ("top", "targets"):
            pd.testing.assert_frame_equal(ours.tables[table], theirs.tables[table], atol=1e-6)
