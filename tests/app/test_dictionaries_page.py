"""The dictionaries page under AppTest: the shipped set's metrics with the targets it misses,
its density histogram and lexicon grid (numbers checked against metrics.json), and the train
form: bad input answered with a message, a small dictionary trained as a job and listed."""
import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analyses.dictionaries import card, registry
from app.routes import DICTIONARIES
from helpers import page_figures

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
SHIPPED = registry.ROOT / "tiny-circuits"
TIMEOUT_S = 300


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A dictionaries folder holding the shipped set's cfg and metrics (no weights: the page
    reads only those), so a training here never writes into data/."""
    for cfg in SHIPPED.glob("*/cfg.json"):
        folder = tmp_path / "tiny-circuits" / cfg.parent.name
        folder.mkdir(parents=True)
        for name in ("cfg.json", "metrics.json"):
            shutil.copy(cfg.parent / name, folder / name)
    monkeypatch.setattr(registry, "ROOT", tmp_path)
    monkeypatch.setenv("ANALYSES_CACHE", str(tmp_path / "cache.duckdb"))
    monkeypatch.setenv("ANALYSES_ACTIVATIONS", str(tmp_path / "activations"))
    return tmp_path


def plain(markdown: str) -> str:
    """A message's text without md_escape's backslashes."""
    return markdown.replace("\\", "")


def array(value) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed-array form {dtype, bdata, shape}."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")] if shape else -1).astype(float)
    return np.array(value, dtype=float)


def open_page(timeout_s: float = TIMEOUT_S) -> AppTest:
    at = AppTest.from_file(str(MAIN), default_timeout=timeout_s).run()
    at.switch_page(DICTIONARIES)
    return at.run()


def shipped_metrics() -> dict[str, tuple[dict, dict]]:
    return {json.loads((f / "cfg.json").read_text())["site"]:
            (json.loads((f / "cfg.json").read_text()), json.loads((f / "metrics.json").read_text()))
            for f in sorted(p.parent for p in SHIPPED.glob("*/metrics.json"))}


def test_the_listing_shows_every_dictionary_its_misses_and_figures_from_metrics(root):
    at = open_page()
    assert not at.exception
    [table] = [d for d in at.dataframe if "targets missed" in d.value.columns]
    frame = table.value
    assert json.loads(table.proto.columns)["site"]["pinned"]  # the site stays in view as the table scrolls
    shipped = shipped_metrics()
    assert sorted(frame["site"]) == sorted(shipped)
    for row in frame.to_dict("records"):
        cfg, m = shipped[row["site"]]
        assert row["explained variance"] == pytest.approx(m["explained_variance"])
        assert row["CE recovered"] == pytest.approx(m["ce_recovered"])
        missed = card.misses(m, bool(cfg["transcode"]))
        assert row["targets missed"] == ("; ".join(missed) or "all met")
        tuned = cfg.get("kl_finetune_tokens") or 0  # the KL fine-tune, from cfg.json (none: a dash)
        if tuned:
            assert row["KL fine-tune"].startswith(f"{tuned:,} (KL × {cfg['kl_coeff']:g}")
            assert ("decoder only" in row["KL fine-tune"]) == bool(cfg.get("kl_decoder_only"))
        else:
            assert row["KL fine-tune"] == "–"
    n_missing = sum(bool(card.misses(m, bool(c["transcode"]))) for c, m in shipped.values())
    if n_missing:
        assert any(f"{n_missing} of {len(shipped)} dictionaries miss a target" in plain(w.value) for w in at.warning)
    density, lexicon, by_kind = page_figures(at)
    first = at.selectbox[1].value  # [0] is the set
    cfg, m = shipped[first]
    bars = density["data"][0]
    counts = array(bars["y"])
    assert counts.sum() == cfg["num_latents"] and counts[0] == m["density_histogram"]["dead"]
    z = array(lexicon["data"][0]["z"])  # [dictionary, category]: latent F1 - neuron F1
    categories = list(next(iter(shipped.values()))[1]["lexicon"])
    for i, site in enumerate(lexicon["layout"]["yaxis"]["ticktext"]):
        lex = shipped[site][1]["lexicon"]
        expected = [lex[c].get("latent_f1", np.nan) - lex[c].get("neuron_f1", np.nan) for c in categories]
        np.testing.assert_allclose(z[i], np.nan_to_num(expected), atol=1e-9)
    unexplained = array(by_kind["data"][0]["z"])  # [dictionary, document type]: 1 - explained variance
    for i, site in enumerate(by_kind["layout"]["yaxis"]["ticktext"]):
        per_kind = shipped[site][1]["explained_variance_by_doc_kind"]
        np.testing.assert_allclose(unexplained[i], [1 - per_kind[k]["explained_variance"] for k in sorted(per_kind)],
                                   atol=1e-9)


def test_bad_training_input_is_a_message_not_a_traceback(root):
    at = open_page()
    at.text_input(key="train:site").set_value("blocks.0.nope")
    at.button[0].click().run()
    assert not at.exception
    assert any("site 'blocks.0.nope'" in plain(e.value) for e in at.error)


def test_training_a_small_dictionary_runs_as_a_job_and_lists_its_set(root, monkeypatch):
    from analyses.dictionaries import train_job

    monkeypatch.setattr(train_job, "EVAL_TOKENS", 8_160)  # one eval chunk: the job's path, not its size
    at = open_page(timeout_s=900)  # the script follows the job: a busy 2-core machine takes minutes
    at.text_input(key="train:site").set_value("blocks.1.mlp")
    at.number_input(key="train:latents").set_value(32)
    at.number_input(key="train:k").set_value(4)
    at.number_input(key="train:tokens").set_value(8_160)  # one activation chunk
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [plain(e.value) for e in at.error]
    [done] = [plain(s.value) for s in at.success if "Trained blocks.1.mlp" in plain(s.value)]
    folder = root / "trained" / "tiny-circuits" / "32x4-8160-s0" / "blocks.1.mlp"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert f"explained variance {metrics['explained_variance']:.3f}" in done
    assert at.selectbox[0].value == "trained/tiny-circuits/32x4-8160-s0"  # the page opens on it
    [frame] = [d.value for d in at.dataframe if "targets missed" in d.value.columns]
    assert list(frame["site"]) == ["blocks.1.mlp"] and list(frame["latents"]) == [32]


def test_the_skip_box_is_offered_for_mlp_sites_and_reaches_the_job(root, monkeypatch):
    """The transcoder's linear skip: a box only where the site is an MLP, its value in the request
    the job trains (the job itself is held to its cfg and weights in test_dictionary_train_job)."""
    from analyses.dictionaries import train_job
    from analyses.runtime import service

    asked = []
    metrics = {"explained_variance": 0.9, "l0": 4.0, "ce_recovered": 0.95, "dead_share": 0.1}
    monkeypatch.setattr(train_job, "submit", lambda request, worker=None: asked.append(request) or object())
    monkeypatch.setattr(service, "follow", lambda job, progress, timeout=None: train_job.Trained(
        str(asked[-1].out(root) / asked[-1].site), metrics))

    def skip_boxes(at):
        return [c for c in at.checkbox if c.key == "train:skip"]

    at = open_page()
    assert not skip_boxes(at)  # the default site is a residual SAE's
    at.text_input(key="train:site").set_value("blocks.1.mlp").run()
    [box] = skip_boxes(at)
    assert box.value is False  # off unless asked for, as in the CLI
    box.check().run()
    at.button(key="train:go").click().run()
    assert not at.exception and not at.error, [plain(e.value) for e in at.error]
    assert asked[-1].site == "blocks.1.mlp" and asked[-1].transcoder_skip is True
    assert any("-skip" in plain(s.value) for s in at.success)  # the folder it went to says so
    at.text_input(key="train:site").set_value("blocks.1.hook_resid_post").run()
    assert not skip_boxes(at)  # gone with the MLP site, and never sent for another site
    at.button(key="train:go").click().run()
    assert not at.error and asked[-1].transcoder_skip is False
