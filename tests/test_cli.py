"""The CLI contract: one JSON document on stdout, exit 2 with one line on bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "analyses", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("spec, words", [
    ("kind=nope&prompt=x", "kind: unknown kind"),
    ("kind=logit_lens&prompt=x&layer=abc", "layer: expected an integer"),
    ("kind=logit_lens", "prompt: required"),
    ("not a query string", "expected key=value"),
    ("kind=logit_lens&prompt=x&model=../../etc/passwd", "outside the folders models may be loaded from"),
])
def test_bad_input_exits_2_with_one_line(spec, words):
    done = run_cli("run", "--spec", spec)
    assert done.returncode == 2
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], done.stderr
    assert done.stderr.strip().splitlines()[-1] == errors[0]  # progress lines may come before it
    assert "Traceback" not in done.stderr


def test_kinds_lists_every_registered_kind():
    done = run_cli("kinds")
    assert done.returncode == 0, done.stderr
    kinds = json.loads(done.stdout)["kinds"]
    assert kinds["logit_lens"]["tables"]["top"][:3] == ["layer", "layer_index", "position"]


def test_logit_lens_on_stories260k_prints_the_documented_json(stories260k_dir, tmp_path):
    model = stories260k_dir / "stories260K.bin"
    out = tmp_path / "lens.csv"
    done = run_cli("run", "--spec", f"kind=logit_lens&model={model}&prompt=Once%20upon%20a%20time&top_k=3",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document) >= {"kind", "spec", "tables"}
    assert document["kind"] == "logit_lens"
    assert document["spec"]["prompt"] == "Once upon a time"
    rows = document["tables"]["top"]
    assert set(rows[0]) >= {"layer", "layer_index", "position", "token", "rank", "token_id",
                            "token_str", "prob", "logit"}
    assert (tmp_path / "lens.top.csv").exists()


def test_a_set_added_from_a_file_runs_by_its_reference_and_a_bad_file_stores_nothing(tmp_path, tiny_gpt2_dir):
    env = {"ANALYSES_CACHE": str(tmp_path / "cache.duckdb")}
    good = tmp_path / "pairs.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "When Mary and John went to the store", "token": " John"},
        {"prompt": "Once upon a time", "token": " a"}]))
    done = run_cli("datasets", "add", str(good), env_extra=env)
    assert done.returncode == 0, done.stderr
    reference = done.stdout.strip().splitlines()[-1]
    assert reference.startswith("sha256:") and len(reference) == 7 + 64
    listed = json.loads(run_cli("datasets", "list", env_extra=env).stdout)["datasets"]
    assert {"ioi", "facts", "induction", "needle"} <= {d["dataset"] for d in listed if d["origin"] == "shipped"}
    assert [d["reference"] for d in listed if d["origin"] == "stored"] == [reference]
    done = run_cli("run", "--spec", f"kind=logit_lens&model={tiny_gpt2_dir}&dataset={reference}&top_k=1",
                   env_extra=env)
    assert done.returncode == 0, done.stderr
    tables = json.loads(done.stdout)["tables"]
    assert {"targets", "targets_summary", "examples", "skipped"} <= set(tables)
    assert {row["example"] for row in tables["targets"]} == {0, 1}

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": "broken"\n')
    done = run_cli("datasets", "add", str(bad), env_extra=env)
    assert done.returncode == 2 and done.stdout == ""
    assert "line 2: not valid JSON" in done.stderr and "Traceback" not in done.stderr
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"x" * (10 * 2**20))
    done = run_cli("datasets", "add", str(junk), env_extra=env)
    assert done.returncode == 2 and "holds at most" in done.stderr
    listed = json.loads(run_cli("datasets", "list", env_extra=env).stdout)["datasets"]
    assert [d["reference"] for d in listed if d["origin"] == "stored"] == [reference]  # nothing more


def test_steering_runs_from_the_command_line(tmp_path):
    spec = ("kind=steering&prompt=The%20capital%20of%20France%20is&positive=The%20capital%20of%20Germany%20is"
            "&negative=The%20capital%20of%20France%20is&layer=2&coeff=0,1&answer=%20Berlin&wrong=%20Paris"
            "&max_new_tokens=3")
    done = run_cli("run", "--spec", spec, env_extra={"ANALYSES_CACHE": str(tmp_path / "cache.duckdb")})
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    effects = {row["coeff"]: row for row in document["tables"]["effects"]}
    assert effects[0]["top_token"] == " Paris" and effects[1]["top_token"] == " Berlin"
    texts = {row["coeff"]: row["text"] for row in document["tables"]["generations"]}
    assert texts[0].startswith(" Paris") and texts[1].startswith(" Berlin")


def test_out_csv_guards_formula_cells_as_the_apps_downloads_do(tmp_path):
    import pandas as pd

    from analyses.cli import write_tables
    frame = pd.DataFrame({"token_str": ["=cmd|' /C calc'!A0", "@SUM(A1)", " Paris"], "value": [-0.5, 1.0, 2.0]})
    (path,) = write_tables({"top": frame}, tmp_path / "lens.csv")
    back = pd.read_csv(path)
    assert back["token_str"].tolist() == ["'=cmd|' /C calc'!A0", "'@SUM(A1)", " Paris"]
    assert back["value"].tolist() == [-0.5, 1.0, 2.0]  # numbers stay numbers
