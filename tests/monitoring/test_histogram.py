from __future__ import annotations

import random

import numpy as np
import pytest

from monitoring.histogram import (
    MIN_TRACKED_MS,
    RELATIVE_ACCURACY,
    Histogram,
    bucket_index,
    bucket_value,
    dense_counts,
    merge,
    quantiles,
)


@pytest.mark.parametrize("value", [0.0, 0.0004, 0.001, 0.37, 1.0, 12.5, 999.9, 3_600_000.0])
def test_it_represents_every_value_within_the_relative_accuracy(value: float) -> None:
    estimate = bucket_value(bucket_index(value))
    floor = max(value, MIN_TRACKED_MS)
    assert abs(estimate - floor) / floor <= RELATIVE_ACCURACY + 1e-12


def test_it_buckets_arrays_exactly_as_single_values() -> None:
    values = [0.0, 0.0005, 0.9, 1.0, 1.0202, 55.5, 1e6]
    histogram = Histogram.of(values)
    expected: dict[int, int] = {}
    for value in values:
        expected[bucket_index(value)] = expected.get(bucket_index(value), 0) + 1
    assert histogram.as_dict() == expected
    assert histogram.total == len(values)
    offset, counts = dense_counts(values)
    assert Histogram(offset, np.asarray(counts, dtype=np.int64)).as_dict() == expected


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.0])
def test_it_estimates_quantiles_within_two_percent_of_numpy(sigma: float) -> None:
    rng = random.Random(sigma)
    values = [rng.lognormvariate(3.0, sigma) for _ in range(20_000)]
    qs = (0.5, 0.9, 0.95, 0.99)
    estimates = quantiles(Histogram.of(values), qs, lowest=min(values), highest=max(values))
    exact = np.quantile(values, qs, method="lower")
    for estimate, truth in zip(estimates, exact, strict=True):
        assert estimate is not None
        assert abs(estimate - truth) / truth < 0.02


def test_it_reports_exact_extremes_and_none_when_empty() -> None:
    histogram = Histogram.of([5.0, 7.0, 9.0])
    assert quantiles(histogram, (0.0, 1.0), lowest=5.0, highest=9.0) == [5.0, 9.0]
    assert quantiles(Histogram.empty(), (0.5, 0.99)) == [None, None]


def test_it_merges_histograms_with_different_offsets() -> None:
    low, high, middle = Histogram.of([1.0, 1.0]), Histogram.of([500.0]), Histogram.of([20.0])
    merged = merge([high, Histogram.empty(), low, middle])
    assert merged.as_dict() == {
        bucket_index(1.0): 2,
        bucket_index(20.0): 1,
        bucket_index(500.0): 1,
    }
    assert merged == merge([merged])


def test_it_round_trips_through_bytes() -> None:
    histogram = Histogram.of([0.0001, 3.0, 3.0, 1e7])
    restored = Histogram.from_bytes(histogram.to_bytes())
    assert restored.offset == histogram.offset
    assert restored.as_dict() == histogram.as_dict()
    assert Histogram.from_bytes(b"").total == 0
