"""Wang et al.'s normalisation, (patched − corrupted) / (clean − corrupted), is written once
(`analyses/core/restored.py`) and used by every kind that normalises."""
import ast
from pathlib import Path

import numpy as np
import pytest

from analyses.core.restored import has_gap, mean_share_restored, share_restored

PACKAGE = Path(__file__).resolve().parents[2] / "analyses"
HOME = PACKAGE / "core" / "restored.py"


def test_the_corrupted_run_scores_zero_and_the_clean_run_one():
    assert share_restored(np.array([-1.0, 3.0, 1.0]), 3.0, -1.0) == pytest.approx([0.0, 1.0, 0.5])
    assert share_restored(2.0, np.array([4.0, 0.0]), np.array([0.0, 4.0])) == pytest.approx([0.5, 0.5])


def test_a_pair_without_a_gap_has_none_to_restore():
    assert has_gap(2.0, -1.0) and has_gap(-1.0, 2.0)
    assert not has_gap(2.0, 2.0) and not has_gap(1000.0, 1000.0 + 1e-4) and not has_gap(float("nan"), 0.0)


def test_the_ratio_of_means_is_the_normalisation_of_the_means():
    rng = np.random.default_rng(0)
    patched, clean, corrupted = rng.normal(1, 1, 30), rng.normal(5, 1, 30), rng.normal(-1, 1, 30)
    found = mean_share_restored(patched, clean, corrupted)
    assert found["mean"] == pytest.approx(share_restored(patched.mean(), clean.mean(), corrupted.mean()))
    assert found["ci_low"] < found["mean"] < found["ci_high"] and found["n"] == 30


def _normalisations(path: Path) -> list[int]:
    """Lines of `path` that divide a difference from a corrupted value: `(x − corrupted…) / …`."""
    def corrupted(node) -> bool:
        return any("corrupted" in (getattr(n, "id", None) or getattr(n, "attr", None) or "")
                   for n in ast.walk(node))

    return [node.lineno for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
            and isinstance(node.left, ast.BinOp) and isinstance(node.left.op, ast.Sub)
            and corrupted(node.left.right)]


def test_the_normalisation_is_written_only_in_its_own_module():
    found = {str(path.relative_to(PACKAGE.parent)): lines for path in sorted(PACKAGE.rglob("*.py"))
             if path != HOME and (lines := _normalisations(path))}
    assert found == {}, "use analyses.core.restored.share_restored instead"
    assert _normalisations(HOME)  # the scan does see the one it allows
