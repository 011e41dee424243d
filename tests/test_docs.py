"""Docs that cannot drift: every registered kind and every spec field is in the README."""
import re
from pathlib import Path

from analyses.registry import analyses
from analyses.spec import FIELDS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_kind_has_a_row_in_the_readme_analyses_table():
    missing = [kind for kind in analyses() if f"| `{kind}` |" not in README]
    assert not missing, f"README's Analyses table lacks {missing}"


def test_every_spec_field_is_documented_in_the_readme():
    documented = set(re.findall(r"`([a-z_]+)`", README))
    missing = [name for name in FIELDS if name not in documented]
    assert not missing, f"README's query-key table lacks {missing}"


def test_every_kind_declares_its_tables_and_fields():
    for kind, analysis in analyses().items():
        assert analysis.tables, kind
        assert set(analysis.defaults) <= set(analysis.optional), kind
        assert set(analysis.choices) <= set(analysis.required) | set(analysis.optional), kind
