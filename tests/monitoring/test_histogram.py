from __future__ import annotations

import random

import numpy as np
import pytest

from monitoring import histogram


def _histogram_of(values: list[float]) -> histogram.Histogram:
    counts: histogram.Histogram = {}
    for value in values:
        key = str(histogram.bucket_index(value))
        counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.parametrize("value", [0.0, 0.0004, 0.001, 0.37, 1.0, 12.5, 999.9, 3_600_000.0])
def test_it_represents_every_value_within_the_relative_accuracy(value: float) -> None:
    estimate = histogram.bucket_value(histogram.bucket_index(value))
    floor = max(value, histogram.MIN_TRACKED_MS)
    assert abs(estimate - floor) / floor <= histogram.RELATIVE_ACCURACY + 1e-12


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.0])
def test_it_estimates_quantiles_within_two_percent_of_numpy(sigma: float) -> None:
    rng = random.Random(sigma)
    values = [rng.lognormvariate(3.0, sigma) for _ in range(20_000)]
    counts = _histogram_of(values)
    qs = (0.5, 0.9, 0.95, 0.99)
    estimates = histogram.quantiles(counts, qs, lowest=min(values), highest=max(values))
    exact = np.quantile(values, qs, method="lower")
    for estimate, truth in zip(estimates, exact, strict=True):
        assert estimate is not None
        assert abs(estimate - truth) / truth < 0.02


def test_it_reports_exact_extremes_and_none_when_empty() -> None:
    counts = _histogram_of([5.0, 7.0, 9.0])
    assert histogram.quantiles(counts, (0.0, 1.0), lowest=5.0, highest=9.0) == [5.0, 9.0]
    assert histogram.quantiles({}, (0.5, 0.99)) == [None, None]


def test_it_merges_sparse_histograms_by_adding_counts() -> None:
    target = {"1": 2, "5": 1}
    histogram.merge_into(target, {"5": 3, "9": 4})
    assert target == {"1": 2, "5": 4, "9": 4}
