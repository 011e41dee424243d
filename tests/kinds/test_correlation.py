"""The one definition of the correlations estimates are held to: scipy's, with ties at their
average rank, and NaN (not a warning and a number) where a side is constant."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analyses.kinds.correlation import pearson, pearson_rows, spearman, spearman_rows


def test_spearman_is_pearson_of_average_ranks_with_ties():
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=50), 1)  # many ties
    b = a + rng.normal(size=50)
    b[:20] = 0.0  # a block tied at zero, as agreement's noise floor makes
    ranks = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    assert spearman(a, b) == pytest.approx(np.corrcoef(*ranks)[0, 1], abs=1e-12)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)


def test_undefined_correlations_are_nan():
    assert np.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(pearson([1.0, 2.0], [5.0, 5.0]))
    assert np.isnan(spearman([1.0], [2.0]))
    assert spearman([1, 2, 3], [3, 2, 1]) == -1.0


def test_row_by_row_correlations_equal_scipy_on_each_row():
    """Many examples' vectors at once ([rows, n]): each row's value is scipy's on that row alone,
    NaN on a row with a constant side."""
    rng = np.random.default_rng(1)
    a = np.round(rng.normal(size=(6, 40)), 1)
    b = a + rng.normal(size=(6, 40))
    b[:, :15] = 0.0  # ties at zero
    a[2] = 3.0  # a constant row
    got_p, got_s = pearson_rows(a, b), spearman_rows(a, b)
    for i in range(len(a)):
        if i == 2:
            assert np.isnan(got_p[i]) and np.isnan(got_s[i])
            continue
        assert got_p[i] == pytest.approx(stats.pearsonr(a[i], b[i]).statistic, abs=1e-12)
        assert got_s[i] == pytest.approx(stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)
