"""The card: every number from metrics.json, each dictionary checked against issue 27's targets."""
import json

from analyses.dictionaries import card


def _metrics(**overrides):
    lexicon = {"names": {"tokens": 40, "words": 12, "latent": 3, "latent_f1": 0.8, "neuron": "L0.N1",
                         "neuron_f1": 0.5}}
    base = {"tokens": 106_080, "l0": 16.0, "explained_variance": 0.97, "fvu": 0.03, "dead_share": 0.0,
            "dense_share": 0.01, "ce_tokens": 106_080, "ce_clean": 2.0, "ce_zero": 6.0, "ce_spliced": 2.02,
            "kl": 0.01, "ce_recovered": 0.995, "lexicon": lexicon, "lexicon_tokens": 25_000,
            "train_seconds": 100.0}
    return {**base, **overrides}


def _write(root, site, transcode, metrics, **cfg_extra):
    folder = root / site
    folder.mkdir()
    cfg = {"site": site, "num_latents": 1024, "k": 16, "tokens_seen": 999_424, "transcode": transcode, **cfg_extra}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_card_lists_each_target_missed_and_the_lexicon_token_count(tmp_path):
    _write(tmp_path, "blocks.0.hook_resid_post", False, _metrics())
    _write(tmp_path, "blocks.0.mlp", True, _metrics(ce_recovered=0.985, dead_share=0.05))
    _write(tmp_path, "blocks.0.attn.hook_z", False, _metrics(ce_recovered=0.985, explained_variance=0.9))
    text = card.render(tmp_path)
    rows = {}
    for line in text.splitlines():  # the metrics table's row of each site (the lexicon table's come later)
        if line.startswith("| blocks."):
            rows.setdefault(line.split(" | ")[0].strip("| "), line)
    resid, mlp, attn = (rows[s] for s in ("blocks.0.hook_resid_post", "blocks.0.mlp", "blocks.0.attn.hook_z"))
    assert resid.rstrip(" |").endswith("all met")
    assert "dead" in mlp.split(" | ")[-1] and "CE" not in mlp.split(" | ")[-1]  # 0.985 meets a transcoder's 0.98
    assert "CE recovered" in attn.split(" | ")[-1] and "expl. var." in attn.split(" | ")[-1]
    assert "25,000" in text  # the lexicon probe's token count is stated


def test_misses_name_each_target():
    assert card.misses(_metrics(), transcode=False) == []
    assert card.misses(_metrics(l0=17.0, tokens=50_000), transcode=False) == [
        "L0 17.00 > 16", "eval tokens 50,000 < 100,000"]
    assert card.misses(_metrics(ce_tokens=26_520), transcode=False) == ["CE tokens 26,520 < 100,000"]


def test_a_ce_miss_within_two_standard_errors_says_so():
    assert card.misses(_metrics(ce_recovered=0.985, ce_recovered_se=0.004), transcode=False) == [
        "CE recovered 0.985 ± 0.004 (within 2 SE) < 0.99"]
    assert card.misses(_metrics(ce_recovered=0.97, ce_recovered_se=0.004), transcode=False) == [
        "CE recovered 0.970 ± 0.004 < 0.99"]


def test_the_card_splits_ce_recovered_by_document_type(tmp_path):
    by_kind = {"repeat": {"docs": 13, "ce_clean": 2.3, "ce_zero": 7.8, "ce_spliced": 6.5, "ce_recovered": 0.24,
                          "ce_recovered_se": 0.05},
               "mixed": {"docs": 54, "ce_clean": 1.0, "ce_zero": 6.4, "ce_spliced": 1.1, "ce_recovered": 0.991,
                         "ce_recovered_se": 0.002}}
    _write(tmp_path, "blocks.0.hook_resid_post", False, _metrics(ce_by_doc_kind=by_kind))
    text = card.render(tmp_path)
    section = text.split("CE recovered by document type")[1].split("## ")[0]
    [row] = [line for line in section.splitlines()
             if line.startswith("| blocks.0.hook_resid_post")]
    assert "0.991 ± 0.002 (54 docs)" in row and "0.240 ± 0.050 (13 docs)" in row
    assert row.index("0.991") < row.index("0.240")  # columns in sorted kind order: mixed, repeat


def test_the_card_splits_explained_variance_by_document_type(tmp_path):
    by_kind = {"repeat": {"tokens": 15_300, "variance_share": 0.3, "explained_variance": 0.793},
               "mixed": {"tokens": 58_395, "variance_share": 0.45, "explained_variance": 0.923}}
    _write(tmp_path, "blocks.1.attn.hook_z", False, _metrics(explained_variance_by_doc_kind=by_kind))
    _write(tmp_path, "blocks.1.mlp", True, _metrics())  # measured before the split: a dash, no error
    text = card.render(tmp_path)
    section = text.split("explained variance by document type")[1].split("## ")[0]
    [row] = [line for line in section.splitlines() if line.startswith("| blocks.1.attn.hook_z")]
    assert "0.923 (45% of variance, 58,395 tokens)" in row and "0.793 (30% of variance, 15,300 tokens)" in row
    assert row.index("0.923") < row.index("0.793")  # mixed, then repeat
    [older] = [line for line in section.splitlines() if line.startswith("| blocks.1.mlp")]
    assert older.count("–") == 2


def test_the_page_frames_by_document_type_follow_metrics_json(tmp_path):
    from analyses.dictionaries import overview

    variance = {"repeat": {"tokens": 15_300, "variance_share": 0.3, "explained_variance": 0.793},
                "mixed": {"tokens": 58_395, "variance_share": 0.45, "explained_variance": 0.923}}
    ce = {"repeat": {"docs": 13, "ce_recovered": 0.24}, "mixed": {"docs": 54, "ce_recovered": 0.991}}
    _write(tmp_path, "blocks.1.attn.hook_z", False,
           _metrics(explained_variance_by_doc_kind=variance, ce_by_doc_kind=ce))
    _write(tmp_path, "blocks.1.mlp", True, _metrics())  # measured before the split: not a row
    explained, share, recovered = overview.by_kind_frames(tmp_path)
    assert list(explained.index) == ["blocks.1.attn.hook_z"] and list(explained.columns) == ["mixed", "repeat"]
    assert explained.loc["blocks.1.attn.hook_z", "repeat"] == 0.793
    assert share.loc["blocks.1.attn.hook_z", "mixed"] == 0.45
    assert recovered.loc["blocks.1.attn.hook_z", "repeat"] == 0.24


def test_the_card_names_each_kl_finetune_and_appends_the_notes(tmp_path):
    _write(tmp_path, "blocks.0.hook_resid_post", False, _metrics())
    _write(tmp_path, "blocks.0.mlp", True, _metrics(), kl_finetune_tokens=200_000, kl_coeff=5.0, kl_decoder_only=True)
    (tmp_path / card.NOTES).write_text("## What was tried\n\n| site | objective |\n")
    text = card.render(tmp_path)
    header = next(line for line in text.splitlines() if line.startswith("| site | latents"))
    column = header.split(" | ").index("KL fine-tune")
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in text.splitlines()
            if line.startswith("| blocks.") and "all met" in line}
    assert rows["blocks.0.mlp"][column] == "200,000 (KL × 5, decoder only)"
    assert rows["blocks.0.hook_resid_post"][column] == "–"
    assert text.rstrip().endswith("## What was tried\n\n| site | objective |")


def test_card_says_how_many_passes_a_long_run_made_over_its_token_pool(tmp_path):
    _write(tmp_path, "blocks.0.hook_resid_post", False, _metrics(), tokens_seen=8_398_848, distinct_tokens=1_044_480)
    _write(tmp_path, "blocks.0.mlp", True, _metrics())  # written before the pool was recorded
    rows = [line for line in card.render(tmp_path).splitlines() if line.startswith("| blocks.0.")][:2]
    resid, mlp = sorted(rows, key=lambda line: "mlp" in line)
    assert "| 8,398,848 (8.0 passes over 1,044,480) |" in resid
    assert "| 999,424 |" in mlp


def test_card_names_a_matryoshka_prefix_beside_the_width(tmp_path):
    _write(tmp_path, "blocks.0.hook_resid_post", False, _metrics(), num_latents=2048, matryoshka_prefixes=[512])
    _write(tmp_path, "blocks.0.mlp", True, _metrics())
    rows = [line for line in card.render(tmp_path).splitlines() if line.startswith("| blocks.0.")][:2]
    resid, mlp = sorted(rows, key=lambda line: "mlp" in line)
    assert "| 2048 (Matryoshka: first 512) | 16 |" in resid
    assert "| 1024 | 16 |" in mlp


def test_card_names_the_tokens_a_matryoshka_dictionary_trained_on_after_its_release(tmp_path):
    _write(tmp_path, "blocks.1.hook_resid_post", False, _metrics(), num_latents=4096, matryoshka_prefixes=[1024],
           matryoshka_release_tokens=3_999_744)
    [row] = [line for line in card.render(tmp_path).splitlines() if line.startswith("| blocks.1.")][:1]
    assert "| 4096 (Matryoshka: first 1,024, then 3,999,744 tokens without the prefix terms) | 16 |" in row


def test_tokens_per_second_counts_every_training_stages_tokens(tmp_path):
    """train s holds every stage's seconds, so tokens/s divides every stage's tokens by it."""
    _write(tmp_path, "blocks.1.hook_resid_post", False, _metrics(train_seconds=100.0), tokens_seen=1_000_000,
           matryoshka_prefixes=[64], matryoshka_release_tokens=200_000, kl_finetune_tokens=300_000,
           mp_finetune_tokens=400_000, mp_kl_finetune_tokens=100_000, encoding="matching_pursuit")
    [row] = [line for line in card.render(tmp_path).splitlines() if line.startswith("| blocks.1.")][:1]
    assert "| 100 | 20,000 |" in row  # 2,000,000 tokens in 100 s
    from analyses.dictionaries import overview

    [page_row] = overview.metrics_frame(tmp_path).to_dict("records")
    assert page_row["tokens/s"] == 20_000 and page_row["Matryoshka release tokens"] == 200_000


def test_the_lexicon_summary_counts_categories_some_latent_tells_apart(tmp_path):
    def lexicon(**f1):
        return {c: {"tokens": 40, "words": 12, "latent": 3, "latent_f1": v, "neuron": "L0.N1", "neuron_f1": 0.5}
                for c, v in f1.items()}
    _write(tmp_path, "blocks.0.hook_resid_post", False, _metrics(lexicon=lexicon(names=0.9, objects=0.6, weather=0.3)))
    _write(tmp_path, "blocks.0.mlp", True, _metrics(lexicon=lexicon(names=0.5, objects=0.85, weather=0.4)))
    summary = card.lexicon_summary(card.rows(tmp_path))
    assert summary.startswith("Categories where one latent of some dictionary reaches F1 >= 0.8: 2 of 3 "
                              "(names, objects)")
    assert summary.endswith("below it, the best: weather 0.40 (blocks.0.mlp).")
    assert summary in card.render(tmp_path)


def test_card_names_a_matching_pursuit_encoding_and_its_tokens(tmp_path):
    _write(tmp_path, "blocks.0.attn.hook_z", False, _metrics(), num_latents=2048, encoding="matching_pursuit",
           mp_finetune_tokens=999_424)
    [row] = [line for line in card.render(tmp_path).splitlines() if line.startswith("| blocks.0.")][:1]
    assert "| 2048 (matching pursuit, decoder trained through it on 999,424 tokens) | 16 |" in row


def test_a_value_just_under_its_bar_is_written_with_the_digits_that_show_it():
    assert card.below(0.937, 0.95) == "0.937"
    assert card.below(0.94982, 0.95) == "0.9498"
    assert "expl. var. 0.9498 < 0.95" in card.misses(_metrics(explained_variance=0.94982), False)


def test_card_names_a_kl_fine_tune_through_the_pursuit(tmp_path):
    _write(tmp_path, "blocks.0.attn.hook_z", False, _metrics(), num_latents=2048, encoding="matching_pursuit",
           mp_finetune_tokens=2_000_000, mp_kl_finetune_tokens=300_000, mp_kl_coeff=5.0)
    [row] = [line for line in card.render(tmp_path).splitlines() if line.startswith("| blocks.0.")][:1]
    assert ("| 2048 (matching pursuit, decoder trained through it on 2,000,000 tokens, then KL fine-tuned "
            "through it on 300,000 (KL × 5)) | 16 |") in row
