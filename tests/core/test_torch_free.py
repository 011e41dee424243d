"""The core stays light: specs, spec errors, the catalogue, the CLI's errors and `kinds`, and a
cached result import neither torch nor transformers nor TransformerLens; figures need no
Streamlit. Each check runs in a fresh interpreter, where nothing was imported before."""
import json
import os
import subprocess
import sys
import textwrap

from analyses import AnalysisSpec, compute
from helpers import REPO, lens_spec

HEAVY = ("torch", "transformers", "transformer_lens")


def fresh_python(code: str, **env) -> dict:
    """Run `code` in a new interpreter; it prints one JSON object last, which is returned."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1", **env))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_spec_and_a_spec_error_import_no_torch():
    seen = fresh_python(f"""
        import json, sys
        from analyses import AnalysisSpec, SpecError
        spec = AnalysisSpec.from_query("kind=activation_patching&clean=a&corrupted=b&answer=%20x&wrong=%20y")
        try:
            AnalysisSpec.from_query("kind=logit_lens&prompt=Hi&top_k=abc")
            error = None
        except SpecError as err:
            error = str(err)
        print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules], "error": error,
                          "key": spec.with_defaults().granularity}}))
    """)
    assert seen == {"loaded": [], "error": "top_k: expected an integer, got 'abc'", "key": "resid_pre"}


def test_a_token_preview_needs_no_torch():
    seen = fresh_python(f"""
        import json, sys
        from analyses.runtime.preview import preview
        print(json.dumps({{"tokens": preview("default", " Paris is").tokens,
                          "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    assert seen == {"tokens": ["<|endoftext|>", " Paris", " is"], "loaded": []}


def test_the_cli_answers_errors_and_kinds_without_torch():
    seen = fresh_python(f"""
        import contextlib, io, json, sys
        from analyses.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
            codes = [main(["run", "--spec", "kind=nope"]), main(["kinds"])]
        print(json.dumps({{"codes": codes, "loaded": [m for m in {HEAVY!r} if m in sys.modules],
                          "error": err.getvalue().splitlines()[0],
                          "kinds": sorted(json.loads(out.getvalue())["kinds"])}}))
    """)
    assert seen["codes"] == [2, 0] and seen["loaded"] == []
    assert seen["error"].startswith("error: kind: unknown kind 'nope'")
    assert "logit_lens" in seen["kinds"] and "attribution_patching" in seen["kinds"]


def test_a_cached_result_returns_without_torch_and_draws_without_streamlit(tiny_gpt2_dir, tmp_path):
    cache = tmp_path / "cache.duckdb"
    spec = lens_spec(tiny_gpt2_dir)
    stored = compute_into(cache, spec)
    seen = fresh_python(f"""
        import json, sys
        from analyses import AnalysisSpec, compute
        result = compute(AnalysisSpec.from_json({spec.to_json()!r}))
        figures = result.figures()
        print(json.dumps({{"hit": bool(result.meta.get("cache_hit")),
                          "loaded": [m for m in {HEAVY!r} + ("streamlit",) if m in sys.modules],
                          "figures": {{name: fig.to_plotly_json()["data"][0]["type"]
                                      for name, fig in figures.items()}},
                          "rows": len(result.tables["top"])}}))
    """, ANALYSES_CACHE=str(cache), ANALYSES_MODEL_ROOTS=os.environ["ANALYSES_MODEL_ROOTS"])
    assert seen["hit"] and seen["loaded"] == []
    assert seen["figures"] == {"heatmap": "heatmap", "target_ranks": "scatter"}
    assert seen["rows"] == len(stored.tables["top"])


def compute_into(cache, spec: AnalysisSpec):
    """Compute `spec` here, storing it in `cache`."""
    from analyses.runtime.local_worker import LocalWorker
    from analyses.runtime.store import Store

    store = Store(cache)
    try:
        return compute(spec, worker=LocalWorker(store=store), store=store)
    finally:
        store.close()
