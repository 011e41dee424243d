"""Docs that cannot drift: every catalogued kind, spec field and subpackage is in the README,
and its Performance table is the one `make bench` last wrote."""
import json
import re
from pathlib import Path

from analyses.core.catalogue import CATALOGUE
from analyses.core.spec import FIELDS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_kind_has_a_row_in_the_readme_analyses_table():
    missing = [kind for kind in CATALOGUE if f"| `{kind}` |" not in README]
    assert not missing, f"README's Analyses table lacks {missing}"


def test_every_spec_field_is_documented_in_the_readme():
    documented = set(re.findall(r"`([a-z_]+)`", README))
    missing = [name for name in FIELDS if name not in documented]
    assert not missing, f"README's query-key table lacks {missing}"


def test_every_kind_declares_its_tables_and_fields():
    for analysis in CATALOGUE.kinds():
        kind = analysis.name
        assert analysis.tables, kind
        assert set(analysis.defaults) <= set(analysis.optional), kind
        assert set(analysis.choices) <= set(analysis.required) | set(analysis.optional), kind


def test_the_readme_performance_tables_are_what_make_bench_and_bench_full_last_wrote():
    from bench.table import growth_table, table

    performance = README.split("## Performance", 1)[1].split("\n## ", 1)[0]
    for name, make in (("results.json", "make bench"), ("results-full.json", "make bench-full")):
        results = json.loads((ROOT / "bench" / name).read_text())
        assert table(results["rows"]) in performance, (
            f"README's Performance table differs from bench/{name}: paste the table `{make}` printed")
        assert growth_table(results["rows"]) in performance, (
            f"README's growth-with-model-size table differs from bench/{name}")
        assert f"took {results['total_s'] / 60:.1f} minutes" in performance, name


def test_bench_runs_the_quick_rows_and_bench_full_the_slow_ones():
    from bench.tiers import selected

    quick = "patching head_out, GPT-2-small shape, 16 tokens"
    slow = ("scaling: logit_lens, GPT-2-small shape", "model size, 64 tokens",
            "patching resid_pre, GPT-2-small shape, 64 tokens")
    assert selected(quick, "", full=False) and not selected(quick, "", full=True)
    assert all(selected(n, "", full=True) and not selected(n, "", full=False) for n in slow)
    assert selected(slow[0], "scaling", full=False) and not selected(quick, "scaling", full=False)


def test_the_readme_layout_names_every_package_and_subpackage():
    layout = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    packages = sorted({p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "analyses").rglob("__init__.py")}
                      | {"app", "app/views", "app/components", "bench", "tests", "data"})
    missing = [name for name in packages if f"{name.rsplit('/', 1)[-1]}/" not in layout]
    assert not missing, f"README's Layout section does not name {missing}"
