"""The benchmark's own arithmetic and plumbing: a power law fitted to measurements recovers
its exponent, the largest model that fits solves the memory equation, and a forked call's
value (or error) comes back to the parent. (The benchmarks themselves run under `make bench`,
never in the tests: they assert no speed.)"""
import os

import numpy as np
import pytest

from bench.fitting import fit, largest_fitting
from bench.forked import in_a_fork


def test_fit_recovers_a_power_law():
    params = np.array([1e8, 3e8, 1e9])
    exponent, intercept = fit(params, 5.0 * params ** 0.75)
    assert exponent == pytest.approx(0.75)
    assert np.exp(intercept) == pytest.approx(5.0)


def test_largest_fitting_solves_base_plus_weights_plus_peak():
    params = np.array([1e8, 3e8, 1e9])
    peaks = 1e-6 * params  # MiB: the analysis's own peak grows linearly
    n = largest_fitting(params, peaks, base_mib=500.0, memory_mib=24_000.0)
    assert 500 + 4 * n / 2**20 + 1e-6 * n == pytest.approx(24_000.0, rel=1e-6)
    # bf16 weights (and activations) take half the bytes: a bigger model fits
    n16 = largest_fitting(params, peaks, base_mib=500.0, memory_mib=24_000.0, bytes_per_param=2)
    assert 500 + 2 * n16 / 2**20 + 0.5e-6 * n16 == pytest.approx(24_000.0, rel=1e-6)


def test_a_forked_call_reports_its_own_value_and_leaves_the_parent_alone():
    parent = os.getpid()
    out = in_a_fork(lambda: {"pid": os.getpid(), "x": [1, 2]})
    assert out["x"] == [1, 2] and out["pid"] != parent and os.getpid() == parent


def test_a_forked_call_that_fails_raises_in_the_parent():
    def broken():
        raise ValueError("no such analysis")
    with pytest.raises(RuntimeError, match="ValueError: no such analysis"):
        in_a_fork(broken)
