"""The one definition of the correlations estimates are held to: scipy's, with ties at their
average rank, and NaN (not a warning and a number) where a side is constant."""
import numpy as np
import pandas as pd
import pytest

from analyses.kinds.correlation import pearson, spearman


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
